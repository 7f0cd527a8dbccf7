#!/usr/bin/env node
// Browser test of the observer page (static/observer.html, served by the admin API).
//
//   node tests/browser/observer.mjs --server-bin target/debug/rtcserver --out DIR
//   node tests/browser/observer.mjs --admin http://127.0.0.1:30001 --server ws://127.0.0.1:30000 --out DIR
//
// Starts the server (or uses a running one), connects four WebSocket peers in two rooms from a
// blank page of a headless Chromium, opens the observer page and checks that it draws the tree
// (the four static children, both rooms, the four peers), then clicks the crash button of a room
// and of a peer and checks what the page shows and what the peers see: the room restarts and its
// members still relay; the crashed peer's connection closes with 1011. Then it switches a fault
// preset on with its button (its rule appears in the rules table, acts on a pair, and its counter
// and the fault log show it), saves observer.png (and the console log) into --out, checks it is
// not blank, and switches the preset off (the rule goes). The page must load with no console
// error. With --server-bin, it then stops the server with SIGTERM (the page must show it stopped
// within 2 s, no badge left green; observer-stopped.png) and starts it again on the same ports (the
// page must be live again and draw the new tree). Ends with one line "N passed, M failed"; exits
// 1 on any failure.
//
// Options:
//   --server-bin PATH   start this rtcserver binary on free 127.0.0.1 ports (overrides the two below)
//   --admin URL         the admin API of a running server (default http://127.0.0.1:30001)
//   --server URL        its WebSocket endpoint (default ws://127.0.0.1:30000)
//   --out DIR           where the screenshot and logs go (default: a fresh temp dir)
//   --chromium PATH     the browser (default $CHROMIUM or /usr/bin/chromium)

import { chromium } from 'playwright-core';
import {
  started, results, record, check, assert, freePort, sleep, runToEnd, parseOptions, outputDir,
  startServer as startBinary, stopServer as stopBinary, pngStats,
} from './harness.mjs';
import fs from 'node:fs';
import path from 'node:path';

// ---- Options -------------------------------------------------------------------------------
const opts = parseOptions(import.meta.url, {
  admin: 'http://127.0.0.1:30001',
  server: 'ws://127.0.0.1:30000',
  out: null,
  serverBin: null,
  chromium: process.env.CHROMIUM || '/usr/bin/chromium',
}, { '--admin': 'admin', '--server': 'server', '--out': 'out', '--server-bin': 'serverBin',
  '--chromium': 'chromium' });
opts.admin = opts.admin.replace(/\/+$/, '');
const outDir = outputDir(opts.out, 'rtc-observer');

// ---- Server (optional) ---------------------------------------------------------------------

let server = null;
let serverArgs = null;
let serverPorts = null;

async function startServer() {
  const [port, adminPort] = [await freePort(), await freePort()];
  const args = ['--bind', '127.0.0.1', '--port', String(port), '--admin-bind', `127.0.0.1:${adminPort}`];
  [serverArgs, serverPorts] = [args, [port, adminPort]];
  server = await startBinary(opts.serverBin, args, [port, adminPort], path.join(outDir, 'server.log'));
  opts.admin = `http://127.0.0.1:${adminPort}`;
  opts.server = `ws://127.0.0.1:${port}`;
  return `${opts.server}, admin ${opts.admin}`;
}

// ---- The peers, in another page of the same browser ----------------------------------------
// window.peers[name] = { ws, received: [], close: code }; the book protocol by hand.
function peerKit() {
  window.peers = {};
  window.connectPeer = (name, url) => new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const peer = { ws, received: [], close: null };
    window.peers[name] = peer;
    ws.onopen = () => resolve();
    ws.onerror = () => reject(new Error(`${name}: WebSocket error`));
    ws.onmessage = (m) => peer.received.push(m.data);
    ws.onclose = (e) => { peer.close = e.code; };
  });
  window.send = (name, obj) => window.peers[name].ws.send(JSON.stringify(obj));
  window.nextMessage = async (name, want, ms) => {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      const i = window.peers[name].received.findIndex((m) => m.includes(want));
      if (i >= 0) return window.peers[name].received.splice(i, 1)[0];
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`${name} received nothing with ${want} within ${ms} ms`);
  };
}

