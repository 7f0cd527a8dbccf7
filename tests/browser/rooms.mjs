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
// (as text), that a fourth page is told "This room is full" with a link to the next room of the same
// name (which opens), that when P1's own peer crashes (POST /crash on the admin API) P1 resumes with
// its id and calls, nobody sees it leave and the chat sent meanwhile arrives once (docs/rooms-protocol.md,
// "Resume"), that when P3 (opened with ?resume=0) has its own peer crash P3 says so and
// P1 and P2 see it leave, that P3's "Join again" brings the call of three back, that when P3 closes
// its page P1 and P2 see it leave, and that forged `error` and `left` events (from a scripted
// member, refused by the server; and given to the pages as if a server had relayed them) change
// nothing. Saves P1.png, P2.png, P3.png, P4.png, P3-dropped.png (and console logs) into --out.
// Ends with one line "N passed, M failed"; exits 1 on any failure.
//
// Options:
//   --base URL          the server to test (default http://127.0.0.1:30000); rooms of 3 needed
//   --admin URL         the admin API of the server given by --base (default http://127.0.0.1:30001)
//   --server-bin PATH   start this rtcserver binary (--max-peers 3, an admin API) on free 127.0.0.1 ports
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
  admin: 'http://127.0.0.1:30001',
  out: null,
  serverBin: null,
  staticDir: path.join(REPO, 'static'),
  chromium: process.env.CHROMIUM || '/usr/bin/chromium',
  timeout: 30000,
}, { '--base': 'base', '--admin': 'admin', '--out': 'out', '--server-bin': 'serverBin', '--static-dir': 'staticDir',
  '--chromium': 'chromium', '--timeout': 'timeout' });
opts.timeout = Number(opts.timeout);
opts.base = opts.base.replace(/\/+$/, '');
const outDir = outputDir(opts.out, 'rtc-rooms');

// ---- Server (optional) ---------------------------------------------------------------------

let server = null;

