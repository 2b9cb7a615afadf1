// graph_click.js URL NODE_ID PROFILE_DIR (node, no packages; used by cases/circuits.sh): loads the
// viewer's graph page URL in headless chromium, driven over DevTools (--remote-debugging-pipe),
// clicks the SVG node NODE_ID and prints one JSON line of facts about the page before and after
// (URL, selected node, highlighted links, the panel's title and feature link, whether the page
// was reloaded, script errors), so the test checks /graph.js without a browser-automation package.
const { spawn } = require('child_process');
const [url, nodeId, profile] = process.argv.slice(2);
const chrome = spawn('chromium', ['--headless', '--no-sandbox', '--disable-gpu', '--remote-debugging-pipe',
  '--user-data-dir=' + profile, 'about:blank'],
  { stdio: ['ignore', 'ignore', 'ignore', 'pipe', 'pipe'] });
const toChrome = chrome.stdio[3], fromChrome = chrome.stdio[4];
let next = 1, buf = '';
const pending = new Map(), events = [];
fromChrome.on('data', (d) => {
  buf += d.toString();
  let i;
  while ((i = buf.indexOf('\0')) >= 0) {
    const msg = JSON.parse(buf.slice(0, i)); buf = buf.slice(i + 1);
    if (msg.id && pending.has(msg.id)) { pending.get(msg.id)(msg); pending.delete(msg.id); } else events.push(msg);
  }
});
function send(method, params = {}, sessionId) {
  const id = next++;
  toChrome.write(JSON.stringify({ id, method, params, sessionId }) + '\0');
  return new Promise((res) => pending.set(id, res));
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const done = (out, code) => { console.log(JSON.stringify(out)); chrome.kill(); process.exit(code); };
setTimeout(() => done({ error: 'timeout' }, 2), 40000);
(async () => {
  const t = await send('Target.createTarget', { url: 'about:blank' });
  const a = await send('Target.attachToTarget', { targetId: t.result.targetId, flatten: true });
  const s = a.result.sessionId;
  await send('Runtime.enable', {}, s);
  await send('Page.enable', {}, s);
  await send('Log.enable', {}, s);  // CSP refusals are log entries
  await send('Page.navigate', { url }, s);
  const ev = async (expr) => {
    const r = await send('Runtime.evaluate', { expression: expr, returnByValue: true, awaitPromise: true }, s);
    return r.result && r.result.result ? r.result.result.value : undefined;
  };
  const waitFor = async (expr) => { for (let i = 0; i < 100 && !(await ev(expr)); ++i) await sleep(100); };
  await waitFor(`document.readyState === 'complete' && !!document.getElementById('graph-svg')`);
  const facts = `({href: location.href, nodes: document.querySelectorAll('#graph-svg .node').length,
    sel: Array.from(document.querySelectorAll('#graph-svg .node.sel')).map(e => e.parentNode.getAttribute('data-node')),
    hl: document.querySelectorAll('#graph-svg .e.hl').length,
    panel: (document.querySelector('#panel h2') || {}).textContent || '',
    feature: (document.querySelector('#panel .feature-link') || {href: ''}).href,
    marker: window.__marker || 0})`;
  const before = await ev(`window.__marker = 42; ${facts}`);
  const clicked = await ev(`(() => { const a = document.querySelector('#graph-svg a[data-node="${nodeId}"]');
    if (!a) return false; a.querySelector('.node').dispatchEvent(new MouseEvent('click', {bubbles: true, cancelable: true, button: 0})); return true; })()`);
  await waitFor(`!!document.querySelector('#graph-svg .node.sel') && !!document.querySelector('#panel h2')`);
  const after = await ev(facts);
  const errors = events.filter((e) => e.method === 'Runtime.exceptionThrown' ||
    (e.method === 'Runtime.consoleAPICalled' && e.params.type === 'error') ||
    (e.method === 'Log.entryAdded' && e.params.entry.level === 'error' && !/favicon\.ico$/.test(e.params.entry.url || ''))).map((e) => JSON.stringify(e.params).slice(0, 200));
  done({ before, clicked, after, errors }, 0);
})();