async function pairUp(page, a, b) {
  await page.evaluate(async ([url, a, b]) => {
    await window.connectPeer(a, url);
    await window.connectPeer(b, url);
    window.send(a, { type: 'GETROOM', value: '' });
    const reply = JSON.parse(await window.nextMessage(a, 'GETROOM', 5000));
    window.send(b, { type: 'ENTERROOM', value: reply.value });
    // ENTERROOM has no answer on success: a relay that arrives proves the join.
    window.send(b, { type: 'probe', from: b });
    await window.nextMessage(a, `"from":"${b}"`, 5000);
  }, [opts.server + '/', a, b]);
}

async function adminJson(p) {
  const r = await fetch(opts.admin + p);
  assert(r.ok, `GET ${p} answered ${r.status}`);
  return r.json();
}

// ---- The test ------------------------------------------------------------------------------
let browser = null;
const consoleLines = [];

async function run() {
  if (opts.serverBin) {
    if (!await check('the server binary starts with its admin API', startServer)) return;
  }
  const served = await check('GET / of the admin API serves the observer page', async () => {
    const r = await fetch(opts.admin + '/');
    assert(r.status === 200, `GET / answered ${r.status}`);
    const html = await r.text();
    assert(html.includes('<title>rtcserver observer</title>'), 'not the observer page');
  });
  if (!served) return;

  if (!await check('Chromium starts', async () => {
    browser = await chromium.launch({ executablePath: opts.chromium, headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'] });
    return `Chromium ${browser.version()}`;
  })) return;
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  // The peers live in a page of the server's own origin (a blank page may not open sockets);
  // it also decodes the screenshot (the observer page's CSP refuses data: images).
  const peersPage = await context.newPage();
  await peersPage.goto(opts.server.replace(/^ws/, 'http') + '/static/style.css');
  await peersPage.evaluate(peerKit);
  const page = await context.newPage();
  page.on('console', (m) => consoleLines.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => consoleLines.push(`[pageerror] ${e.message}`));

  let rooms = [];
  let peers = {};
  const joined = await check('four peers join two rooms over WebSocket', async () => {
    await pairUp(peersPage, 'a', 'b');
    await pairUp(peersPage, 'c', 'd');
    const tree = await adminJson('/tree');
    rooms = tree.rooms.map((r) => r.key);
    assert(rooms.length === 2, `GET /tree lists ${rooms.length} rooms`);
    // Peer ids are random: tell the pairs apart by room (a and b share one, c and d the other).
    const ids = tree.peers.map((p) => p.id);
    assert(ids.length === 4, `GET /tree lists ${ids.length} peers`);
    const byRoom = {};
    for (const p of tree.peers) (byRoom[p.room] ||= []).push(p.id);
    const pairs = Object.values(byRoom);
    assert(pairs.length === 2 && pairs.every((m) => m.length === 2), `pairs ${JSON.stringify(byRoom)}`);
    // Which browser-side peer has which id is not known from the tree; the checks below do not
    // need it (they only need the two rooms, and one peer id to crash).
    peers = { a: pairs[0][0], b: pairs[0][1], c: pairs[1][0], d: pairs[1][1] };
    rooms = Object.keys(byRoom);
    return `rooms ${rooms.join(', ')}, peers ${ids.join(', ')}`;
  });
  if (!joined) return;

  const drawn = await check('the page draws the tree: the four static children, both rooms, four peers', async () => {
    await page.goto(opts.admin + '/', { timeout: 30000 });
    const ids = ['rtcserver_sup', 'registry', 'listener', 'rooms_sup', 'peers_sup',
      ...rooms.map((r) => `room:${r}`), ...Object.values(peers).map((p) => `peer:${p}`)];
    for (const id of ids) {
      await page.locator(`.row[data-id="${id}"]`).waitFor({ timeout: 5000 });
    }
    await page.waitForFunction(() => window.observer.live, null, { timeout: 5000 });
    const buttons = await page.locator('button.crash').count();
    assert(buttons === ids.length, `${buttons} crash buttons for ${ids.length} children`);
    const kind = await page.textContent(`.row[data-id="room:${rooms[0]}"] .badge`);
    assert(kind === 'transient', `the room's first badge says ${kind}`);
  });
  if (!drawn) return;

  // README "The observer page": a page that logs errors on every load is not one to demo with.
  await check('the page loaded with no console error (its icon is allowed by the admin API\'s CSP)', async () => {
    const errors = consoleLines.filter((l) => l.startsWith('[error]') || l.startsWith('[pageerror]'));
    assert(errors.length === 0, errors.join('; '));
  });

  await check('the crash button of a room: the page shows the crash and the restart, the members still relay', async () => {
    const room = `room:${rooms[0]}`;
    await page.click(`.row[data-id="${room}"] button.crash`);
    await page.locator('#log li', { hasText: `${room} crashed` }).waitFor({ timeout: 5000 });
    await page.locator('#log li', { hasText: `restarted ${room}` }).waitFor({ timeout: 5000 });
    await page.locator(`.row[data-id="${room}"] .badge.restarts`, { hasText: 'restarts 1' })
      .waitFor({ timeout: 5000 });
    await peersPage.evaluate(async () => {
      window.send('a', { type: 'after-crash', n: 1 });
      await window.nextMessage('b', 'after-crash', 5000);
      window.send('b', { type: 'after-crash', n: 2 });
      await window.nextMessage('a', 'after-crash', 5000);
    });
    const answer = (await page.evaluate(() => window.observer.crashes)).at(-1);
    assert(answer && answer.status === 200 && answer.body.crashed === room, JSON.stringify(answer));
  });

  await check('the crash button of a peer: it leaves the tree and its connection closes with 1011', async () => {
    const peer = `peer:${peers.d}`;
    await page.click(`.row[data-id="${peer}"] button.crash`);
    await page.locator('#log li', { hasText: `${peer} crashed` }).waitFor({ timeout: 5000 });
    await page.locator(`.row[data-id="${peer}"]`).waitFor({ state: 'detached', timeout: 5000 });
    // The tree does not say which browser-side peer has which id: exactly one of the four
    // closes, with 1011, and the other three stay open.
    const codes = await peersPage.evaluate(async () => {
      const names = ['a', 'b', 'c', 'd'];
      const closed = () => names.some((n) => window.peers[n].close !== null);
      for (let i = 0; i < 250 && !closed(); i++) await new Promise((r) => setTimeout(r, 20));
      return names.map((n) => window.peers[n].close);
    });
    const closedCodes = codes.filter((c) => c !== null);
    assert(closedCodes.length === 1 && closedCodes[0] === 1011,
      `closes (a, b, c, d): ${JSON.stringify(codes)}; exactly one should be 1011`);
  });

  // docs/faults.md, "Presets": the page's buttons set and remove a preset's rules.
  await check('a preset switched on from the page: its rule appears, acts and is counted', async () => {
    const button = page.locator('#presets button[data-preset="duplicate-answer"]');
    await button.waitFor({ timeout: 5000 });
    const buttons = await page.locator('#presets button').count();
    assert(buttons === 6, `${buttons} preset buttons`);
    await button.click();
    const row = page.locator('#rules tr[data-rule="duplicate-answer.answers"]');
    await row.waitFor({ timeout: 5000 });
    await page.locator('#presets button.on[data-preset="duplicate-answer"]').waitFor({ timeout: 5000 });
    const rules = (await adminJson('/faults')).rules.map((r) => r.name);
    assert(rules.length === 1 && rules[0] === 'duplicate-answer.answers', `GET /faults lists ${rules}`);
    // The pair whose peers are both still open (one of the four was crashed above) gets one
    // answer twice.
    const pair = await peersPage.evaluate(async () => {
      const open = (n) => window.peers[n].close === null;
      const [from, to] = open('a') && open('b') ? ['a', 'b'] : ['c', 'd'];
      window.send(from, { type: 'answer', sdp: 'preset' });
      await window.nextMessage(to, '"sdp":"preset"', 5000);
      await window.nextMessage(to, '"sdp":"preset"', 5000);
      return from + '>' + to;
    });
    await page.locator('#rules tr[data-rule="duplicate-answer.answers"] td.injected', { hasText: 'duplicate 1' })
      .waitFor({ timeout: 5000 });
    await page.locator('#fault-log li', { hasText: 'duplicate-answer.answers duplicate' }).waitFor({ timeout: 5000 });
    return `${pair}: the answer twice, counted and logged`;
  });

  await check('observer.png is saved and is not blank', async () => {
    await page.mouse.move(0, 0);
    const shot = await page.screenshot({ path: path.join(outDir, 'observer.png'), fullPage: true });
    const stats = await peersPage.evaluate(pngStats, shot.toString('base64'));
    assert(stats.variance > 50, `the screenshot is flat (variance ${stats.variance.toFixed(1)})`);
    const rows = await page.locator('.row').count();
    assert(rows >= 10, `only ${rows} rows drawn`);
    return `${stats.width}x${stats.height}, variance ${stats.variance.toFixed(0)}`;
  });

  await check('the preset switched off from the page: its rule goes', async () => {
    const row = page.locator('#rules tr[data-rule="duplicate-answer.answers"]');
    await page.locator('#presets button.on[data-preset="duplicate-answer"]').click();
    await row.waitFor({ state: 'detached', timeout: 5000 });
    await page.locator('#presets button[data-preset="duplicate-answer"]:not(.on)').waitFor({ timeout: 5000 });
    const rules = (await adminJson('/faults')).rules;
    assert(rules.length === 0, `GET /faults still lists ${JSON.stringify(rules)}`);
    const switches = await page.evaluate(() => window.observer.faults.switches);
    assert(switches.length === 2 && switches.every((w) => w.status === 200), JSON.stringify(switches));
  });

  await check('no uncaught errors in the page', async () => {
    const errors = consoleLines.filter((l) => l.startsWith('[pageerror]'));
    assert(errors.length === 0, errors.join('; '));
  });

  await peersPage.evaluate(() => Object.values(window.peers).forEach((p) => p.ws.close()));

  if (opts.serverBin) await stopAndStart(page);
}

// README "The observer page": a stopped server shows as stopped, and a restarted one as live.
async function stopAndStart(page) {
  const stopped = await check('SIGTERM: the server exits 0 and the page shows it stopped within 2 s, no badge left green', async () => {
    const t0 = Date.now();
    const shown = page.waitForFunction(() => window.observer.gone && !window.observer.live, null,
      { timeout: 5000, polling: 50 }).then(() => Date.now() - t0);
    const how = await stopBinary(server, 5000);
    server = null; // stopped here: the cleanup has nothing to stop or report
    assert(how === 0, `the server ${how}`);
    const took = await shown;
    assert(took <= 2000, `the page showed it after ${took} ms`);
    const words = await page.textContent('#live-text');
    // "server stopped" after the `stopped` event, "server stopped or unreachable" when the stream
    // ends without it (the binary can exit before writing it).
    assert(/^server stopped/.test(words), `the header says ${JSON.stringify(words)}`);
    const colours = await page.evaluate(() => Array.from(document.querySelectorAll('#tree .badge[class*="status-"]'),
      (b) => [b.textContent, getComputedStyle(b).backgroundColor]));
    const green = colours.filter(([t, bg]) => t === 'running' || bg === 'rgb(234, 250, 240)');
    assert(colours.length > 0 && green.length === 0, `badges still running: ${JSON.stringify(green)}`);
    await page.mouse.move(0, 0);
    await page.screenshot({ path: path.join(outDir, 'observer-stopped.png'), fullPage: true });
    return `after ${took} ms: ${JSON.stringify(words)}`;
  });
  if (!stopped) return;
  await check('the server starts again on the same ports: the page is live again within 5 s with the new tree', async () => {
    server = await startBinary(opts.serverBin, serverArgs, serverPorts, path.join(outDir, 'server-again.log'));
    const t0 = Date.now();
    await page.waitForFunction(() => window.observer.live && !window.observer.gone, null, { timeout: 5000, polling: 50 });
    await page.locator('.row[data-id="rtcserver_sup"] .badge.status-running', { hasText: 'running' })
      .waitFor({ timeout: 5000 });
    const rooms = await page.locator('.row[data-id^="room:"]').count();
    assert(rooms === 0, `the new tree still shows ${rooms} rooms of the old server`);
    const words = await page.textContent('#live-text');
    assert(words === 'live', `the header says ${JSON.stringify(words)}`);
    return `live again ${Date.now() - t0} ms after the server listened`;
  });
}

async function cleanup() {
  fs.writeFileSync(path.join(outDir, 'observer-console.log'), consoleLines.join('\n') + '\n');
  if (browser) await browser.close().catch(() => {});
  if (opts.serverBin) {
    const how = await stopBinary(server, 5000).catch((e) => String(e));
    if (how !== null) record('the server stops on SIGTERM with status 0', how === 0, how === 0 ? '' : `it ${how}`);
    else if (server && server.exitedHow) record('the server was still running at the end', false, server.exitedHow);
  }
}

await runToEnd({ run, cleanup, outDir, limitMs: 120000 });
