#!/usr/bin/env node
// Two-browser call test of the rtcserver demo page.
//
//   node tests/browser/call.mjs --base http://127.0.0.1:30000 --out DIR
//   node tests/browser/call.mjs --server-bin target/release/rtcserver --out DIR
//
// Starts two separate headless Chromium processes (fresh profiles, fake camera and microphone),
// opens the demo page in A, follows A's invite link in B, and checks that the call connects, both
// remote videos show the moving fake-camera picture, chat lines go both ways, and a third page that
// follows the same invite gets "This room does not exist or is full". Then what a demo does to a call
// (README "The demo page"): A, the host, reloads mid-call and both are connected again with moving
// video; B leaves and A shows within 2 s that it left, with the invite link; B follows the invite
// again and the call is back; B's renderer crashes (no goodbye) and A shows the call lost; A, now
// alone, reloads and gets a new room (the old one is gone), and so does a guest left alone. Saves
// A.png and B.png (and A-left.png, the remote video crops, console logs) into --out. Ends with one
// line "N passed, M failed"; exits 1 on any failure.
//
// Options:
//   --base URL          the server to test (default http://127.0.0.1:30000)
//   --server-bin PATH   start this rtcserver binary on a free 127.0.0.1 port (overrides --base)
//   --static-dir DIR    the static dir given to --server-bin (default <repo>/static)
//   --out DIR           where screenshots and logs go (default: a fresh temp dir)
//   --chromium PATH     the browser (default $CHROMIUM or /usr/bin/chromium)
//   --timeout MS        how long the call may take to connect (default 30000)

import {
  started, results, record, check, skip, assert, freePort, sleep, runToEnd, parseOptions, outputDir,
  startServer as startBinary, stopServer as stopBinary, Browsers, videoFrameStats, pngStats,
} from './harness.mjs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');

// ---- Options -------------------------------------------------------------------------------
const opts = parseOptions(import.meta.url, {
  base: 'http://127.0.0.1:30000',
  out: null,
  serverBin: null,
  staticDir: path.join(REPO, 'static'),
  chromium: process.env.CHROMIUM || '/usr/bin/chromium',
  timeout: 30000,
}, { '--base': 'base', '--out': 'out', '--server-bin': 'serverBin', '--static-dir': 'staticDir',
  '--chromium': 'chromium', '--timeout': 'timeout' });
opts.timeout = Number(opts.timeout);
opts.base = opts.base.replace(/\/+$/, '');
const outDir = outputDir(opts.out, 'rtc-call');

// ---- Server (optional) ---------------------------------------------------------------------

let server = null;

async function startServer() {
  const port = await freePort();
  const args = ['--bind', '127.0.0.1', '--port', String(port), '--static-dir', path.resolve(opts.staticDir)];
  server = await startBinary(opts.serverBin, args, [port], path.join(outDir, 'server.log'),
    { RUST_LOG: 'info', ...process.env });
  return `http://127.0.0.1:${port}`;
}

// ---- Browsers ------------------------------------------------------------------------------
const browsers = new Browsers('rtc-call', outDir, opts.chromium);
const launchBrowser = (label) => browsers.launch(label);
const newPage = (context, label) => browsers.newPage(context, label);

const MIN_VARIANCE = 50;     // a flat (black, grey, green) frame is ~0; the fake camera is in the thousands
const MIN_MOTION = 1;        // mean absolute difference of two 40x30 thumbnails taken ~0.5 s apart

async function remoteVideoLive(page) {
  const first = await page.evaluate(videoFrameStats, '#remote-video');
  assert(first, 'the remote video has no frame');
  assert(first.variance > MIN_VARIANCE,
    `the remote frame is flat (luminance variance ${first.variance.toFixed(1)}, mean ${first.mean.toFixed(1)})`);
  // The fake camera's picture moves: two frames a little apart must differ.
  let motion = 0;
  for (let i = 0; i < 10 && motion <= MIN_MOTION; i++) {
    await sleep(300);
    const next = await page.evaluate(videoFrameStats, '#remote-video');
    motion = next.thumb.reduce((acc, v, j) => acc + Math.abs(v - first.thumb[j]), 0) / next.thumb.length;
  }
  assert(motion > MIN_MOTION, `the remote video does not move (frame difference ${motion.toFixed(2)})`);
  return `${first.width}x${first.height}, variance ${first.variance.toFixed(0)}, motion ${motion.toFixed(1)}`;
}

