#!/usr/bin/env node
// The book's demo call under message-level faults (docs/faults.md): what the tool finds in a real
// client.
//
//   node tests/browser/faults.mjs --server-bin target/debug/rtcserver --out DIR
//
// Starts the server binary with its admin API on free 127.0.0.1 ports and two headless Chromium
// processes with fake cameras. For each scenario it sets the scenario's preset (POST
// /faults/presets/<name>) or rules (POST /faults/populate), opens the demo page in A and follows A's invite in B, and checks that the
// call connects, still holds 2 s later on the same RTCPeerConnection, and that the fault log shows
// the scenario's rules acted. Scenarios (README "Testing your client against message faults"),
// the first four the server's presets (docs/faults.md, "Presets"):
//   slow-signaling    every message 250 ± 100 ms late (order kept)
//   candidates-first  offers and answers 1.5 s late: the ICE candidates overtake them
//   duplicate-answer  every answer delivered twice (B, the caller, ignores the stale copy)
//   late-answer       every answer 3 s late
//   duplicate-offer   every offer delivered twice (A, the callee, used to take the copy for a new
//                     party and tore the call down; it now ignores a copy of the offer in force)
// Ends with one line "N passed, M failed"; exits 1 on any failure.
//
// Options:
//   --server-bin PATH   the rtcserver binary (required)
//   --static-dir DIR    the static dir given to it (default <repo>/static)
//   --out DIR           where logs and screenshots go (default: a fresh temp dir)
//   --chromium PATH     the browser (default $CHROMIUM or /usr/bin/chromium)
//   --timeout MS        how long a call may take to connect (default 30000)

import {
  check, assert, freePort, sleep, runToEnd, parseOptions, outputDir, die,
  startServer as startBinary, stopServer as stopBinary, Browsers,
} from './harness.mjs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');

const opts = parseOptions(import.meta.url, {
  out: null,
  serverBin: null,
  staticDir: path.join(REPO, 'static'),
  chromium: process.env.CHROMIUM || '/usr/bin/chromium',
  timeout: 30000,
}, { '--out': 'out', '--server-bin': 'serverBin', '--static-dir': 'staticDir',
  '--chromium': 'chromium', '--timeout': 'timeout' });
opts.timeout = Number(opts.timeout);
if (!opts.serverBin) die('--server-bin is required');
const outDir = outputDir(opts.out, 'rtc-faults');

// A scenario sets a preset (GET /faults/presets lists them; their rules are named
// `<preset>.<rule>`), or rules of its own.
const SCENARIOS = [
  { name: 'slow-signaling', preset: 'slow-signaling', acted: { 'slow-signaling.all': 'delay' } },
  {
    name: 'candidates-first',
    preset: 'candidates-first',
    acted: { 'candidates-first.offers': 'delay', 'candidates-first.answers': 'delay' },
  },
  {
    name: 'duplicate-answer',
    preset: 'duplicate-answer',
    acted: { 'duplicate-answer.answers': 'duplicate' },
    console: { B: 'ignoring an answer that was not asked for' },
  },
  { name: 'late-answer', preset: 'late-answer', acted: { 'late-answer.answers': 'delay' } },
  {
    name: 'duplicate-offer',
    rules: [{ name: 'offer-twice', action: 'duplicate', match: { endpoint: 'book', type: 'offer' } }],
    acted: { 'offer-twice': 'duplicate' },
    console: { A: 'ignoring a copy of the offer in force' },
  },
];

let server = null;
let base = null;
let admin = null;

async function startServer() {
  const [port, adminPort] = [await freePort(), await freePort()];
  const args = ['--bind', '127.0.0.1', '--port', String(port), '--admin-bind', `127.0.0.1:${adminPort}`,
    '--static-dir', path.resolve(opts.staticDir), '--fault-seed', '1'];
  server = await startBinary(opts.serverBin, args, [port, adminPort], path.join(outDir, 'server.log'),
    { RUST_LOG: 'info', ...process.env });
  base = `http://127.0.0.1:${port}`;
  admin = `http://127.0.0.1:${adminPort}`;
}

async function setFaults(s) {
  if (!s.preset) return populate(s.rules);
  const r = await fetch(`${admin}/faults/presets/${s.preset}`, { method: 'POST' });
  assert(r.status === 200, `POST /faults/presets/${s.preset} answered ${r.status}: ${await r.text()}`);
}

async function populate(rules) {
  const r = await fetch(`${admin}/faults/populate`, { method: 'POST', body: JSON.stringify(rules) });
  assert(r.status === 200, `POST /faults/populate answered ${r.status}: ${await r.text()}`);
}

