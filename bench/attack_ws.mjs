// attack_ws.mjs -- what hostile WebSocket peers cost the relay, in resident memory (VmRSS and VmHWM from
// /proc/PID/status) and in outcome. The reference of each figure is the relay's own RSS before the attack,
// measured in the same run; with PFP_BASE_BIN set, each attack runs on that binary first and then on the
// tree's (PFP_BIN), back to back. `node attack_ws.mjs NAME` runs one attack.
//   pings:    clients that stop reading and send 50 MB of 125-byte pings each (1, then 4 connections)
//   fan-out:  50 connections x 200 subscriptions that stop reading, then 2,000 events published
//   upstream: an upstream relay that accepts the WebSocket and never reads, while clients look up
//             200,000 unknown authors through it (max_client_queue_bytes at 1 MiB)
//   log:      log lines about slow consumers, for 5 clients cut off during a fan-out
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

import WebSocket from 'ws';

import { parseMetrics, startRelay } from '../tests/e2e/lib/relay.mjs';
import { freePort, here, openSocket, publishAll, signedProfiles } from './lib.mjs';

const MB = 1024 * 1024;
const PING_BYTES = Number(process.env.PING_MB ?? 50) * 1e6;

function status(pid) {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? 0);
  return { rss: kb('VmRSS') * 1024, hwm: kb('VmHWM') * 1024 };
}

const mib = (n) => `${(n / MB).toFixed(1)} MiB`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(probe, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await probe()) return true;
    await sleep(50);
  }
  return false;
}