async function rtcSnapshot(page) {
  try {
    return await page.evaluate(() => ({
      state: window.rtc && window.rtc.state,
      room: window.rtc && window.rtc.room,
      pc: window.rtc && window.rtc.pc ? {
        connectionState: window.rtc.pc.connectionState,
        iceConnectionState: window.rtc.pc.iceConnectionState,
        signalingState: window.rtc.pc.signalingState,
      } : null,
      ws: window.rtc && window.rtc.ws ? window.rtc.ws.readyState : null,
      remoteVideoWidth: document.querySelector('#remote-video').videoWidth,
    }));
  } catch (err) {
    return { error: err.message };
  }
}

async function sendChat(from, to, text) {
  await from.fill('#chat-input', text);
  await from.press('#chat-input', 'Enter');
  await from.locator('#chat-log li.me', { hasText: text }).waitFor({ timeout: 3000 });
  await to.locator('#chat-log li.peer', { hasText: text }).waitFor({ timeout: 5000 });
}

// ---- The test ------------------------------------------------------------------------------
async function run() {
  let base = opts.base;
  if (opts.serverBin) {
    const ok = await check('the server binary starts and listens', async () => {
      base = await startServer();
      return base;
    });
    if (!ok) return;
  }

  const pageOk = await check('GET / serves the demo page and GET /static/app.js its script', async () => {
    const index = await fetch(base + '/');
    assert(index.status === 200, `GET / answered ${index.status}`);
    const html = await index.text();
    assert(html.includes('/static/app.js'), 'GET / is not the demo page (no /static/app.js in it)');
    for (const asset of ['/static/app.js', '/static/style.css']) {
      const r = await fetch(base + asset);
      assert(r.status === 200, `GET ${asset} answered ${r.status}`);
      await r.arrayBuffer();
    }
  });
  if (!pageOk) return;

  let ctxA, ctxB;
  const launched = await check('two separate Chromium processes start', async () => {
    [ctxA, ctxB] = await Promise.all([launchBrowser('A'), launchBrowser('B')]);
    return `Chromium ${ctxA.browser() ? ctxA.browser().version() : '?'}`;
  });
  if (!launched) return;

  const pageA = await newPage(ctxA, 'A');
  const pageB = await newPage(ctxB, 'B');
  let invite = null;

  try {
    await check('A: the page opens and shows the local camera', async () => {
      await pageA.goto(base + '/', { timeout: 30000 });
      await pageA.waitForFunction(() => document.querySelector('#local-video').videoWidth > 0, null, { timeout: 10000 });
    });

    const haveInvite = await check('A: an invite link "<origin>/?room=N" is shown', async () => {
      await pageA.locator('#invite').waitFor({ state: 'visible', timeout: 10000 });
      invite = await pageA.inputValue('#invite-link');
      const origin = new URL(base).origin;
      const m = invite.match(/^(.*)\/\?room=([0-9]+)$/);
      assert(m && m[1] === origin, `unexpected invite link ${JSON.stringify(invite)}`);
      const snap = await rtcSnapshot(pageA);
      assert(snap.state === 'waiting', `window.rtc.state is ${snap.state}, expected waiting`);
      assert(String(snap.room) === m[2], `window.rtc.room is ${snap.room}, the link says ${m[2]}`);
      return invite;
    });

    let connected = false;
    if (haveInvite) {
      await check('B: the invite link opens without WRONGROOM', async () => {
        await pageB.goto(invite, { timeout: 30000 });
        // ENTERROOM has no reply on success: wait until B has joined and its offer was answered.
        await pageB.waitForFunction(() => window.rtc && ['in-call', 'wrongroom', 'closed'].includes(window.rtc.state),
          null, { timeout: 10000 });
        const snap = await rtcSnapshot(pageB);
        assert(snap.state === 'in-call', `B's state is ${snap.state}`);
        assert(await pageB.locator('#wrongroom').isHidden(), 'B shows the WRONGROOM message');
      });

      connected = await check(`A and B connect (connectionState "connected" on both, within ${opts.timeout / 1000} s)`, async () => {
        const isConnected = () => window.rtc && window.rtc.pc && window.rtc.pc.connectionState === 'connected';
        try {
          await Promise.all([
            pageA.waitForFunction(isConnected, null, { timeout: opts.timeout, polling: 100 }),
            pageB.waitForFunction(isConnected, null, { timeout: opts.timeout, polling: 100 }),
          ]);
        } catch (err) {
          throw new Error(`not connected: A ${JSON.stringify(await rtcSnapshot(pageA))}, ` +
            `B ${JSON.stringify(await rtcSnapshot(pageB))}`);
        }
        return `after ${((Date.now() - started) / 1000).toFixed(1)} s of the run`;
      });
    } else {
      skip('B: the invite link opens without WRONGROOM', 'no invite link');
      skip('A and B connect', 'no invite link');
    }

    if (connected) {
      await check('both remote videos have frames (videoWidth > 0) and the signaling state is "in call"', async () => {
        const hasVideo = () => document.querySelector('#remote-video').videoWidth > 0;
        await Promise.all([
          pageA.waitForFunction(hasVideo, null, { timeout: 10000 }),
          pageB.waitForFunction(hasVideo, null, { timeout: 10000 }),
        ]);
        for (const [label, page] of [['A', pageA], ['B', pageB]]) {
          const words = await page.textContent('#signal-state');
          assert(words === 'in call', `${label} shows signaling state "${words}"`);
        }
      });
      await check('A: the remote video shows the moving fake camera', () => remoteVideoLive(pageA));
      await check('B: the remote video shows the moving fake camera', () => remoteVideoLive(pageB));
    } else {
      for (const name of ['both remote videos have frames', 'A: the remote video shows the moving fake camera',
        'B: the remote video shows the moving fake camera']) skip(name, 'the call did not connect');
    }

    // Chat goes over the signaling connection: it works (and is checked) even when the media does not.
    if (haveInvite) {
      await check('chat: a line from A arrives at B', () => sendChat(pageA, pageB, 'hello from A <b>not bold</b>'));
      await check('chat: a line from B arrives at A', () => sendChat(pageB, pageA, 'hello from B, ünïcødé ✓'));
    } else {
      for (const name of ['chat: a line from A arrives at B', 'chat: a line from B arrives at A']) skip(name, 'no invite link');
    }

    // Screenshots, whatever happened above (they help when something failed).
    await check('screenshots A.png and B.png are saved and their remote videos are not blank', async () => {
      const problems = [];
      const notes = [];
      for (const [label, page] of [['A', pageA], ['B', pageB]]) {
        const full = await page.screenshot({ path: path.join(outDir, `${label}.png`), fullPage: true });
        // The remote video's box, less a margin (its rounded corners show the page behind them).
        const box = await page.locator('#remote-video').boundingBox();
        assert(box && box.width > 20 && box.height > 20, `${label}: the remote video has no size on the page`);
        const clip = { x: box.x + box.width * 0.05, y: box.y + box.height * 0.05,
          width: box.width * 0.9, height: box.height * 0.9 };
        const crop = await page.screenshot({ path: path.join(outDir, `${label}-remote.png`), clip });
        const fullStats = await page.evaluate(pngStats, full.toString('base64'));
        const cropStats = await page.evaluate(pngStats, crop.toString('base64'));
        if (fullStats.variance <= MIN_VARIANCE) problems.push(`${label}.png is blank`);
        if (cropStats.variance <= MIN_VARIANCE) {
          problems.push(`${label}'s remote video in the screenshot is flat (variance ${cropStats.variance.toFixed(1)})`);
        }
        notes.push(`${label}: ${fullStats.width}x${fullStats.height}, remote crop variance ${cropStats.variance.toFixed(0)}`);
      }
      assert(problems.length === 0, problems.join('; '));
      return notes.join('; ');
    });

    if (haveInvite) {
      await check('a third page following the same invite gets "This room does not exist or is full"', async () => {
        const pageC = await newPage(ctxB, 'C');
        try {
          await pageC.goto(invite, { timeout: 30000 });
          await pageC.locator('#wrongroom').waitFor({ state: 'visible', timeout: 5000 });
          const text = await pageC.textContent('#wrongroom');
          assert(/does not exist or is full/.test(text), `the message says ${JSON.stringify(text.trim())}`);
          const href = await pageC.getAttribute('#wrongroom a', 'href');
          assert(href === '/', `the link back goes to ${href}`);
          const snap = await rtcSnapshot(pageC);
          assert(snap.state === 'wrongroom', `window.rtc.state is ${snap.state}`);
          await pageC.screenshot({ path: path.join(outDir, 'C.png') });
        } finally {
          await pageC.close();
        }
      });
    } else {
      skip('a third page following the same invite gets WRONGROOM', 'no invite link');
    }

    if (connected) {
      await check('the call is still up after the third page was turned away', async () => {
        await sleep(500);
        for (const [label, page] of [['A', pageA], ['B', pageB]]) {
          const snap = await rtcSnapshot(page);
          assert(snap.pc && snap.pc.connectionState === 'connected', `${label}: ${JSON.stringify(snap)}`);
        }
      });
    }

    if (connected) {
      await recovery(pageA, pageB, ctxB, invite);
    } else {
      skip('what a demo does to a call (reload, leave, crash)', 'the call did not connect');
    }

    await check('no uncaught errors in the pages', async () => {
      const errors = [...pageA.pageErrors().map((e) => `A ${e}`), ...pageB.pageErrors().map((e) => `B ${e}`)];
      assert(errors.length === 0, errors.join('; '));
    });
  } finally {
    pageA.flushLog();
    pageB.flushLog();
  }
}

