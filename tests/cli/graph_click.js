// graph_click.js URL NODE_ID PROFILE_DIR (node, no packages; used by cases/circuits.sh): loads the
// viewer's graph page URL in headless chromium, driven over DevTools (cdp.js), clicks the SVG node
// NODE_ID and prints one JSON line of facts about the page before and after (URL, selected node,
// highlighted links, the panel's title and feature link, whether the page was reloaded, script
// errors), so the test checks /graph.js without a browser-automation package.
const [url, nodeId, profile] = process.argv.slice(2);
const page = require('./cdp.js').open(profile);
(async () => {
  await page.navigate(url);
  await page.waitFor(`document.readyState === 'complete' && !!document.getElementById('graph-svg')`);
  const facts = `({href: location.href, nodes: document.querySelectorAll('#graph-svg .node').length,
    sel: Array.from(document.querySelectorAll('#graph-svg .node.sel')).map(e => e.parentNode.getAttribute('data-node')),
    hl: document.querySelectorAll('#graph-svg .e.hl').length,
    panel: (document.querySelector('#panel h2') || {}).textContent || '',
    feature: (document.querySelector('#panel .feature-link') || {href: ''}).href,
    marker: window.__marker || 0})`;
  const before = await page.ev(`window.__marker = 42; ${facts}`);
  const clicked = await page.ev(`(() => { const a = document.querySelector('#graph-svg a[data-node="${nodeId}"]');
    if (!a) return false; a.querySelector('.node').dispatchEvent(new MouseEvent('click', {bubbles: true, cancelable: true, button: 0})); return true; })()`);
  await page.waitFor(`!!document.querySelector('#graph-svg .node.sel') && !!document.querySelector('#panel h2')`);
  const after = await page.ev(facts);
  page.done({ before, clicked, after, errors: page.errors(true) }, 0);
})();