// The close code the relay sends a connection, once the client reads again; null when it stays open.
function closeCode(ws, timeoutMs) {
  return new Promise((resolve) => {
    if (ws.readyState === WebSocket.CLOSED) return resolve('closed before');
    const timer = setTimeout(() => resolve(null), timeoutMs);
    ws.once('close', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
    ws._socket.resume();
  });
}

// One client: stops reading, then sends `bytes` of pings, in bursts that wait for the socket to drain,
// until they are sent or `stop()` says the relay gave up on it.
async function pingFlood(ws, bytes, stop) {
  ws._socket.pause();
  const payload = randomBytes(125);
  const perBurst = 8192;
  let sent = 0;
  while (sent < bytes && !(await stop())) {
    for (let i = 0; i < perBurst; i++) ws.ping(payload);
    sent += perBurst * 131;
    if (ws._socket.writableNeedDrain) {
      const drained = await new Promise((resolve) => {
        const timer = setTimeout(() => resolve(false), 3000);
        ws._socket.once('drain', () => {
          clearTimeout(timer);
          resolve(true);
        });
      });
      if (!drained) break; // the relay stopped reading us
    }
  }
  return sent;
}

async function pings(connections) {
  const relay = await startRelay();
  try {
    const pid = relay.proc.pid;
    const before = status(pid).rss;
    const sockets = await Promise.all(Array.from({ length: connections }, () => openSocket(relay.url)));
    const closedByRelay = async () => (await relay.metric('pfpcache_relay_slow_clients_closed_total')) >= connections;
    const sent = await Promise.all(sockets.map((ws) => pingFlood(ws, PING_BYTES, closedByRelay)));
    await sleep(500);
    const during = status(pid);
    const codes = await Promise.all(sockets.map((ws) => closeCode(ws, 8000)));
    for (const ws of sockets) ws.terminate();
    await until(async () => (await relay.stats()).relay.connections === 0, 10000);
    await sleep(1000);
    const after = status(pid).rss;
    console.log(`pings: ${connections} connection(s) that stop reading, up to ${PING_BYTES / 1e6} MB of 125-byte pings each`);
    console.log(`  sent before the relay stopped them  ${sent.map((s) => `${(s / 1e6).toFixed(1)} MB`).join(', ')}`);
    console.log(`  close codes seen                    ${codes.map((c) => c ?? 'still open').join(', ')}`);
    console.log(`  relay RSS before / peak / after     ${mib(before)} / ${mib(during.hwm)} / ${mib(after)}`);
    console.log(`  peak growth                         ${mib(during.hwm - before)}`);
  } finally {
    await relay.cleanup();
  }
}

// Opens `n` subscribers with `subs` subscriptions each for every kind 0, which then stop reading.
async function subscribers(url, n, subs) {
  const sockets = await Promise.all(Array.from({ length: n }, () => openSocket(url)));
  await Promise.all(
    sockets.map(
      (ws) =>
        new Promise((resolve) => {
          let eose = 0;
          ws.on('message', (data) => {
            if (JSON.parse(data)[0] === 'EOSE' && ++eose === subs) resolve();
          });
          for (let i = 0; i < subs; i++) ws.send(JSON.stringify(['REQ', `s${i}`, { kinds: [0], limit: 0 }]));
        }),
    ),
  );
  for (const ws of sockets) {
    ws.removeAllListeners('message');
    ws._socket.pause();
  }
  return sockets;
}

async function fanout() {
  const { lines } = await signedProfiles(2000);
  // Warnings only: the base binary logs a line per message for every client past its limit. The relay then
  // does not log where it listens, so it is given its port.
  const port = await freePort();
  const relay = await startRelay({
    config: { precache_on_metadata: false, log_level: 'warn', listen_addr: `127.0.0.1:${port}` },
    readyPattern: null,
  });
  relay.url = `http://127.0.0.1:${port}`;
  await until(() => fetch(`${relay.url}/health`).then((r) => r.ok, () => false), 10000);
  try {
    const pid = relay.proc.pid;
    const before = status(pid).rss;
    const subs = await subscribers(relay.url, 50, 200);
    const publisher = await openSocket(relay.url);
    const t0 = performance.now();
    await publishAll(publisher, lines);
    const seconds = (performance.now() - t0) / 1000;
    await sleep(500);
    const peak = status(pid).hwm;
    const metrics = parseMetrics(await (await fetch(`${relay.url}/metrics`)).text());
    const closed = metrics.get('pfpcache_relay_slow_clients_closed_total');
    for (const ws of subs) ws.terminate();
    publisher.close();
    const open = async () => (await (await fetch(`${relay.url}/stats`)).json()).relay.connections;
    await until(async () => (await open()) === 0, 20000);
    await sleep(2000);
    const after = status(pid).rss;
    console.log('fan-out: 50 connections x 200 subscriptions to every kind 0, not reading; 2,000 events published');
    console.log(`  published in                        ${seconds.toFixed(1)} s; subscribers cut off: ${closed}`);
    console.log(`  relay RSS before / peak / after     ${mib(before)} / ${mib(peak)} / ${mib(after)}`);
    console.log(`  peak growth, kept after they left   ${mib(peak - before)}, ${mib(after - before)}`);
    const queuePeak = metrics.get('pfpcache_relay_queue_peak_bytes');
    if (queuePeak) console.log(`  queued for clients at most          ${mib(queuePeak)} (/metrics)`);
  } finally {
    await relay.cleanup();
  }
}

// A WebSocket server that answers the upgrade and then never reads again.
async function stalledRelay() {
  const server = createServer((sock) => {
    let head = '';
    sock.on('data', function onData(chunk) {
      head += chunk.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end === -1) return;
      sock.off('data', onData);
      sock.pause();
      const key = /sec-websocket-key:\s*(\S+)/i.exec(head)[1];
      const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
      sock.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    });
    sock.on('error', () => {});
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return server;
}

async function upstream() {
  const stalled = await stalledRelay();
  const url = `ws://127.0.0.1:${stalled.address().port}`;
  const relay = await startRelay({
    config: {
      upstream_relays: [url],
      upstream_timeout_ms: 30000,
      max_concurrent: 1000,
      max_message_length: 400000,
      max_client_queue_bytes: 1048576,
    },
  });
  try {
    await relay.waitUpstreamConnected();
    const pid = relay.proc.pid;
    const before = status(pid).rss;
    // 20 clients x 10,000 authors: 400 batches of 500 authors, each a REQ of about 33 KB.
    const clients = await Promise.all(Array.from({ length: 20 }, () => openSocket(relay.url)));
    for (const ws of clients) {
      for (let r = 0; r < 2; r++) {
        const authors = Array.from({ length: 5000 }, () => randomBytes(32).toString('hex'));
        ws.send(JSON.stringify(['REQ', `r${r}`, { authors, kinds: [0] }]));
      }
    }
    const cut = await until(async () => {
      const r = (await relay.stats()).upstream_relays[0];
      return r.state !== 'connected';
    }, 10000);
    const peak = status(pid).hwm;
    const queuePeak = await relay.metric('pfpcache_upstream_relay_queue_peak_bytes');
    console.log('upstream: a relay that accepts the WebSocket and never reads; 200,000 unknown authors looked up (max_client_queue_bytes 1 MiB)');
    console.log(`  connection to it cut by the relay   ${cut ? 'yes' : 'no, within 10 s'}`);
    console.log(`  its send queue at most (/metrics)   ${queuePeak ? mib(queuePeak) : '(not reported)'}`);
    console.log(`  relay RSS before / peak             ${mib(before)} / ${mib(peak)}; growth ${mib(peak - before)}`);
    for (const ws of clients) ws.terminate();
  } finally {
    await relay.cleanup();
    stalled.close();
  }
}

async function slowLog() {
  const relay = await startRelay({ config: { max_client_queue_bytes: 1048576, precache_on_metadata: false } });
  try {
    const { lines } = await signedProfiles(2000);
    const subs = await subscribers(relay.url, 5, 50);
    const publisher = await openSocket(relay.url);
    await publishAll(publisher, lines.slice(0, 1000));
    for (const ws of subs) ws.terminate();
    publisher.close();
    await until(async () => (await relay.stats()).relay.connections === 0, 10000);
    const logged = (relay.stderr.match(/client that (is not|does not) read/g) ?? []).length;
    console.log('log: 5 clients with 50 subscriptions each that stop reading, 1,000 events published');
    console.log(`  log lines about slow consumers      ${logged}`);
  } finally {
    await relay.cleanup();
  }
}

const only = process.argv[2];
if (process.env.PFP_BASE_BIN && !process.env.ATTACK_ONE_BINARY) {
  const { BIN } = await import('../tests/e2e/lib/relay.mjs');
  const { execFileSync } = await import('node:child_process');
  for (const name of only ? [only] : ['pings', 'pings4', 'fanout', 'upstream', 'log']) {
    for (const [label, bin] of [['before', process.env.PFP_BASE_BIN], ['after', BIN]]) {
      console.log(`-- ${label}: ${bin}`);
      const env = { ...process.env, PFP_BIN: bin, ATTACK_ONE_BINARY: '1' };
      process.stdout.write(execFileSync(process.execPath, [here('attack_ws.mjs'), name], { env, encoding: 'utf8' }));
    }
  }
  process.exit(0);
}
for (const [name, run] of [
  ['pings', () => pings(1)],
  ['pings4', () => pings(4)],
  ['fanout', fanout],
  ['upstream', upstream],
  ['log', slowLog],
]) {
  if (!only || only === name) await run();
}
