#!/usr/bin/env node
// Three-browser mesh call test of the rtcserver room page (/<room>, the /socket/<room> endpoint).
//
//   node tests/browser/rooms.mjs --server-bin target/release/rtcserver --out DIR
//   node tests/browser/rooms.mjs --base http://127.0.0.1:30000 --out DIR   (a server with --max-peers 3)
//
// Starts three separate headless Chromium processes (fresh profiles, fake camera and microphone),
// opens the same room page in P1, P2 and P3 one after the other, and checks that each shows two
// remote tiles labelled with the others' ids, that all six peer connections connect, that every
// remote video shows the moving fake-camera picture, that a chat line from one reaches the other two
// (as text), that a fourth page is told "This room is full", and that when P3 closes its page P1 and
// P2 see it leave. Saves P1.png, P2.png, P3.png, P4.png (and console logs) into --out. Ends with one
// line "N passed, M failed"; exits 1 on any failure.
//
// Options:
//   --base URL          the server to test (default http://127.0.0.1:30000); rooms of 3 needed
//   --server-bin PATH   start this rtcserver binary (--max-peers 3) on a free 127.0.0.1 port
//   --static-dir DIR    the static dir given to --server-bin (default <repo>/static)
//   --out DIR           where screenshots and logs go (default: a fresh temp dir)
//   --chromium PATH     the browser (default $CHROMIUM or /usr/bin/chromium)
//   --timeout MS        how long the calls may take to connect (default 30000)

import {
  started, results, record, check, skip, assert, freePort, sleep, runToEnd, parseOptions, outputDir,
  startServer as startBinary, stopServer as stopBinary, Browsers, videoFrameStats, pngStats,
} from './harness.mjs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');
const MAX_PEERS = 3;

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
const outDir = outputDir(opts.out, 'rtc-rooms');

// ---- Server (optional) ---------------------------------------------------------------------

let server = null;

async function startServer() {
  const port = await freePort();
  const args = ['--bind', '127.0.0.1', '--port', String(port), '--static-dir', path.resolve(opts.staticDir),
    '--max-peers', String(MAX_PEERS)];
  server = await startBinary(opts.serverBin, args, [port], path.join(outDir, 'server.log'),
    { RUST_LOG: 'info', ...process.env });
  return `http://127.0.0.1:${port}`;
}

// ---- Browsers ------------------------------------------------------------------------------
const browsers = new Browsers('rtc-rooms', outDir, opts.chromium);
const launchBrowser = (label) => browsers.launch(label);
const pages = [];

async function newPage(context, label) {
  const page = await browsers.newPage(context, label);
  pages.push(page);
  return page;
}

const MIN_VARIANCE = 50;     // a flat (black, grey, green) frame is ~0; the fake camera is in the thousands
const MIN_MOTION = 1;        // mean absolute difference of two 40x30 thumbnails taken ~0.3 s apart

const tileSelector = (id) => `#videos .tile.remote[data-peer-id="${id}"]`;

async function remoteVideoLive(page, id) {
  const selector = `${tileSelector(id)} video`;
  const first = await page.evaluate(videoFrameStats, selector);
  assert(first, `the video of ${id} has no frame`);
  assert(first.variance > MIN_VARIANCE,
    `the video of ${id} is flat (luminance variance ${first.variance.toFixed(1)}, mean ${first.mean.toFixed(1)})`);
  // The fake camera's picture moves: two frames a little apart must differ.
  let motion = 0;
  for (let i = 0; i < 10 && motion <= MIN_MOTION; i++) {
    await sleep(300);
    const next = await page.evaluate(videoFrameStats, selector);
    assert(next, `the video of ${id} lost its frames`);
    motion = next.thumb.reduce((acc, v, j) => acc + Math.abs(v - first.thumb[j]), 0) / next.thumb.length;
  }
  assert(motion > MIN_MOTION, `the video of ${id} does not move (frame difference ${motion.toFixed(2)})`);
  return `${first.width}x${first.height} var ${first.variance.toFixed(0)} motion ${motion.toFixed(1)}`;
}

async function rtcSnapshot(page) {
  try {
    return await page.evaluate(() => ({
      state: window.rtc && window.rtc.state,
      id: window.rtc && window.rtc.id,
      room: window.rtc && window.rtc.room,
      ws: window.rtc && window.rtc.ws ? window.rtc.ws.readyState : null,
      peers: window.rtc ? window.rtc.peers() : null,
      tiles: Array.from(document.querySelectorAll('#videos .tile.remote'), (t) => t.dataset.peerId),
    }));
  } catch (err) {
    return { error: err.message };
  }
}

