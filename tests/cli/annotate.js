// annotate.js URL LABEL PROFILE_DIR (node, no packages; used by cases/viewer.sh): loads a feature
// page of a viewer started with --annotations in headless chromium (cdp.js), types LABEL into the
// annotation form, ticks the bookmark, clicks Save and prints one JSON line: the page's URL and
// form values after the browser's POST and the redirect, and any script or CSP errors — the form
// as a user submits it, Origin header included.
const [url, label, profile] = process.argv.slice(2);
const page = require('./cdp.js').open(profile);
(async () => {
  await page.navigate(url);
  await page.waitFor(`document.readyState === 'complete' && !!document.querySelector('form.annotation')`);
  const filled = await page.ev(`(() => { const f = document.querySelector('form.annotation');
    f.querySelector('input[name=label]').value = ${JSON.stringify(label)};
    f.querySelector('input[name=bookmarked]').checked = true;
    window.__before = 1; f.querySelector('button').click(); return true; })()`);
  await page.waitFor(`document.readyState === 'complete' && window.__before === undefined &&
    !!document.querySelector('form.annotation')`);
  const after = await page.ev(`({href: location.href,
    label: document.querySelector('form.annotation input[name=label]').value,
    bookmarked: document.querySelector('form.annotation input[name=bookmarked]').checked,
    saved: (document.querySelector('form.annotation .muted') || {}).textContent || ''})`);
  page.done({ filled, after, errors: page.errors(false) }, 0);
})();