const isConnected = () => window.rtc && window.rtc.pc && window.rtc.pc.connectionState === 'connected';

/** Waits until `page`'s call is connected over another RTCPeerConnection than the one it had when
 *  `markOld` ran (so a connection that has not noticed the change yet does not count). */
async function markOld(page) {
  await page.evaluate(() => { window.oldPc = window.rtc.pc; });
}
const connectedAnew = () => window.rtc && window.rtc.pc && window.rtc.pc !== window.oldPc &&
  window.rtc.pc.connectionState === 'connected';

async function bothConnected(pageA, pageB, what) {
  try {
    await Promise.all([
      pageA.waitForFunction(connectedAnew, null, { timeout: opts.timeout, polling: 100 }),
      pageB.waitForFunction(connectedAnew, null, { timeout: opts.timeout, polling: 100 }),
    ]);
  } catch (err) {
    throw new Error(`${what}: not connected again: A ${JSON.stringify(await rtcSnapshot(pageA))}, ` +
      `B ${JSON.stringify(await rtcSnapshot(pageB))}`);
  }
  await Promise.all([pageA, pageB].map((p) => p.waitForFunction(
    () => document.querySelector('#remote-video').videoWidth > 0, null, { timeout: 10000 })));
  await remoteVideoLive(pageA);
  await remoteVideoLive(pageB);
}