const sameSet = (a, b) => a.length === b.length && [...a].sort().join() === [...b].sort().join();

// ---- The test ------------------------------------------------------------------------------
async function run() {
  let base = opts.base;
  if (opts.serverBin) {
    const ok = await check(`the server binary starts with --max-peers ${MAX_PEERS} and listens`, async () => {
      base = await startServer();
      return base;
    });
    if (!ok) return;
  }

  const room = `standup-${Math.random().toString(36).slice(2, 8)}`;
  const roomUrl = `${base}/${room}`;

  const pageOk = await check(`GET /${room} serves the room page and /static/ its script and styles`, async () => {
    const r = await fetch(roomUrl);
    assert(r.status === 200, `GET /${room} answered ${r.status}`);
    const html = await r.text();
    assert(html.includes('/static/room.js'), `GET /${room} is not the room page (no /static/room.js in it)`);
    for (const asset of ['/static/room.js', '/static/room.css', '/static/style.css']) {
      const a = await fetch(base + asset);
      assert(a.status === 200, `GET ${asset} answered ${a.status}`);
      await a.arrayBuffer();
    }
  });
  if (!pageOk) return;

  const labels = ['P1', 'P2', 'P3'];
  let ctxs = [];
  const launched = await check('three separate Chromium processes start', async () => {
    ctxs = await Promise.all(labels.map((l) => launchBrowser(l)));
    return `Chromium ${ctxs[0].browser() ? ctxs[0].browser().version() : '?'}`;
  });
  if (!launched) return;

  const ps = [];
  for (let i = 0; i < labels.length; i++) ps.push(await newPage(ctxs[i], labels[i]));
  const ids = [];

  try {
    // Joined one after the other, so who calls whom is known: each newcomer calls those already in.
    let allIn = true;
    for (let i = 0; i < ps.length && allIn; i++) {
      const page = ps[i];
      allIn = await check(`${labels[i]}: joins ${room}, gets its id and the ${i} already in, shows the camera`, async () => {
        await page.goto(roomUrl, { timeout: 10000 });
        await page.waitForFunction(() => window.rtc && window.rtc.id && ['in-room', 'full', 'closed', 'error']
          .includes(window.rtc.state), null, { timeout: 10000 });
        const snap = await rtcSnapshot(page);
        assert(snap.state === 'in-room', `window.rtc.state is ${snap.state}`);
        assert(/^[0-9]+$/.test(snap.id), `the peer id is ${JSON.stringify(snap.id)}`);
        assert(snap.room === room, `window.rtc.room is ${snap.room}`);
        assert(!ids.includes(snap.id), `the id ${snap.id} was already given`);
        const listed = snap.peers.map((p) => p.id);
        assert(sameSet(listed, ids), `it knows ${JSON.stringify(listed)}, expected ${JSON.stringify(ids)}`);
        assert(snap.peers.every((p) => p.initiator), 'the newcomer does not call everyone already in');
        assert(await page.textContent('#my-id') === snap.id, 'the page does not show its own id');
        assert(await page.textContent('#room-name') === room, 'the page does not show the room name');
        await page.waitForFunction(() => document.querySelector('#local-video').videoWidth > 0, null, { timeout: 10000 });
        ids.push(snap.id);
        return `id ${snap.id}`;
      });
    }
    if (!allIn) return;

    await check('each page shows two remote tiles labelled with the other two ids, and the joins in its log', async () => {
      const problems = [];
      for (let i = 0; i < ps.length; i++) {
        const others = ids.filter((_, j) => j !== i);
        try {
          await ps[i].waitForFunction((n) => document.querySelectorAll('#videos .tile.remote').length === n,
            others.length, { timeout: 5000 });
        } catch (e) { /* reported below */ }
        const snap = await rtcSnapshot(ps[i]);
        if (!sameSet(snap.tiles, others)) {
          problems.push(`${labels[i]} has tiles ${JSON.stringify(snap.tiles)}, expected ${JSON.stringify(others)}`);
          continue;
        }
        for (const id of others) {
          const caption = await ps[i].textContent(`${tileSelector(id)} figcaption`);
          if (!caption.includes(id)) problems.push(`${labels[i]}: the tile of ${id} is labelled ${JSON.stringify(caption)}`);
        }
        // Those who came later are in the log as "joined".
        for (const id of ids.slice(i + 1)) {
          const n = await ps[i].locator(`#people-log li.joined[data-peer-id="${id}"]`, { hasText: 'joined' }).count();
          if (n !== 1) problems.push(`${labels[i]}'s log does not say ${id} joined`);
        }
      }
      assert(problems.length === 0, problems.join('; '));
    });

    const connected = await check(`all 6 peer connections reach "connected" (within ${opts.timeout / 1000} s) and the tiles say so`, async () => {
      const allConnected = (n) => {
        const list = window.rtc.peers();
        return list.length === n && list.every((p) => p.connectionState === 'connected');
      };
      try {
        await Promise.all(ps.map((p) => p.waitForFunction(allConnected, 2, { timeout: opts.timeout, polling: 100 })));
      } catch (err) {
        const snaps = await Promise.all(ps.map(rtcSnapshot));
        throw new Error('not all connected: ' + snaps.map((s, i) => `${labels[i]} ${JSON.stringify(s.peers)}`).join(', '));
      }
      for (let i = 0; i < ps.length; i++) {
        for (const id of ids.filter((_, j) => j !== i)) {
          const words = await ps[i].textContent(`${tileSelector(id)} .pc-state`);
          assert(words === 'connected', `${labels[i]}'s tile of ${id} says ${JSON.stringify(words)}`);
        }
      }
      return `after ${((Date.now() - started) / 1000).toFixed(1)} s of the run`;
    });

    if (connected) {
      await check('every remote video has frames (videoWidth > 0)', async () => {
        const allVideo = () => window.rtc.peers().every((p) => p.videoWidth > 0 && p.videoHeight > 0);
        try {
          await Promise.all(ps.map((p) => p.waitForFunction(allVideo, null, { timeout: 10000 })));
        } catch (err) {
          const snaps = await Promise.all(ps.map(rtcSnapshot));
          throw new Error('no frames: ' + snaps.map((s, i) => `${labels[i]} ${JSON.stringify(s.peers)}`).join(', '));
        }
      });
      for (let i = 0; i < ps.length; i++) {
        await check(`${labels[i]}: both remote videos show the moving fake camera`, async () => {
          const notes = [];
          for (const id of ids.filter((_, j) => j !== i)) notes.push(`${id}: ${await remoteVideoLive(ps[i], id)}`);
          return notes.join('; ');
        });
      }
    } else {
      skip('every remote video has frames', 'the calls did not connect');
      for (const l of labels) skip(`${l}: both remote videos show the moving fake camera`, 'the calls did not connect');
    }

    // Chat goes over the signaling connection: it is checked even when the media does not work.
    await check('chat: a line from P1 reaches P2 and P3, as text', async () => {
      const text = 'hello from P1 <b>not bold</b> <img src=x onerror=alert(1)>';
      await ps[0].fill('#chat-input', text);
      await ps[0].press('#chat-input', 'Enter');
      await ps[0].locator('#chat-log li.me', { hasText: text }).waitFor({ timeout: 3000 });
      for (const i of [1, 2]) {
        const line = ps[i].locator('#chat-log li.peer', { hasText: text });
        await line.waitFor({ timeout: 5000 });
        assert((await line.textContent()).includes(ids[0]), `${labels[i]}: the line does not name its sender ${ids[0]}`);
        const markup = await ps[i].locator('#chat-log b, #chat-log img').count();
        assert(markup === 0, `${labels[i]}: the chat line was rendered as HTML`);
      }
    });
    await check('chat: a line from P3 reaches P1 and P2', async () => {
      const text = 'and one from P3, ünïcødé ✓';
      await ps[2].fill('#chat-input', text);
      await ps[2].press('#chat-input', 'Enter');
      for (const i of [0, 1]) await ps[i].locator('#chat-log li.peer', { hasText: text }).waitFor({ timeout: 5000 });
    });

    // Screenshots of the full call (they help when something failed, too).
    await check('screenshots P1.png, P2.png, P3.png are saved, not blank, and their remote tiles not flat', async () => {
      const problems = [];
      const notes = [];
      for (let i = 0; i < ps.length; i++) {
        const label = labels[i];
        const full = await ps[i].screenshot({ path: path.join(outDir, `${label}.png`), fullPage: true });
        const fullStats = await ps[i].evaluate(pngStats, full.toString('base64'));
        if (fullStats.variance <= MIN_VARIANCE) problems.push(`${label}.png is blank`);
        const crops = [];
        for (const id of ids.filter((_, j) => j !== i)) {
          // The video's box, less a margin (its border and rounded corners show the page behind).
          const box = await ps[i].locator(`${tileSelector(id)} video`).boundingBox();
          if (!box || box.width < 20 || box.height < 20) {
            problems.push(`${label}: the video of ${id} has no size on the page`);
            continue;
          }
          const clip = { x: box.x + box.width * 0.05, y: box.y + box.height * 0.05,
            width: box.width * 0.9, height: box.height * 0.9 };
          const crop = await ps[i].screenshot({ clip });
          const stats = await ps[i].evaluate(pngStats, crop.toString('base64'));
          if (stats.variance <= MIN_VARIANCE) {
            problems.push(`${label}: the video of ${id} is flat in the screenshot (variance ${stats.variance.toFixed(1)})`);
          }
          crops.push(stats.variance.toFixed(0));
        }
        notes.push(`${label} ${fullStats.width}x${fullStats.height}, tiles var ${crops.join('/')}`);
      }
      assert(problems.length === 0, problems.join('; '));
      return notes.join('; ');
    });

    await check('a 4th page in the same room is told "This room is full", with a link back to /', async () => {
      const p4 = await newPage(ctxs[0], 'P4');
      try {
        await p4.goto(roomUrl, { timeout: 10000 });
        await p4.locator('#full').waitFor({ state: 'visible', timeout: 5000 });
        const text = await p4.textContent('#full');
        assert(/This room is full/.test(text), `the message says ${JSON.stringify(text.trim())}`);
        const href = await p4.getAttribute('#full a', 'href');
        assert(href === '/', `the link back goes to ${href}`);
        const snap = await rtcSnapshot(p4);
        assert(snap.state === 'full', `window.rtc.state is ${snap.state}`);
        assert(snap.tiles.length === 0, `it shows tiles ${JSON.stringify(snap.tiles)}`);
        await p4.screenshot({ path: path.join(outDir, 'P4.png') });
      } finally {
        await p4.close();
      }
    });

    await check('the three are still in a call of three after the 4th page was turned away', async () => {
      await sleep(500);
      for (let i = 0; i < ps.length; i++) {
        const snap = await rtcSnapshot(ps[i]);
        assert(snap.peers.length === 2 && snap.tiles.length === 2, `${labels[i]}: ${JSON.stringify(snap)}`);
        if (connected) {
          assert(snap.peers.every((p) => p.connectionState === 'connected'), `${labels[i]}: ${JSON.stringify(snap.peers)}`);
        }
      }
    });

    await check('P3 closes its page: P1 and P2 remove its tile and show that it left, and stay connected', async () => {
      const gone = ids[2];
      await ps[2].close();
      for (const i of [0, 1]) {
        await ps[i].locator(tileSelector(gone)).waitFor({ state: 'detached', timeout: 5000 });
        await ps[i].locator(`#people-log li.left[data-peer-id="${gone}"]`, { hasText: 'left' })
          .waitFor({ state: 'visible', timeout: 5000 });
        const snap = await rtcSnapshot(ps[i]);
        const other = ids[1 - i];
        assert(sameSet(snap.tiles, [other]), `${labels[i]} has tiles ${JSON.stringify(snap.tiles)}`);
        assert(snap.peers.length === 1 && snap.peers[0].id === other, `${labels[i]}: ${JSON.stringify(snap.peers)}`);
        if (connected) {
          assert(snap.peers[0].connectionState === 'connected', `${labels[i]}: ${JSON.stringify(snap.peers)}`);
        }
        const count = await ps[i].textContent('#count');
        assert(count === '2 participants', `${labels[i]} says ${JSON.stringify(count)}`);
      }
      await ps[0].screenshot({ path: path.join(outDir, 'P1-after-P3-left.png'), fullPage: true });
    });

    await check('no uncaught errors and no error message in the pages', async () => {
      const problems = [];
      for (const p of pages) problems.push(...p.pageErrors().map((e) => `${p.label} ${e}`));
      for (const i of [0, 1]) {
        if (await ps[i].locator('#error').isVisible()) {
          problems.push(`${labels[i]} shows ${JSON.stringify((await ps[i].textContent('#error')).trim())}`);
        }
      }
      assert(problems.length === 0, problems.join('; '));
    });
  } finally {
    for (const p of ps) if (!p.isClosed()) p.flushLog();
  }
}

async function cleanup() {
  await browsers.close();
  await stopBinary(server, 3000).catch(() => {});
}

await runToEnd({ run, cleanup, outDir, limitMs: 180000 });
