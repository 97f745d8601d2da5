// relay.mjs -- start the real pfpcache-relay binary on a free loopback port with a
// temporary data directory, stop it again, and read its /stats and /metrics.
import assert from 'node:assert/strict';
import { get as httpGet } from 'node:http';
import { get as httpsGet } from 'node:https';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const BIN = process.env.PFP_BIN ?? fileURLToPath(new URL('../../../pfpcache-relay', import.meta.url));
export const REPO = fileURLToPath(new URL('../../../', import.meta.url));

export async function tempDir() {
  return mkdtemp(join(tmpdir(), 'pfp-e2e-'));
}

// A configuration for tests: loopback, an ephemeral port, data under `dir`, no upstream relays.
export function testConfig(dir, overrides = {}) {
  return {
    listen_addr: '127.0.0.1:0',
    database_path: join(dir, 'db', 'pfpcache.db'),
    media_cache_path: join(dir, 'media'),
    upstream_relays: [],
    shutdown_timeout_seconds: 5,
    ...overrides,
  };
}

// Runs the binary to completion (for --check and configuration errors).
export function runBinary(args, { timeoutMs = 10000 } = {}) {
  return new Promise((resolve, reject) => {
    const proc = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`${BIN} ${args.join(' ')} did not exit within ${timeoutMs} ms`));
    }, timeoutMs);
    proc.stdout.on('data', (c) => (stdout += c));
    proc.stderr.on('data', (c) => (stderr += c));
    proc.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

// A port that was free a moment ago, for the few tests that cannot learn the port from the log.
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// The body of GET `target`. A relay under test with TLS has a certificate of the test's own
// making, so its figures are read without checking it (they are the test's, not a client's).
function getText(target) {
  return new Promise((resolve, reject) => {
    const get = target.startsWith('https:') ? httpsGet : httpGet;
    get(target, { rejectUnauthorized: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`${target}: ${res.statusCode}`))));
    }).on('error', reject);
  });
}

// Calls `probe` (sync or async) until `done` holds for what it returns, and returns that. Fails after
// `timeoutMs`, naming `what` and the last value seen, so that no test waits without a bound.
export async function until(probe, done = Boolean, { what = 'the condition', timeoutMs = 10000, intervalMs = 50 } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await probe();
    if (done(r)) return r;
    if (Date.now() > deadline) {
      throw new Error(`${what}: not within ${timeoutMs} ms (last seen: ${String(JSON.stringify(r)).slice(0, 300)})`);
    }
    await new Promise((res) => setTimeout(res, intervalMs));
  }
}

// Parses the Prometheus text exposition format strictly: every sample belongs to a family declared by
// # TYPE. `get(name, labels)` sums the samples of `name` whose labels include `labels` (0 when none).
export function parseMetrics(text) {
  const families = new Map();
  const samples = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let m;
    if ((m = /^# HELP ([a-z_:][a-z0-9_:]*) \S.*$/.exec(line))) continue;
    if ((m = /^# TYPE ([a-z_:][a-z0-9_:]*) (counter|gauge|histogram)$/.exec(line))) {
      assert.ok(!families.has(m[1]), `${m[1]} declared twice`);
      families.set(m[1], m[2]);
      continue;
    }
    m = /^([a-z_:][a-z0-9_:]*)(?:\{((?:[a-z_][a-z0-9_]*="(?:[^"\\\n]|\\.)*",?)*)\})? (\S+)$/.exec(line);
    assert.ok(m, `not a sample line: ${line}`);
    const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/([a-z_][a-z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]));
    const value = m[3] === '+Inf' ? Infinity : Number(m[3]);
    assert.ok(!Number.isNaN(value), `not a number: ${line}`);
    const family = [m[1], m[1].replace(/_(bucket|sum|count)$/, '')].find((f) => families.has(f));
    assert.ok(family, `${m[1]} has no # TYPE`);
    samples.push({ name: m[1], family, labels, value });
  }
  const get = (name, labels = {}) =>
    samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((n, s) => n + s.value, 0);
  return { families, samples, get };
}

// Starts the relay and resolves once it logs the address it listens on.
// `config` overrides testConfig(); `readyPattern` may wait for a different line,
// or be null to return at once (for a relay that logs nothing). `launcher` is a
// command that execs the relay (as prlimit does), with its arguments.
export async function startRelay({ config = {}, dir, readyPattern = /listening on (https?:\/\/\S+)/, timeoutMs = 15000, launcher = [] } = {}) {
  dir ??= await tempDir();
  await mkdir(dir, { recursive: true });
  const configPath = join(dir, 'config.json');
  await writeFile(configPath, JSON.stringify(testConfig(dir, config), null, 2));

  const command = [...launcher, BIN, '--config', configPath];
  const proc = spawn(command[0], command.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  let stdout = '';
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  proc.stdout.on('data', (c) => (stdout += c));

  const url = await new Promise((resolve, reject) => {
    if (readyPattern === null) {
      proc.stderr.on('data', (c) => (stderr += c));
      resolve(undefined);
      return;
    }
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`relay did not start within ${timeoutMs} ms:\n${stderr}`));
    }, timeoutMs);
    proc.stderr.on('data', (c) => {
      stderr += c;
      const m = readyPattern.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`relay exited (${code ?? signal}) before it was ready:\n${stderr}`));
    });
  });

  return {
    url,
    dir,
    configPath,
    proc,
    exited,
    get stderr() {
      return stderr;
    },
    get stdout() {
      return stdout;
    },
    // Resolves once the log (stderr) matches `pattern`; rejects after `timeoutMs`.
    async waitForLog(pattern, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      while (!pattern.test(stderr)) {
        if (Date.now() > deadline) throw new Error(`log never matched ${pattern}:\n${stderr}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    // GET /stats, parsed.
    async stats() {
      return JSON.parse(await getText(`${url}/stats`));
    },
    // GET /metrics, parsed by parseMetrics().
    async metrics() {
      return parseMetrics(await getText(`${url}/metrics`));
    },
    // One figure of GET /metrics: the sum of the samples of `name` whose labels include `labels`
    // (e.g. { relay: 'ws://127.0.0.1:9' }), 0 when there is none.
    async metric(name, labels = {}) {
      return (await this.metrics()).get(name, labels);
    },
    // Resolves with the first true value of `condition()` (sync or async); rejects after `timeoutMs`, naming `what`.
    waitFor(condition, what, timeoutMs = 5000) {
      return until(condition, Boolean, { what, timeoutMs, intervalMs: 20 });
    },
    // Resolves once every upstream relay in /stats is connected.
    async waitUpstreamConnected(timeoutMs = 5000) {
      await this.waitFor(
        async () => (await this.stats()).upstream_relays.every((r) => r.state === 'connected'),
        'every upstream relay connected',
        timeoutMs,
      );
    },
    // Sends `signal` (unless the process has already exited) and resolves with {code, signal}.
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
    // Stops the relay, removes its directory, and fails if it did not exit cleanly:
    // under `make asan` a sanitizer report turns into a non-zero exit status.
    async cleanup({ keepDir = false } = {}) {
      const { code, signal } = await this.stop();
      if (!keepDir) await rm(dir, { recursive: true, force: true });
      if (code !== 0) throw new Error(`relay exited with ${code ?? signal}:\n${stderr}`);
    },
  };
}