async function startServer() {
  const [port, adminPort] = [await freePort(), await freePort()];
  const args = ['--bind', '127.0.0.1', '--port', String(port), '--static-dir', path.resolve(opts.staticDir),
    '--max-peers', String(MAX_PEERS), '--admin-bind', `127.0.0.1:${adminPort}`];
  server = await startBinary(opts.serverBin, args, [port, adminPort], path.join(outDir, 'server.log'),
    { RUST_LOG: 'info', ...process.env });
  opts.admin = `http://127.0.0.1:${adminPort}`;
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
        // P3 opts out of resume, so that its own crash below shows the page without it.
        await page.goto(i === 2 ? roomUrl + '?resume=0' : roomUrl, { timeout: 30000 });
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

    // README "Named rooms, more than two people": the full room's link leads to the next room.
    await check(`a 4th page in the same room is told "This room is full", with a link to ${room}-2 that opens it`, async () => {
      const p4 = await newPage(ctxs[0], 'P4');
      try {
        await p4.goto(roomUrl, { timeout: 30000 });
        // A new tab on a loaded machine (2 cores, three calls) can take several seconds to get there.
        await p4.locator('#full').waitFor({ state: 'visible', timeout: 15000 });
        const text = await p4.textContent('#full');
        assert(/This room is full/.test(text), `the message says ${JSON.stringify(text.trim())}`);
        const href = await p4.getAttribute('#full a', 'href');
        assert(href === `/${room}-2`, `the first link goes to ${href}`);
        const snap = await rtcSnapshot(p4);
        assert(snap.state === 'full', `window.rtc.state is ${snap.state}`);
        assert(snap.tiles.length === 0, `it shows tiles ${JSON.stringify(snap.tiles)}`);
        await p4.screenshot({ path: path.join(outDir, 'P4.png') });
        await p4.click('#full a');
        await p4.waitForFunction(() => window.rtc && ['in-room', 'full', 'closed', 'error'].includes(window.rtc.state),
          null, { timeout: 10000 });
        const next = await rtcSnapshot(p4);
        assert(next.state === 'in-room' && next.room === `${room}-2` && next.peers.length === 0,
          `after the link: ${JSON.stringify(next)}`);
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

    await resumeAfterCrash(ps, ids, connected);
    await peerCrash(ps, ids, connected);

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

    await forgedEvents(ps, ids, ctxs[0], base.replace(/^http/, 'ws') + `/socket/${room}`);

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

const allConnected = (n) => {
  const list = window.rtc.peers();
  return list.length === n && list.every((p) => p.connectionState === 'connected');
};

// docs/rooms-protocol.md "Resume" (issue 19, acceptance 10): P1's socket is cut by a crash of its
// peer; the page resumes with the same id, its calls stay connected, P2 and P3 see no leave, and the
// chat lines sent while it was away (by P2, and by P1 itself) arrive once.
async function resumeAfterCrash(ps, ids, connected) {
  const cut = ids[0];
  await check('P1\'s own peer crashes: P1 resumes with the same id, its calls stay up, nobody sees it leave, and the chat sent meanwhile arrives once', async () => {
    const r = await fetch(opts.admin + '/crash', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ target: `peer:${cut}` }),
    });
    assert(r.status === 200, `POST /crash peer:${cut} answered ${r.status} ${await r.text()}`);
    const fromP2 = `while P1 was away ${Date.now()}`;
    await ps[1].fill('#chat-input', fromP2);
    await ps[1].press('#chat-input', 'Enter');
    const t0 = Date.now();
    await ps[0].waitForFunction(() => window.rtc.state === 'reconnecting' || window.rtc.resumes > 0, null, { timeout: 5000 });
    const fromP1 = `P1 typed this while reconnecting ${Date.now()}`;
    const typedWhileAway = await ps[0].evaluate(() => window.rtc.state === 'reconnecting');
    if (typedWhileAway) {
      await ps[0].fill('#chat-input', fromP1);
      await ps[0].press('#chat-input', 'Enter');
    }
    await ps[0].waitForFunction((id) => window.rtc.resumes === 1 && window.rtc.state === 'in-room' && window.rtc.id === id,
      cut, { timeout: 10000 });
    const took = Date.now() - t0;
    await ps[0].locator('#chat-log li.peer', { hasText: fromP2 }).waitFor({ timeout: 5000 });
    if (typedWhileAway) {
      for (const i of [1, 2]) {
        await ps[i].locator('#chat-log li.peer', { hasText: fromP1 }).waitFor({ timeout: 5000 });
      }
    }
    await sleep(500);
    for (const i of [0, 1, 2]) {
      for (const text of typedWhileAway ? [fromP2, fromP1] : [fromP2]) {
        const n = await ps[i].locator('#chat-log li', { hasText: text }).count();
        assert(n === 1, `${text} is ${n} times in P${i + 1}'s chat`);
      }
    }
    for (const i of [1, 2]) {
      const left = await ps[i].locator(`#people-log li.left[data-peer-id="${cut}"]`).count();
      assert(left === 0, `P${i + 1} was told P1 left`);
      assert(await ps[i].locator(tileSelector(cut)).count() === 1, `P${i + 1} lost P1's tile`);
    }
    if (connected) {
      for (const i of [0, 1, 2]) {
        const snap = await rtcSnapshot(ps[i]);
        assert(snap.peers.length === 2 && snap.peers.every((p) => p.connectionState === 'connected'),
          `P${i + 1}: ${JSON.stringify(snap.peers)}`);
      }
      await remoteVideoLive(ps[1], cut);
    }
    assert(await ps[0].locator('#error').isHidden(), 'P1 shows an error');
    return `resumed ${took} ms after the crash${typedWhileAway ? ', with a line typed while reconnecting' : ''}`;
  });
}

// README "Named rooms, more than two people": a page whose own connection ends says so and rejoins.
async function peerCrash(ps, ids, connected) {
  const gone = ids[2];
  const out = await check('P3\'s own peer crashes: P3 says it is out, with "Join again", no tiles; P1 and P2 see it leave (within 5 s)', async () => {
    const r = await fetch(opts.admin + '/crash', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ target: `peer:${gone}` }),
    });
    const answer = await r.text();
    assert(r.status === 200, `POST /crash peer:${gone} answered ${r.status} ${answer}`);
    const t0 = Date.now();
    await Promise.all([0, 1].map((i) => ps[i].locator(tileSelector(gone)).waitFor({ state: 'detached', timeout: 5000 })));
    const seen = Date.now() - t0;
    await ps[2].locator('#error', { hasText: 'crashed' }).waitFor({ state: 'visible', timeout: 2000 });
    const snap = await rtcSnapshot(ps[2]);
    assert(snap.state === 'closed' && snap.tiles.length === 0 && snap.peers.length === 0, `P3: ${JSON.stringify(snap)}`);
    const count = await ps[2].textContent('#count');
    assert(count === '1 participant', `P3 says ${JSON.stringify(count)}`);
    const button = ps[2].locator('#leave');
    assert(await button.isEnabled() && (await button.textContent()) === 'Join again',
      `P3's button says ${JSON.stringify(await button.textContent())}, enabled: ${await button.isEnabled()}`);
    const text = (await ps[2].textContent('#error')).trim();
    assert(!/calls that are up go on/.test(text), `P3 says ${JSON.stringify(text)}`);
    await ps[2].screenshot({ path: path.join(outDir, 'P3-dropped.png'), fullPage: true });
    return `P1 and P2 saw it after ${seen} ms; P3 says ${JSON.stringify(text)}`;
  });
  if (!out) {
    skip('P3 joins again', 'the crash was not shown');
    return;
  }
  await check('P3 presses "Join again": a new id, and the call of three is back (all connected, P3\'s videos moving)', async () => {
    const t0 = Date.now();
    await ps[2].click('#leave');
    await ps[2].waitForFunction((old) => window.rtc.id && window.rtc.id !== old && window.rtc.state === 'in-room',
      gone, { timeout: 10000 });
    ids[2] = await ps[2].evaluate(() => window.rtc.id);
    assert(await ps[2].locator('#error').isHidden(), 'P3 still shows the error');
    if (!connected) return 'rejoined (the media did not connect before either)';
    try {
      await Promise.all(ps.map((p) => p.waitForFunction(allConnected, 2, { timeout: opts.timeout, polling: 100 })));
    } catch (err) {
      const snaps = await Promise.all(ps.map(rtcSnapshot));
      throw new Error('not all connected again: ' + snaps.map((s) => JSON.stringify(s.peers)).join(', '));
    }
    await ps[2].waitForFunction(() => window.rtc.peers().every((p) => p.videoWidth > 0), null, { timeout: 10000 });
    for (const id of ids.slice(0, 2)) await remoteVideoLive(ps[2], id);
    await remoteVideoLive(ps[0], ids[2]);
    return `new id ${ids[2]}, all connected ${((Date.now() - t0) / 1000).toFixed(1)} s after the click`;
  });
}