/** A shows that the other party left, within `ms`: the notice, the invite link of its room again,
 *  no remote video, the chat closed. */
async function showsLeft(pageA, invite, ms, words) {
  const t0 = Date.now();
  await pageA.locator('#peer-left').waitFor({ state: 'visible', timeout: ms });
  const took = Date.now() - t0;
  const notice = (await pageA.textContent('#peer-left')).trim();
  assert(words.test(notice), `the notice says ${JSON.stringify(notice)}`);
  assert(await pageA.locator('#invite').isVisible(), 'the invite link is not shown again');
  const link = await pageA.inputValue('#invite-link');
  assert(link === invite, `the invite link is ${JSON.stringify(link)}, expected ${invite}`);
  const snap = await pageA.evaluate(() => ({
    state: window.rtc.state,
    pc: window.rtc.pc,
    remote: document.querySelector('#remote-video').srcObject,
    chat: document.querySelector('#chat-input').disabled,
    words: document.querySelector('#signal-state').textContent,
  }));
  assert(snap.state === 'waiting' && snap.words === 'waiting for the other party',
    `A's state is ${snap.state} (${JSON.stringify(snap.words)})`);
  assert(snap.pc === null && snap.remote === null, 'A still has a peer connection or a remote video');
  assert(snap.chat, 'A\'s chat is still open with nobody to read it');
  return took;
}

