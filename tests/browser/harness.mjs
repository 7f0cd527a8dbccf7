// What the browser test scripts share: their pass/fail record, the "N passed, M failed" bookkeeping,
// option parsing, starting and stopping the server binary, fresh Chromium processes, and the pixel
// statistics behind the "not a blank picture" checks. Each script keeps its own checks.
import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const started = Date.now();
export const results = [];

export function record(name, ok, detail) {
  results.push({ name, ok, detail });
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  console.log(`${ok ? 'ok  ' : 'FAIL'} [${secs.padStart(5)}s] ${name}${detail ? ` — ${detail}` : ''}`);
  return ok;
}

export async function check(name, fn) {
  try {
    const detail = await fn();
    return record(name, true, typeof detail === 'string' ? detail : '');
  } catch (err) {
    return record(name, false, String(err && err.message ? err.message : err).split('\n')[0]);
  }
}

export function skip(name, because) {
  return record(name, false, `not run: ${because}`);
}

export function assert(cond, message) {
  if (!cond) throw new Error(message);
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export function portAccepts(port) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    sock.once('connect', () => { sock.destroy(); resolve(true); });
    sock.once('error', () => { sock.destroy(); resolve(false); });
  });
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Runs a script's `run`, bounded by `limitMs` whatever hangs, then `cleanup`; prints the
 *  summary line ("N passed, M failed") and exits 0 only if something passed and nothing failed. */
export async function runToEnd({ run, cleanup, outDir, limitMs }) {
  const finish = () => {
    clearTimeout(watchdog);
    const passed = results.filter((r) => r.ok).length;
    const failed = results.length - passed;
    console.log(`screenshots and logs: ${outDir}`);
    console.log(`took ${((Date.now() - started) / 1000).toFixed(1)} s`);
    console.log(`${passed} passed, ${failed} failed`);
    process.exit(failed === 0 && passed > 0 ? 0 : 1);
  };
  const watchdog = setTimeout(async () => {
    record(`the run finishes within ${limitMs / 1000} s`, false, 'timed out');
    await Promise.race([cleanup(), sleep(5000)]);
    finish();
  }, limitMs);
  try {
    await run();
  } catch (err) {
    record('the test harness runs', false, err && err.stack ? err.stack.split('\n').slice(0, 3).join(' | ') : String(err));
  }
  await cleanup();
  finish();
}

// ---- Options -------------------------------------------------------------------------------

let scriptName = 'harness.mjs';

/** `--name value` or `--name=value` for each option of `names` (option → key of `defaults`);
 *  `--help` prints the calling script's header comment. */
export function parseOptions(scriptUrl, defaults, names) {
  const file = fileURLToPath(scriptUrl);
  scriptName = path.basename(file);
  const opts = { ...defaults };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    let [name, value] = argv[i].split(/=(.*)/s, 2);
    if (name === '--help' || name === '-h') {
      const lines = fs.readFileSync(file, 'utf8').split('\n').slice(1);
      const header = lines.slice(0, lines.findIndex((l) => !l.startsWith('//')));
      console.log(header.map((l) => l.replace(/^\/\/ ?/, '')).join('\n'));
      process.exit(0);
    }
    if (!(name in names)) die(`unknown option ${name} (try --help)`);
    if (value === undefined) value = argv[++i];
    if (value === undefined) die(`${name} needs a value`);
    opts[names[name]] = value;
  }
  return opts;
}

/** A usage error: one failure in the summary line, exit status 2. */
export function die(message) {
  console.error(`${scriptName}: ${message}`);
  console.log('0 passed, 1 failed');
  process.exit(2);
}