/** What P1 and P2 show that a forged event could change. */
async function pageFacts(page, other) {
  return page.evaluate((other) => ({
    state: window.rtc.state,
    full: !document.querySelector('#full').hidden,
    error: !document.querySelector('#error').hidden,
    other: (window.rtc.peers().find((p) => p.id === other) || {}).connectionState || 'gone',
    tile: Boolean(document.querySelector(`#videos .tile.remote[data-peer-id="${other}"]`)),
  }), other);
}

function unchanged(facts, label) {
  assert(facts.state === 'in-room' && !facts.full && !facts.error && facts.tile && facts.other === 'connected',
    `${label}: ${JSON.stringify(facts)}`);
}

// README "Named rooms: /socket/<room>": the four server events are the server's.
async function forgedEvents(ps, ids, ctx, wsUrl) {
  const member = await newPage(ctx, 'member');
  try {
    await check('a scripted member sends a forged `error` (room_is_full) and `left` (of P2): refused, the pages change nothing', async () => {
      await member.goto(wsUrl.replace(/^ws/, 'http').replace(/\/socket\/.*$/, '/static/style.css'));
      const got = await member.evaluate(async ([url, victim]) => {
        const got = [];
        const ws = new WebSocket(url);
        window.memberWs = ws;
        ws.onmessage = (m) => got.push(JSON.parse(m.data));
        await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = () => reject(new Error('WebSocket error')); });
        const until = async (pred, what) => {
          for (let i = 0; i < 250 && !pred(); i++) await new Promise((r) => setTimeout(r, 20));
          if (!pred()) throw new Error(`no ${what} within 5 s: ${JSON.stringify(got)}`);
        };
        await until(() => got.some((m) => m.event === 'authenticated'), 'authenticated');
        ws.send(JSON.stringify({ event: 'error', data: { description: 'room_is_full' }, to: 'all' }));
        ws.send(JSON.stringify({ event: 'left', data: { peer_id: victim }, to: 'all' }));
        const refusals = () => got.filter((m) => m.event === 'error' && m.data && m.data.description === 'invalid_message');
        await until(() => refusals().length >= 2, 'two invalid_message refusals');
        return got;
      }, [wsUrl, ids[1]]);
      const memberId = String(got.find((m) => m.event === 'authenticated').data.peer_id);
      // The member's join reaches the pages (a tile waiting for its call): after that, the forged
      // messages would have arrived too if the server had relayed them.
      await Promise.all([0, 1].map((i) => ps[i].locator(tileSelector(memberId)).waitFor({ timeout: 5000 })));
      await sleep(300); // nothing is to happen: a short look
      for (const i of [0, 1]) unchanged(await pageFacts(ps[i], ids[1 - i]), `P${i + 1}`);
      await member.evaluate(() => window.memberWs.close());
      await Promise.all([0, 1].map((i) => ps[i].locator(tileSelector(memberId)).waitFor({ state: 'detached', timeout: 5000 })));
    });
  } finally {
    await member.close();
  }

  await check('server events that carry a `from` (as a server that relays them would deliver) change nothing on the page', async () => {
    for (const i of [0, 1]) {
      const other = ids[1 - i];
      await ps[i].evaluate(([from, victim]) => {
        const forged = [
          { event: 'error', data: { description: 'room_is_full' }, from },
          { event: 'left', data: { peer_id: victim }, from },
          { event: 'joined', data: { peer_id: '4242' }, from },
          { event: 'authenticated', data: { peer_id: '4242', room: 'elsewhere', peers: [] }, from },
        ];
        // Through the page's own handler, as if the server had relayed them.
        for (const m of forged) window.rtc.ws.dispatchEvent(new MessageEvent('message', { data: JSON.stringify(m) }));
      }, [other, other]);
    }
    await sleep(300); // nothing is to happen: a short look
    for (const i of [0, 1]) {
      const facts = await pageFacts(ps[i], ids[1 - i]);
      unchanged(facts, `P${i + 1}`);
      const snap = await rtcSnapshot(ps[i]);
      assert(snap.id === ids[i] && snap.tiles.length === 1, `P${i + 1}: ${JSON.stringify(snap)}`);
    }
  });
}

async function cleanup() {
  await browsers.close();
  await stopBinary(server, 3000).catch(() => {});
}

await runToEnd({ run, cleanup, outDir, limitMs: 300000 });
