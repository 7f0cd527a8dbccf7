// What the browser test scripts share: their pass/fail record, the "N passed, M failed" bookkeeping,
// and small helpers. Each script keeps its own options, server start and checks.
import net from 'node:net';

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