async function logSince(seq) {
  const r = await fetch(`${admin}/faults/log?since=${seq}`);
  assert(r.status === 200, `GET /faults/log answered ${r.status}`);
  return (await r.text()).split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

async function snapshot(page) {
  try {
    return await page.evaluate(() => ({
      state: window.rtc && window.rtc.state,
      pc: window.rtc && window.rtc.pc ? {
        connectionState: window.rtc.pc.connectionState,
        signalingState: window.rtc.pc.signalingState,
      } : null,
    }));
  } catch (err) {
    return { error: err.message };
  }
}

const browsers = new Browsers('rtc-faults', outDir, opts.chromium);
let lastSeq = 0;

async function scenario(s, ctxA, ctxB) {
  await setFaults(s);
  const pageA = await browsers.newPage(ctxA, `${s.name}-A`);
  const pageB = await browsers.newPage(ctxB, `${s.name}-B`);
  try {
    const connected = await check(`${s.name}: the call connects within ${opts.timeout / 1000} s`, async () => {
      const t0 = Date.now();
      await pageA.goto(base + '/', { timeout: 30000 });
      await pageA.locator('#invite').waitFor({ state: 'visible', timeout: 15000 });
      const invite = await pageA.inputValue('#invite-link');
      await pageB.goto(invite, { timeout: 30000 });
      const isConnected = () => window.rtc && window.rtc.pc && window.rtc.pc.connectionState === 'connected';
      try {
        await Promise.all([pageA, pageB].map((p) =>
          p.waitForFunction(isConnected, null, { timeout: opts.timeout, polling: 100 })));
      } catch (err) {
        throw new Error(`not connected: A ${JSON.stringify(await snapshot(pageA))}, B ${JSON.stringify(await snapshot(pageB))}`);
      }
      return `${((Date.now() - t0) / 1000).toFixed(1)} s from opening A`;
    });
    if (connected) {
      await check(`${s.name}: the call still holds 2 s later, on the same connection, with video`, async () => {
        await Promise.all([pageA, pageB].map((p) => p.evaluate(() => { window.heldPc = window.rtc.pc; })));
        await sleep(2000);
        for (const [label, page] of [['A', pageA], ['B', pageB]]) {
          const ok = await page.evaluate(() => window.rtc.pc === window.heldPc &&
            window.rtc.pc.connectionState === 'connected' &&
            document.querySelector('#remote-video').videoWidth > 0);
          assert(ok, `${label}: ${JSON.stringify(await snapshot(page))}`);
        }
      });
    }
    await check(`${s.name}: the fault log shows the rules acted`, async () => {
      const log = await logSince(lastSeq);
      if (log.length) lastSeq = log[log.length - 1].seq;
      for (const [rule, action] of Object.entries(s.acted)) {
        const n = log.filter((r) => r.rule === rule && r.action === action).length;
        assert(n > 0, `no ${action} by ${rule} in ${JSON.stringify(log.slice(0, 5))}`);
      }
      return log.map((r) => `${r.rule}:${r.type}#${r.index}`).slice(0, 6).join(' ');
    });
    for (const [label, words] of Object.entries(s.console || {})) {
      await check(`${s.name}: ${label}'s console says "${words}"`, async () => {
        const page = label === 'A' ? pageA : pageB;
        assert(page.consoleLines().some((l) => l.includes(words)),
          `not in ${JSON.stringify(page.consoleLines().slice(-8))}`);
      });
    }
    await check(`${s.name}: no page errors`, async () => {
      const errors = [...pageA.pageErrors(), ...pageB.pageErrors()];
      assert(errors.length === 0, errors.join(' | '));
    });
  } finally {
    await pageA.screenshot({ path: path.join(outDir, `${s.name}-A.png`) }).catch(() => {});
    await populate([]);
    await Promise.all([pageA.close(), pageB.close()]);
  }
}

async function run() {
  const ok = await check('the server binary starts with its admin API', async () => {
    await startServer();
    return `${base}, admin ${admin}`;
  });
  if (!ok) return;
  let ctxA, ctxB;
  const launched = await check('two separate Chromium processes start', async () => {
    [ctxA, ctxB] = await Promise.all([browsers.launch('A'), browsers.launch('B')]);
  });
  if (!launched) return;
  for (const s of SCENARIOS) await scenario(s, ctxA, ctxB);
}

async function cleanup() {
  await browsers.close();
  await stopBinary(server, 3000).catch(() => {});
}

await runToEnd({ run, cleanup, outDir, limitMs: 240000 });
