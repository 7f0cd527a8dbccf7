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
