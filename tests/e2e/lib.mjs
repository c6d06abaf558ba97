// Helpers for the browser test: processes, ports, a TCP echo peer, waits.
import { spawn } from 'node:child_process';
import { createServer, connect } from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, readFileSync } from 'node:fs';

export const SANITIZER_MARKERS = [
  'AddressSanitizer',
  'LeakSanitizer',
  'UndefinedBehaviorSanitizer',
  'ThreadSanitizer',
  'runtime error:',
];

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls fn until it returns a truthy value (or stops throwing); the last
// error is in the timeout message.
export async function waitFor(what, fn, timeoutMs = 20000, everyMs = 250) {
  const end = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = new Error('still false');
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}: ${last && last.message}`);
    await sleep(everyMs);
  }
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// A TCP echo server on 127.0.0.1: what the forward's target is.
export async function echoServer() {
  const srv = createServer((sock) => {
    sock.on('error', () => {});
    sock.pipe(sock);
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return {
    port: srv.address().port,
    close: () => new Promise((r) => srv.close(r)),
  };
}

export function tryConnect(port) {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.on('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

// Sends n random bytes through port and reads the echo; resolves with the
// socket still open and both hashes, so the caller can watch an active
// connection and then close it.
export function echoThrough(port, n) {
  return new Promise((resolve, reject) => {
    const data = randomBytes(n);
    const sent = createHash('sha256').update(data).digest('hex');
    const got = createHash('sha256');
    let received = 0;
    const s = connect(port, '127.0.0.1', () => s.write(data));
    s.on('data', (b) => {
      got.update(b);
      received += b.length;
      if (received === n) resolve({ socket: s, sent, got: got.digest('hex') });
      if (received > n) reject(new Error(`echo returned ${received} bytes, sent ${n}`));
    });
    s.on('error', reject);
    s.setTimeout(20000, () => reject(new Error(`echo timed out after ${received} of ${n} bytes`)));
  });
}

// A flowgate process with its output in a log file; stop() sends SIGTERM
// and returns {code, signal, log}.
export function startFlowgate(name, args, env, logPath) {
  const log = createWriteStream(logPath);
  const p = spawn(args[0], args.slice(1), {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  p.stdout.pipe(log);
  p.stderr.pipe(log);
  const exited = new Promise((r) => p.on('exit', (code, signal) => r({ code, signal })));
  return {
    name,
    proc: p,
    exited,
    alive: () => p.exitCode === null && p.signalCode === null,
    async stop(timeoutMs = 10000) {
      if (p.exitCode === null && p.signalCode === null) p.kill('SIGTERM');
      const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
      const r = await exited;
      clearTimeout(t);
      await new Promise((res) => log.end(res));
      return { ...r, log: readFileSync(logPath, 'utf8') };
    },
  };
}

// "flowgate agent --server ws://H:P --token T --state DIR" -> argv with our
// binary, our state dir and a 1 s report interval. Refuses anything else,
// so a changed command on the page fails the test.
export function agentArgv(command, bin, stateDir) {
  const words = command.trim().split(/\s+/);
  if (words[0] !== 'flowgate' || words[1] !== 'agent') throw new Error(`not an agent command: ${command}`);
  const out = [bin, 'agent'];
  let sawServer = false;
  let sawToken = false;
  for (let i = 2; i < words.length; i++) {
    const w = words[i];
    if (w === '--state') {
      i++;
      continue;
    }
    if (w === '--server') sawServer = true;
    if (w === '--token') sawToken = true;
    out.push(w);
  }
  if (!sawServer || !sawToken) throw new Error(`enroll command lacks --server or --token: ${command}`);
  out.push('--state', stateDir, '--report-interval', '1s');
  return out;
}
