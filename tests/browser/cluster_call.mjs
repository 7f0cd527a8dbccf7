#!/usr/bin/env node
// The demo call across the nodes of a cluster (docs/cluster.md): page A on one node, page B on
// another (or both through a load balancer in front of the nodes).
//
//   node tests/browser/cluster_call.mjs --base-a http://127.0.0.1:30000 --base-b http://127.0.0.1:30010
//   node tests/browser/cluster_call.mjs --base-a http://127.0.0.1:8080 --base-b http://127.0.0.1:8080
//
// Two separate headless Chromium processes (fresh profiles, fake camera and microphone): A opens
// the demo page on --base-a and shows its invite link; B follows that invite with its origin
// replaced by --base-b's. The call must connect, both remote videos must move, and chat lines
// must go both ways. Ends with one line "N passed, M failed"; exits 1 on any failure.
//
// Options:
//   --base-a URL   where page A is opened (the servers are started by the caller)
//   --base-b URL   where page B follows the invite
//   --out DIR      where screenshots and logs go (default: a fresh temp dir)
//   --chromium PATH the browser (default $CHROMIUM or /usr/bin/chromium)
//   --timeout MS   how long the call may take to connect (default 30000)

import {
  started, check, assert, sleep, runToEnd, parseOptions, outputDir, Browsers, videoFrameStats,
} from './harness.mjs';

const opts = parseOptions(import.meta.url, {
  baseA: 'http://127.0.0.1:30000',
  baseB: 'http://127.0.0.1:30010',
  out: null,
  chromium: process.env.CHROMIUM || '/usr/bin/chromium',
  timeout: 30000,
}, { '--base-a': 'baseA', '--base-b': 'baseB', '--out': 'out', '--chromium': 'chromium', '--timeout': 'timeout' });
opts.timeout = Number(opts.timeout);
const baseA = opts.baseA.replace(/\/+$/, '');
const baseB = opts.baseB.replace(/\/+$/, '');
const outDir = outputDir(opts.out, 'rtc-cluster-call');
const browsers = new Browsers('rtc-cluster-call', outDir, opts.chromium);

const state = (page) => page.evaluate(() => ({
  state: window.rtc && window.rtc.state,
  room: window.rtc && window.rtc.room,
  pc: window.rtc && window.rtc.pc ? window.rtc.pc.connectionState : null,
})).catch((err) => ({ error: err.message }));

async function moving(page) {
  const first = await page.evaluate(videoFrameStats, '#remote-video');
  assert(first && first.variance > 50, `the remote frame is flat or missing: ${JSON.stringify(first && first.variance)}`);
  let motion = 0;
  for (let i = 0; i < 10 && motion <= 1; i++) {
    await sleep(300);
    const next = await page.evaluate(videoFrameStats, '#remote-video');
    motion = next.thumb.reduce((acc, v, j) => acc + Math.abs(v - first.thumb[j]), 0) / next.thumb.length;
  }
  assert(motion > 1, `the remote video does not move (${motion.toFixed(2)})`);
  return `motion ${motion.toFixed(1)}`;
}

async function run() {
  const [ctxA, ctxB] = await Promise.all([browsers.launch('A'), browsers.launch('B')]);
  const pageA = await browsers.newPage(ctxA, 'A');
  const pageB = await browsers.newPage(ctxB, 'B');
  let invite = null;
  const haveInvite = await check(`A opens ${baseA}/ and shows an invite link`, async () => {
    await pageA.goto(baseA + '/', { timeout: 30000 });
    await pageA.locator('#invite').waitFor({ state: 'visible', timeout: 15000 });
    const link = await pageA.inputValue('#invite-link');
    const m = link.match(/\/\?room=([0-9]+)$/);
    assert(m, `unexpected invite link ${JSON.stringify(link)}`);
    invite = `${baseB}/?room=${m[1]}`;
    return invite;
  });
  if (!haveInvite) return;
  await check(`B follows the invite on ${baseB} without WRONGROOM`, async () => {
    await pageB.goto(invite, { timeout: 30000 });
    await pageB.waitForFunction(() => window.rtc && ['in-call', 'wrongroom', 'closed'].includes(window.rtc.state),
      null, { timeout: 15000 });
    const s = await state(pageB);
    assert(s.state === 'in-call', `B: ${JSON.stringify(s)}`);
  });
  const connected = await check('A and B connect (connectionState "connected" on both)', async () => {
    const isConnected = () => window.rtc && window.rtc.pc && window.rtc.pc.connectionState === 'connected';
    try {
      await Promise.all([
        pageA.waitForFunction(isConnected, null, { timeout: opts.timeout, polling: 100 }),
        pageB.waitForFunction(isConnected, null, { timeout: opts.timeout, polling: 100 }),
      ]);
    } catch (err) {
      throw new Error(`not connected: A ${JSON.stringify(await state(pageA))}, B ${JSON.stringify(await state(pageB))}`);
    }
    return `after ${((Date.now() - started) / 1000).toFixed(1)} s of the run`;
  });
  if (!connected) return;
  await check('both remote videos move', async () => {
    const hasVideo = () => document.querySelector('#remote-video').videoWidth > 0;
    await Promise.all([pageA, pageB].map((p) => p.waitForFunction(hasVideo, null, { timeout: 10000 })));
    return `A ${await moving(pageA)}, B ${await moving(pageB)}`;
  });
  await check('chat lines go both ways', async () => {
    for (const [from, to, text] of [[pageA, pageB, 'hello from A'], [pageB, pageA, 'hello from B']]) {
      await from.fill('#chat-input', text);
      await from.press('#chat-input', 'Enter');
      await to.locator('#chat-log li.peer', { hasText: text }).waitFor({ timeout: 5000 });
    }
  });
  await pageA.screenshot({ path: `${outDir}/A.png` }).catch(() => {});
  await pageB.screenshot({ path: `${outDir}/B.png` }).catch(() => {});
}

await runToEnd({ run, cleanup: () => browsers.close(), outDir, limitMs: 120000 });
