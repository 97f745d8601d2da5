// relay.mjs -- start the real pfpcache-relay binary on a free loopback port with a
// temporary data directory, and stop it again.
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

// Starts the relay and resolves once it logs the address it listens on.
// `config` overrides testConfig(); `readyPattern` may wait for a different line,
// or be null to return at once (for a relay that logs nothing).
export async function startRelay({ config = {}, dir, readyPattern = /listening on (https?:\/\/\S+)/, timeoutMs = 15000 } = {}) {
  dir ??= await tempDir();
  await mkdir(dir, { recursive: true });
  const configPath = join(dir, 'config.json');
  await writeFile(configPath, JSON.stringify(testConfig(dir, config), null, 2));

  const proc = spawn(BIN, ['--config', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
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
    // The value of one sample of GET /metrics: `name` with exactly the label list `labels`
    // (as the relay writes it, e.g. 'relay="ws://127.0.0.1:9"'), 0 when absent.
    async metric(name, labels = '') {
      const text = await getText(`${url}/metrics`);
      const line = text.split('\n').find((l) => l.startsWith(labels === '' ? `${name} ` : `${name}{${labels}} `));
      return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
    },
    // Resolves once `condition()` (sync or async) is true; rejects after `timeoutMs`, naming `what`.
    async waitFor(condition, what, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      while (!(await condition())) {
        if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 20));
      }
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
