// cdp.js (node, no packages; required by graph_click.js and annotate.js): headless chromium
// driven over DevTools (--remote-debugging-pipe). open(profile) starts it and gives
// {ev(expr), waitFor(expr), events, done(out, code)} for one page after navigate(url).
const { spawn } = require('child_process');

function open(profile) {
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
  const send = (method, params = {}, sessionId) => {
    const id = next++;
    toChrome.write(JSON.stringify({ id, method, params, sessionId }) + '\0');
    return new Promise((res) => pending.set(id, res));
  };
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const done = (out, code) => { console.log(JSON.stringify(out)); chrome.kill(); process.exit(code); };
  setTimeout(() => done({ error: 'timeout' }, 2), 40000);
  let session;
  const ev = async (expr) => {
    const r = await send('Runtime.evaluate', { expression: expr, returnByValue: true, awaitPromise: true }, session);
    return r.result && r.result.result ? r.result.result.value : undefined;
  };
  const waitFor = async (expr) => { for (let i = 0; i < 100 && !(await ev(expr)); ++i) await sleep(100); };
  const navigate = async (url) => {
    const t = await send('Target.createTarget', { url: 'about:blank' });
    const a = await send('Target.attachToTarget', { targetId: t.result.targetId, flatten: true });
    session = a.result.sessionId;
    await send('Runtime.enable', {}, session);
    await send('Page.enable', {}, session);
    await send('Log.enable', {}, session);  // CSP refusals are log entries
    await send('Page.navigate', { url }, session);
  };
  // script errors, console errors and failed loads (the favicon aside), each shortened
  const errors = (withConsole) => events.filter((e) => e.method === 'Runtime.exceptionThrown' ||
    (withConsole && e.method === 'Runtime.consoleAPICalled' && e.params.type === 'error') ||
    (e.method === 'Log.entryAdded' && e.params.entry.level === 'error' && !/favicon\.ico$/.test(e.params.entry.url || '')))
    .map((e) => JSON.stringify(e.params).slice(0, 200));
  return { navigate, ev, waitFor, events, errors, done };
}

module.exports = { open };