async function recovery(pageA, pageB, ctxB, invite) {
  const room = invite.replace(/^.*\?room=/, '');

  // README "The demo page": a reload of either side re-enters the room.
  const back = await check('A (the host) reloads mid-call: it re-enters its room and both are connected again, with moving video', async () => {
    await markOld(pageB);
    const t0 = Date.now();
    await pageA.reload({ timeout: 10000 });
    assert(pageA.url().endsWith(`/?room=${room}`), `A's address after the reload is ${pageA.url()}`);
    await bothConnected(pageA, pageB, 'after A reloaded');
    const snap = await rtcSnapshot(pageA);
    assert(String(snap.room) === room && snap.state === 'in-call', `A: ${JSON.stringify(snap)}`);
    assert(await pageA.locator('#wrongroom').isHidden(), 'A shows WRONGROOM');
    return `connected and moving again ${((Date.now() - t0) / 1000).toFixed(1)} s after the reload`;
  });
  if (back) {
    await check('chat goes both ways after the reload', async () => {
      await sendChat(pageA, pageB, 'A is back');
      await sendChat(pageB, pageA, 'welcome back');
    });
  } else {
    skip('chat goes both ways after the reload', 'the call did not come back');
  }

  // README "The demo page": the page left behind says so and offers the invite again.
  await check('B leaves (navigates away): A shows within 2 s that it left, with the invite link, and no video', async () => {
    await pageB.goto('about:blank');
    const took = await showsLeft(pageA, invite, 2000, /other party left/);
    await pageA.screenshot({ path: path.join(outDir, 'A-left.png'), fullPage: true });
    return `after ${took} ms`;
  });

  await check('B follows the invite again: the call is back', async () => {
    await markOld(pageA);
    await pageB.goto(invite, { timeout: 30000 });
    await pageB.evaluate(() => { window.oldPc = null; });
    await bothConnected(pageA, pageB, 'after B came back');
    assert(await pageA.locator('#peer-left').isHidden(), 'A still says the other party left');
    assert(await pageA.locator('#invite').isHidden(), 'A still shows the invite');
  });

  // No goodbye: the peer connection's failure tells A instead.
  await check('B\'s renderer crashes (no goodbye): A shows within 25 s that the connection was lost, with the invite', async () => {
    const cdp = await ctxB.newCDPSession(pageB);
    const t0 = Date.now();
    cdp.send('Page.crash').catch(() => {});
    const took = await showsLeft(pageA, invite, 25000, /connection to the other party was lost/);
    return `after ${((took || Date.now() - t0) / 1000).toFixed(1)} s`;
  });

  // Alone in its room, A's reload empties it (the server forgets an empty room): A starts a new one.
  await check('A, alone in its room, reloads: the room is gone, A gets a new room and its invite (no WRONGROOM)', async () => {
    await pageA.reload({ timeout: 10000 });
    await pageA.waitForFunction((old) => window.rtc && window.rtc.state !== 'joining' && window.rtc.state !== 'connecting' &&
      window.rtc.room !== null && String(window.rtc.room) !== old, room, { timeout: 10000 });
    const snap = await rtcSnapshot(pageA);
    assert(snap.state === 'waiting', `A: ${JSON.stringify(snap)}`);
    assert(await pageA.locator('#wrongroom').isHidden(), 'A shows WRONGROOM');
    const link = await pageA.inputValue('#invite-link');
    assert(link.endsWith(`/?room=${snap.room}`) && pageA.url() === link,
      `the invite is ${link}, the address ${pageA.url()}, the room ${snap.room}`);
    return `room ${room} -> ${snap.room}`;
  });

  // The same for a guest: left alone in the room it entered, its reload finds the room gone.
  await check('a guest left alone in its room reloads: it gets a new room and its invite (no WRONGROOM)', async () => {
    const guest = await browsers.newPage(ctxB, 'B2');
    let step = 'enters A\'s room';
    try {
      const link = await pageA.inputValue('#invite-link');
      const entered = link.replace(/^.*\?room=/, '');
      await guest.goto(link, { timeout: 30000 });
      await guest.waitForFunction(() => window.rtc && window.rtc.state === 'in-call', null, { timeout: 10000 });
      step = 'shows A left';
      await pageA.goto('about:blank');
      await guest.locator('#peer-left').waitFor({ state: 'visible', timeout: 5000 });
      step = 'reloads';
      await guest.reload({ timeout: 10000 });
      await guest.waitForFunction((old) => window.rtc && (window.rtc.state === 'wrongroom' ||
        (['waiting', 'in-call'].includes(window.rtc.state) && String(window.rtc.room) !== old)), entered, { timeout: 10000 });
      const snap = await rtcSnapshot(guest);
      assert(snap.state === 'waiting', `the guest: ${JSON.stringify(snap)}`);
      assert(await guest.locator('#wrongroom').isHidden(), 'the guest shows WRONGROOM');
      const invite = await guest.inputValue('#invite-link');
      assert(invite.endsWith(`/?room=${snap.room}`) && guest.url() === invite,
        `the invite is ${invite}, the address ${guest.url()}, the room ${snap.room}`);
      return `room ${entered} -> ${snap.room}`;
    } catch (err) {
      throw new Error(`the guest ${step}: ${err.message.split('\n')[0]}; the guest ${JSON.stringify(await rtcSnapshot(guest))}, ` +
        `A ${JSON.stringify(await rtcSnapshot(pageA))}`);
    } finally {
      guest.flushLog();
      await guest.close();
    }
  });
}

async function cleanup() {
  await browsers.close();
  await stopBinary(server, 3000).catch(() => {});
}

await runToEnd({ run, cleanup, outDir, limitMs: 240000 });