/** `out`, or a fresh temporary directory named after `prefix`; created either way. */
export function outputDir(out, prefix) {
  const dir = out ? path.resolve(out) : fs.mkdtempSync(path.join(os.tmpdir(), `${prefix}-`));
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

// ---- The server binary ---------------------------------------------------------------------

/** Starts `bin args`, its output in `logPath`, and resolves to the child once every one of
 *  `ports` accepts connections. `child.exitedHow` says how it ended, if it has. */
export async function startServer(bin, args, ports, logPath, env = process.env) {
  const log = fs.openSync(logPath, 'w');
  console.log(`starting ${bin} ${args.join(' ')} (log: ${logPath})`);
  const child = spawn(bin, args, { stdio: ['ignore', log, log], env });
  child.exitedHow = null;
  child.once('exit', (code, signal) => { child.exitedHow = `exited with ${signal || code}`; });
  child.once('error', (err) => { child.exitedHow = `could not start: ${err.message}`; });
  const deadline = Date.now() + 15000;
  while (Date.now() < deadline) {
    if (child.exitedHow) throw new Error(`the server ${child.exitedHow} (see ${logPath})`);
    if ((await Promise.all(ports.map(portAccepts))).every(Boolean)) return child;
    await sleep(100);
  }
  child.kill('SIGKILL');
  throw new Error(`the server did not accept connections on port ${ports.join(' and ')} within 15 s`);
}

/** SIGTERM, then SIGKILL after `killAfterMs`; resolves to the exit code or signal, or null if
 *  the child was not running. */
export async function stopServer(child, killAfterMs) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return null;
  const gone = new Promise((resolve) => child.once('exit', (code, signal) => resolve(signal || code)));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
  const how = await gone;
  clearTimeout(timer);
  return how;
}

// ---- Browsers ------------------------------------------------------------------------------

export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-gpu',
  '--disable-quic',
];

/** Chromium processes with fresh profiles (named `prefix-label-*`) and a fake camera; pages whose
 *  console goes to `outDir/label-console.log`. */
export class Browsers {
  constructor(prefix, outDir, executablePath) {
    Object.assign(this, { prefix, outDir, executablePath, profiles: [], contexts: [] });
  }

  async launch(label) {
    const profile = fs.mkdtempSync(path.join(os.tmpdir(), `${this.prefix}-${label}-`));
    this.profiles.push(profile);
    // A persistent context is its own browser process with its own --user-data-dir.
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: this.executablePath,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1100, height: 900 },
      permissions: ['camera', 'microphone'],
    });
    this.contexts.push(context);
    return context;
  }

  async newPage(context, label) {
    // The first page of a fresh browser is its start tab; later pages are new tabs.
    const blank = context.pages().find((p) => p.url() === 'about:blank' && !p.taken);
    const page = blank || await context.newPage();
    page.taken = true;
    page.label = label;
    const logPath = path.join(this.outDir, `${label}-console.log`);
    const lines = [];
    page.on('console', (msg) => lines.push(`[${msg.type()}] ${msg.text()}`));
    page.on('pageerror', (err) => lines.push(`[pageerror] ${err.message}`));
    page.on('close', () => fs.writeFileSync(logPath, lines.join('\n') + '\n'));
    page.flushLog = () => fs.writeFileSync(logPath, lines.join('\n') + '\n');
    page.pageErrors = () => lines.filter((l) => l.startsWith('[pageerror]'));
    page.consoleLines = () => lines.slice();
    return page;
  }

  async close() {
    await Promise.all(this.contexts.map((c) => c.close().catch(() => {})));
    for (const p of this.profiles) fs.rmSync(p, { recursive: true, force: true });
  }
}

// ---- Pixels (these run in a page, through page.evaluate) -----------------------------------

/** Luminance statistics of one frame of a <video>, drawn at 160x120, plus a 40x30 thumbnail. */
export function videoFrameStats(selector) {
  const v = document.querySelector(selector);
  if (!v || !v.videoWidth) return null;
  const w = 160, h = 120;
  const c = document.createElement('canvas');
  c.width = w; c.height = h;
  const g = c.getContext('2d', { willReadFrequently: true });
  g.drawImage(v, 0, 0, w, h);
  const d = g.getImageData(0, 0, w, h).data;
  let s = 0, s2 = 0;
  const thumb = new Array(40 * 30).fill(0);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 4;
      const l = 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
      s += l; s2 += l * l;
      thumb[((y >> 2) * 40) + (x >> 2)] += l / 16;
    }
  }
  const n = w * h, mean = s / n;
  return { width: v.videoWidth, height: v.videoHeight, mean, variance: s2 / n - mean * mean, thumb };
}

/** Luminance statistics of a PNG (given as base64), decoded by the browser. */
export async function pngStats(b64) {
  const img = new Image();
  img.src = 'data:image/png;base64,' + b64;
  await img.decode();
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext('2d', { willReadFrequently: true });
  g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  let s = 0, s2 = 0;
  const n = d.length / 4;
  for (let i = 0; i < d.length; i += 4) {
    const l = 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
    s += l; s2 += l * l;
  }
  const mean = s / n;
  return { width: c.width, height: c.height, mean, variance: s2 / n - mean * mean };
}
