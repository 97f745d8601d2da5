// hostile_clients.test.mjs -- what one anonymous client, or a crowd of them, can make the relay hold or do:
// pings it never reads the answers of, subscriptions it stops reading, more connections than its share,
// more connections than the relay has file descriptors for.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { newUser, publishRaw, query, rawClient } from './lib/nostr.mjs';
import { startRelay, until } from './lib/relay.mjs';

const MIB = 1024 * 1024;

// Opens `n` clients with one subscription to every contact list each, which then stop reading.
async function stalledSubscribers(relay, n) {
  const clients = [];
  for (let i = 0; i < n; i++) {
    const c = await rawClient(relay.url);
    await query(c, 'all', { kinds: [3], limit: 0 });
    c.ws._socket.pause();
    clients.push(c);
  }
  return clients;
}

// A contact list of about 60 KB.
const bigList = () => newUser().sign({ kind: 3, tags: Array.from({ length: 900 }, () => ['p', randomBytes(32).toString('hex')]) });

test('a client that stops reading and sends pings is disconnected with 1008, its pongs coalesced, not queued', async () => {
  const relay = await startRelay({ config: { max_client_queue_bytes: MIB } });
  const c = await rawClient(relay.url);
  try {
    c.ws._socket.pause();
    const payload = randomBytes(125);
    const closed = () => relay.metric('pfpcache_relay_slow_clients_closed_total');
    // 50 MB at most, in bursts that wait for the socket to drain, until the relay gives up on the client.
    let sent = 0;
    while (sent < 50e6 && (await closed()) === 0) {
      for (let i = 0; i < 4096; i++) c.ws.ping(payload);
      sent += 4096 * 131;
      if (c.ws._socket.writableNeedDrain) {
        await new Promise((resolve) => {
          const timer = setTimeout(resolve, 2000);
          c.ws._socket.once('drain', () => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
    }
    assert.equal(await closed(), 1, `the client was cut off (after ${(sent / 1e6).toFixed(1)} MB of pings)`);
    const m = await relay.metrics();
    assert.ok(m.get('pfpcache_relay_pings_coalesced_total') > 0, 'pings were coalesced');
    assert.ok(m.get('pfpcache_relay_queue_peak_bytes') <= MIB, `at most max_client_queue_bytes was held (${m.get('pfpcache_relay_queue_peak_bytes')})`);
    c.ws._socket.resume();
    assert.equal((await c.waitClose(10000)).code, 1008);
    await relay.waitFor(async () => (await relay.metric('pfpcache_relay_queue_bytes')) === 0, 'its memory given back');
  } finally {
    c.close();
    await relay.cleanup();
  }
});

test('a slow consumer is logged and counted once, however many messages come after it is cut off', async () => {
  const relay = await startRelay({ config: { max_client_queue_bytes: MIB, accepted_kinds: [3] } });
  const publisher = await rawClient(relay.url);
  const slow = await stalledSubscribers(relay, 5);
  try {
    const closed = () => relay.metric('pfpcache_relay_slow_clients_closed_total');
    for (let i = 0; i < 200 && (await closed()) < 5; i++) assert.equal((await publishRaw(publisher, bigList()))[2], true);
    assert.equal(await closed(), 5);
    // Messages for the clients still closing: none of them is logged or counted again.
    for (let i = 0; i < 20; i++) assert.equal((await publishRaw(publisher, bigList()))[2], true);
    assert.equal(await closed(), 5);
    assert.equal((await relay.stats()).relay.slow_clients_closed, 5);
    assert.equal((relay.stderr.match(/closing a client that does not read/g) ?? []).length, 5);
  } finally {
    for (const c of slow) c.close();
    publisher.close();
    await relay.cleanup();
  }
});

test('past max_total_queue_bytes the clients holding most are cut off, and one that reads keeps its connection', async () => {
  const relay = await startRelay({
    config: { max_total_queue_bytes: 2 * MIB, max_client_queue_bytes: 64 * MIB, accepted_kinds: [3] },
  });
  const publisher = await rawClient(relay.url);
  const reader = await rawClient(relay.url);
  const slow = await stalledSubscribers(relay, 4);
  try {
    await query(reader, 'all', { kinds: [3], limit: 0 });
    const closed = () => relay.metric('pfpcache_relay_slow_clients_closed_total');
    // Each slow client would hold 64 MiB (max_client_queue_bytes) before it is cut off on its own: over 1,000
    // lists. What the kernel's socket buffers take comes on top, whichever limit cuts them off.
    let published = 0;
    while (published < 500 && (await closed()) < 4) {
      assert.equal((await publishRaw(publisher, bigList()))[2], true);
      published++;
    }
    assert.equal(await closed(), 4);
    assert.ok(published < 300, `cut off after ${published} lists, before their own limit`);
    const peak = await relay.metric('pfpcache_relay_queue_peak_bytes');
    assert.ok(peak > 0 && peak <= 4 * MIB, `held at most ${peak} bytes`);
    const last = bigList();
    assert.equal((await publishRaw(publisher, last))[2], true);
    await reader.next((m) => m[0] === 'EVENT' && m[2].id === last.id);
    assert.equal(reader.closed, null);
  } finally {
    for (const c of slow) c.close();
    reader.close();
    publisher.close();
    await relay.cleanup();
  }
});

test('max_connections_per_ip caps one address; 127.0.0.1 is not capped', async () => {
  const relay = await startRelay({ config: { max_connections_per_ip: 3 } });
  const from = (localAddress) => rawClient(relay.url, { localAddress });
  const open = [];
  try {
    // 127.0.0.2 is loopback too, but not exempt: it stands for any address on the network.
    for (let i = 0; i < 3; i++) open.push(await from('127.0.0.2'));
    await assert.rejects(from('127.0.0.2'));
    assert.equal(await relay.metric('pfpcache_http_connections_refused_total', { reason: 'max_connections_per_ip' }), 1);
    for (let i = 0; i < 5; i++) open.push(await from('127.0.0.1'));
    assert.deepEqual(await query(open[3], 'local', { kinds: [0], limit: 0 }), []);
    // A connection that closes gives its place back.
    const connections = await relay.metric('pfpcache_http_connections');
    open.shift().close();
    await relay.waitFor(async () => (await relay.metric('pfpcache_http_connections')) === connections - 1, 'the connection counted off');
    open.push(await from('127.0.0.2'));
    assert.deepEqual(await query(open.at(-1), 'again', { kinds: [0], limit: 0 }), []);
  } finally {
    for (const c of open) c.close();
    await relay.cleanup();
  }
});

test('the soft file descriptor limit is raised to the hard one at start-up', async () => {
  const relay = await startRelay({ launcher: ['prlimit', '--nofile=256:4096', '--'] });
  try {
    await relay.stats(); // the loop runs (SIGTERM is handled from then on)
    const limits = readFileSync(`/proc/${relay.proc.pid}/limits`, 'utf8');
    assert.match(limits, /^Max open files\s+4096\s+4096\s/m);
  } finally {
    await relay.cleanup();
  }
});

test('out of file descriptors, new connections are closed at once and said so in the log, and the relay recovers', async () => {
  const relay = await startRelay({ launcher: ['prlimit', '--nofile=64:64', '--'] });
  const clients = [];
  try {
    const refused = () => relay.metric('pfpcache_http_connections_refused_total', { reason: 'no_file_descriptors' });
    // Connections until the relay has no descriptor left for the next ones.
    for (let i = 0; i < 100 && (await refused()) === 0; i++) {
      clients.push(await rawClient(relay.url).catch(() => null));
    }
    assert.ok((await refused()) > 0, 'connections were refused for lack of descriptors');
    const warnings = relay.stderr.match(/accept: Too many open files/g) ?? [];
    assert.ok(warnings.length >= 1 && warnings.length <= 2, `${warnings.length} warnings`);
    for (const c of clients) c?.close();
    await relay.waitFor(async () => (await relay.stats()).relay.connections === 0, 'the clients gone');
    const c = await until(() => rawClient(relay.url).catch(() => null), Boolean, { what: 'a new connection' });
    assert.deepEqual(await query(c, 'after', { kinds: [0], limit: 0 }), []);
    c.close();
  } finally {
    for (const c of clients) c?.close();
    await relay.cleanup();
  }
});
