// lib.mjs -- helpers shared by the Node benchmarks.
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { initNostrWasm } from 'nostr-wasm';
import { finalizeEvent, generateSecretKey, setNostrWasm } from 'nostr-tools/wasm';
import WebSocket from 'ws';

export const here = (p) => fileURLToPath(new URL(p, import.meta.url));

// The reference resizer: sharp, installed into bench/out/sharp apart from the project's dependencies, on one
// thread and with no cache, as the relay's image threads work.
export const SHARP_VERSION = '0.33.5';
export function loadSharp() {
  const dir = here('out/sharp');
  if (!existsSync(join(dir, 'node_modules/sharp'))) {
    execFileSync('npm', ['install', '--prefix', dir, '--no-audit', '--no-fund', '--loglevel=error', `sharp@${SHARP_VERSION}`], {
      stdio: 'inherit',
    });
  }
  const sharp = createRequire(join(dir, 'package.json'))('sharp');
  sharp.concurrency(1);
  sharp.cache(false);
  return sharp;
}

// `n` distinct signed kind 0 events as JSON lines, made once (signing takes a while)
// and kept in bench/out.
export async function signedProfiles(n) {
  const path = here(`out/kind0-${n}.jsonl`);
  if (!existsSync(path)) {
    setNostrWasm(await initNostrWasm());
    mkdirSync(here('out'), { recursive: true });
    const lines = [];
    const base = Math.floor(Date.now() / 1000) - 86400;
    for (let i = 0; i < n; i++) {
      const content = JSON.stringify({ name: `user${i}`, picture: `http://127.0.0.1/pics/${i}.jpg` });
      lines.push(JSON.stringify(finalizeEvent({ kind: 0, created_at: base + (i % 3600), tags: [], content }, generateSecretKey())));
    }
    writeFileSync(path, lines.join('\n') + '\n');
  }
  return { path, lines: readFileSync(path, 'utf8').trim().split('\n') };
}

export function openSocket(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url.replace(/^http/, 'ws'));
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

// Publishes serialized events over one connection, `window` at a time; resolves when all are answered.
export function publishAll(ws, lines, window = 256) {
  return new Promise((resolve, reject) => {
    let next = 0;
    let answered = 0;
    const onMessage = (data) => {
      const msg = JSON.parse(data);
      if (msg[0] !== 'OK') return;
      if (msg[2] !== true) return reject(new Error(`refused: ${msg[3]}`));
      if (next < lines.length) ws.send(`["EVENT",${lines[next++]}]`);
      if (++answered === lines.length) {
        ws.off('message', onMessage);
        resolve();
      }
    };
    ws.on('message', onMessage);
    while (next < Math.min(window, lines.length)) ws.send(`["EVENT",${lines[next++]}]`);
  });
}

// A free TCP port on loopback.
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// A scratch directory for one benchmark. nginx workers run as www-data when started by root,
// so it is readable by all: they must reach the files under it.
export function benchDir() {
  const dir = mkdtempSync(join(tmpdir(), 'pfp-bench-'));
  chmodSync(dir, 0o755);
  return dir;
}

// The most files a process may open here: nginx keeps as many open as this allows, less its connections.
const FILE_LIMIT = (() => {
  const hard = execFileSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).trim();
  return hard === 'unlimited' ? 1 << 20 : Number(hard);
})();
const NGINX_CONNECTIONS = 4096;
export const NGINX_OPEN_FILES = Math.min(200000, FILE_LIMIT - 2 * NGINX_CONNECTIONS);

// Starts nginx (one worker, access log off, open files cached) serving `root` on a free loopback port;
// resolves with { url, pid (the master's), stop() }. The configuration is written into `dir`; both lie under a benchDir().
export async function startNginx(root, dir) {
  const port = await freePort();
  mkdirSync(join(dir, 'tmp'), { recursive: true });
  writeFileSync(
    join(dir, 'nginx.conf'),
    `worker_processes 1;
worker_rlimit_nofile ${FILE_LIMIT};
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections ${NGINX_CONNECTIONS}; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    open_file_cache max=${NGINX_OPEN_FILES} inactive=60s;
    open_file_cache_valid 60s;
    client_body_temp_path ${dir}/tmp;
    proxy_temp_path ${dir}/tmp;
    fastcgi_temp_path ${dir}/tmp;
    uwsgi_temp_path ${dir}/tmp;
    scgi_temp_path ${dir}/tmp;
    types { image/jpeg jpg; application/json json; }
    server { listen 127.0.0.1:${port}; root ${root}; }
}
`,
  );
  const proc = spawn('/usr/sbin/nginx', ['-c', join(dir, 'nginx.conf'), '-p', dir, '-g', 'daemon off;'], {
    stdio: 'ignore',
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    if (await fetch(url).then(() => true, () => false)) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    pid: proc.pid,
    stop: () =>
      new Promise((resolve) => {
        proc.once('exit', resolve);
        proc.kill('SIGTERM');
      }),
  };
}

export const WRK = {
  threads: Number(process.env.WRK_THREADS ?? 1),
  connections: Number(process.env.WRK_CONNECTIONS ?? 32),
  seconds: Number(process.env.WRK_SECONDS ?? 5),
  rounds: Number(process.env.BENCH_ROUNDS ?? 3),
};

// One wrk run: { rps, requests }; fails if anything but 2xx or 3xx came back.
export function wrkRun(url, { script, env, connections = WRK.connections, seconds = WRK.seconds } = {}) {
  const args = [`-t${WRK.threads}`, `-c${connections}`, `-d${seconds}s`];
  if (script) args.push('-s', script);
  const out = execFileSync('wrk', [...args, url], { encoding: 'utf8', env: { ...process.env, ...env } });
  if (/Non-2xx or 3xx responses/.test(out)) throw new Error(`${url} answered errors under load:\n${out}`);
  return { rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)[1]), requests: Number(/(\d+) requests in/.exec(out)[1]) };
}

// Requests per second of one wrk run.
export const wrk = (url, options) => wrkRun(url, options).rps;

// CPU time (user + system, every thread) a process and its children have used so far, in microseconds:
// nginx serves from a worker process, the relay from threads of one process.
const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));
export function cpuMicros(pid) {
  const own = (p) => {
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis do not.
    const f = readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1].split(' ');
    return Number(f[11]) + Number(f[12]); // utime and stime, fields 14 and 15
  };
  const children = (p) =>
    readdirSync(`/proc/${p}/task`).flatMap((t) =>
      readFileSync(`/proc/${p}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number),
    );
  const all = [pid, ...children(pid)];
  return (all.reduce((sum, p) => sum + own(p), 0) * 1e6) / CLOCK_TICKS;
}

export function median(values) {
  const s = [...values].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

// Medians of alternating wrk rounds against each of `urls`, so that drift hits all alike.
export function wrkRounds(targets) {
  const results = targets.map(() => []);
  for (let r = 0; r < WRK.rounds; r++) targets.forEach((t, i) => results[i].push(wrk(t.url, t)));
  return results.map(median);
}

export const fmt = (n) => Math.round(n).toLocaleString('en-US');
