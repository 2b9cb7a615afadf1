// annotate.js URL LABEL PROFILE_DIR (node, no packages; used by cases/viewer.sh): loads a feature
// page of a viewer started with --annotations in headless chromium (DevTools over
// --remote-debugging-pipe), types LABEL into the annotation form, ticks the bookmark, clicks Save
// and prints one JSON line: the page's URL and form values after the browser's POST and the
// redirect, and any script or CSP errors — the form as a user submits it, Origin header included.
const { spawn } = require('child_process');
const [url, label, profile] = process.argv.slice(2);
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
  await send('Log.enable', {}, s);
  await send('Page.navigate', { url }, s);
  const ev = async (expr) => {
    const r = await send('Runtime.evaluate', { expression: expr, returnByValue: true, awaitPromise: true }, s);
    return r.result && r.result.result ? r.result.result.value : undefined;
  };
  const waitFor = async (expr) => { for (let i = 0; i < 100 && !(await ev(expr)); ++i) await sleep(100); };
  await waitFor(`document.readyState === 'complete' && !!document.querySelector('form.annotation')`);
  const filled = await ev(`(() => { const f = document.querySelector('form.annotation');
    f.querySelector('input[name=label]').value = ${JSON.stringify(label)};
    f.querySelector('input[name=bookmarked]').checked = true;
    window.__before = 1; f.querySelector('button').click(); return true; })()`);
  await waitFor(`document.readyState === 'complete' && window.__before === undefined &&
    !!document.querySelector('form.annotation')`);
  const after = await ev(`({href: location.href,
    label: document.querySelector('form.annotation input[name=label]').value,
    bookmarked: document.querySelector('form.annotation input[name=bookmarked]').checked,
    saved: (document.querySelector('form.annotation .muted') || {}).textContent || ''})`);
  const errors = events.filter((e) => e.method === 'Runtime.exceptionThrown' ||
    (e.method === 'Log.entryAdded' && e.params.entry.level === 'error' && !/favicon\.ico$/.test(e.params.entry.url || ''))).map((e) => JSON.stringify(e.params).slice(0, 200));
  done({ filled, after, errors }, 0);
})();
