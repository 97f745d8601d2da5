// upstream.test.mjs -- lookups on upstream relays: two instances of the relay on
// loopback, one of them over TLS with a certificate from a CA made for the test,
// and a hostile relay that forges.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { after, before, test } from 'node:test';

import { getEventHash } from 'nostr-tools/pure';
import { WebSocketServer } from 'ws';

import { newUser, now, publishRaw, query, rawClient, wsUrl } from './lib/nostr.mjs';
import { runBinary, startRelay, tempDir, testConfig } from './lib/relay.mjs';
import { makeCertificates } from './lib/tls.mjs';

let certDir, certs, upA, upB, main;
const upBPort = () => Number(new URL(upB.url).port);

async function seed(relay, ...events) {
  const c = await rawClient(relay.url, { ca: readFileSync(certs.ca) });
  try {
    for (const ev of events) assert.equal((await publishRaw(c, ev))[2], true);
  } finally {
    c.close();
  }
}

// REQs an upstream instance has accepted; in these tests only the main relay sends them any.
const upstreamReqs = (relay) => relay.metric('pfpcache_relay_subscriptions_total');

function startMain(upstreams, config = {}) {
  return startRelay({
    config: { upstream_relays: upstreams, upstream_ca_file: certs.ca, upstream_timeout_ms: 2000, ...config },
  });
}

before(async () => {
  certDir = await tempDir();
  certs = makeCertificates(certDir);
  upA = await startRelay();
  upB = await startRelay({ config: { tls_cert_file: certs.cert, tls_key_file: certs.key } });
  main = await startMain([wsUrl(upA.url), `wss://localhost:${upBPort()}`]);
  await main.waitUpstreamConnected();
});

after(async () => {
  await main.cleanup();
  await upA.cleanup();
  await upB.cleanup();
  await rm(certDir, { recursive: true, force: true });
});

test('the newest version across relays wins, and is then stored locally', async () => {
  const u = newUser();
  const older = u.sign({ kind: 0, created_at: now() - 100, content: '{"name":"old"}' });
  const newer = u.sign({ kind: 0, created_at: now() - 10, content: '{"name":"new"}' });
  await seed(upA, older);
  await seed(upB, newer);

  const c = await rawClient(main.url);
  try {
    assert.deepEqual(await query(c, 'p', { authors: [u.pubkey], kinds: [0] }), [newer]);
    // From now on the local relay answers without asking upstream.
    const before = await upstreamReqs(upA);
    assert.deepEqual(await query(c, 'again', { authors: [u.pubkey], kinds: [0] }), [newer]);
    assert.equal(await upstreamReqs(upA), before);
  } finally {
    c.close();
  }
});

test('an event only the TLS relay has is found; one no relay has is not', async () => {
  const w = newUser();
  const list = w.sign({ kind: 10002, tags: [['r', 'wss://relay.example']] });
  await seed(upB, list);
  const c = await rawClient(main.url);
  try {
    assert.deepEqual(await query(c, 'w', { authors: [w.pubkey], kinds: [10002] }), [list]);
    assert.deepEqual(await query(c, 'nobody', { authors: [newUser().pubkey], kinds: [3] }), []);
  } finally {
    c.close();
  }
});

test('1,200 pubkeys asked at once make at most 3 REQs on each relay', async () => {
  const authors = Array.from({ length: 1200 }, () => randomBytes(32).toString('hex'));
  const known = newUser();
  const profile = known.sign({ kind: 0, content: '{"name":"one of many"}' });
  await seed(upA, profile);
  authors[600] = known.pubkey;
  const [a0, b0] = [await upstreamReqs(upA), await upstreamReqs(upB)];
  const c = await rawClient(main.url);
  try {
    assert.deepEqual(await query(c, 'many', { authors, kinds: [0] }), [profile]);
  } finally {
    c.close();
  }
  const [a, b] = [(await upstreamReqs(upA)) - a0, (await upstreamReqs(upB)) - b0];
  assert.ok(a >= 1 && a <= 3, `relay A received ${a} REQs`);
  assert.ok(b >= 1 && b <= 3, `relay B received ${b} REQs`);
});

test('200 concurrent lookups of one pubkey make one upstream query', async () => {
  const u = newUser();
  const contacts = u.sign({ kind: 3, tags: [['p', newUser().pubkey]] });
  await seed(upA, contacts);
  const [a0, b0] = [await upstreamReqs(upA), await upstreamReqs(upB)];
  const clients = await Promise.all([0, 1, 2, 3].map(() => rawClient(main.url)));
  try {
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) => query(clients[i % 4], `s${i}`, { authors: [u.pubkey], kinds: [3] })),
    );
    for (const r of results) assert.deepEqual(r, [contacts]);
  } finally {
    for (const c of clients) c.close();
  }
  assert.equal((await upstreamReqs(upA)) - a0, 1);
  assert.equal((await upstreamReqs(upB)) - b0, 1);
});

test('a relay that forges signatures or sends other authors is ignored', async () => {
  const honest = newUser();
  const real = honest.sign({ kind: 0, created_at: now() - 50, content: '{"name":"real"}' });
  await seed(upA, real);
  const stranger = newUser();

  // A relay that answers every REQ with a newer, forged version of each author's event,
  // a properly signed event by an author nobody asked for, and garbage: three unusable
  // messages for each REQ here, which asks for one author.
  const hostile = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  let hostileReqs = 0;
  hostile.on('connection', (ws) => {
    ws.on('message', (data) => {
      const [verb, sub, filter] = JSON.parse(data);
      if (verb !== 'REQ') return;
      hostileReqs++;
      for (const pubkey of filter.authors) {
        const forged = { kind: filter.kinds[0], created_at: now(), tags: [], content: '{"name":"forged"}', pubkey };
        forged.id = getEventHash(forged);
        forged.sig = randomBytes(64).toString('hex');
        ws.send(JSON.stringify(['EVENT', sub, forged]));
      }
      ws.send(JSON.stringify(['EVENT', sub, stranger.sign({ kind: filter.kinds[0], content: '{"name":"stranger"}' })]));
      ws.send('this is not JSON');
      ws.send(JSON.stringify(['EOSE', sub]));
    });
  });
  await new Promise((r) => hostile.once('listening', r));
  const hostileUrl = `ws://127.0.0.1:${hostile.address().port}`;
  const guarded = await startMain([hostileUrl, wsUrl(upA.url)]);
  try {
    await guarded.waitUpstreamConnected();
    const c = await rawClient(guarded.url);
    assert.deepEqual(await query(c, 'h', { authors: [honest.pubkey], kinds: [0] }), [real]);
    // Nothing the hostile relay sent was stored (a filter without kinds reads only what is here).
    assert.deepEqual(await query(c, 's', { authors: [stranger.pubkey] }), []);
    assert.deepEqual(await query(c, 'h2', { authors: [honest.pubkey] }), [real]);
    c.close();
    // Every unusable message was dropped and counted against the relay that sent it (the forgery once the
    // verify pool has checked its signature), and none against the honest relay.
    const dropped = (relay) => guarded.metric('pfpcache_upstream_relay_invalid_events_total', { relay });
    await guarded.waitFor(async () => hostileReqs > 0 && (await dropped(hostileUrl)) >= 3 * hostileReqs, 'the hostile messages dropped');
    assert.equal(await dropped(hostileUrl), 3 * hostileReqs);
    assert.equal(await dropped(wsUrl(upA.url)), 0);
  } finally {
    await guarded.cleanup();
    hostile.close();
  }
});

test('a relay that is down does not stall lookups, and reconnects on its own when it is back', async () => {
  const u = newUser();
  const onA = u.sign({ kind: 0, content: '{"name":"on A"}' });
  const v = newUser();
  const onB = v.sign({ kind: 0, content: '{"name":"on B"}' });
  await seed(upA, onA);
  await seed(upB, onB);
  const port = upBPort();
  const relayB = `wss://localhost:${port}`;
  const reconnects = () => main.metric('pfpcache_upstream_relay_connects_total', { relay: relayB });
  const stateOfB = async () => (await main.stats()).upstream_relays.find((r) => r.url === relayB).state;
  const connectedBefore = await reconnects();

  assert.equal((await upB.stop()).code, 0);
  await main.waitFor(async () => (await stateOfB()) === 'disconnected', 'the relay that went down seen as disconnected');
  const c = await rawClient(main.url);
  try {
    const t0 = Date.now();
    assert.deepEqual(await query(c, 'a', { authors: [u.pubkey], kinds: [0] }), [onA]);
    assert.ok(Date.now() - t0 < 2000, 'answered before the upstream timeout');

    upB = await startRelay({
      dir: upB.dir,
      config: { listen_addr: `127.0.0.1:${port}`, tls_cert_file: certs.cert, tls_key_file: certs.key },
    });
    await main.waitFor(async () => (await reconnects()) > connectedBefore, 'the relay reconnected', 20000);
    assert.equal(await reconnects(), connectedBefore + 1, 'the relay reconnected once');
    assert.deepEqual(await query(c, 'b', { authors: [v.pubkey], kinds: [0] }), [onB]);
  } finally {
    c.close();
  }
});

test('an unreachable relay among the upstreams does not stall lookups', async () => {
  const u = newUser();
  const ev = u.sign({ kind: 0, content: '{"name":"reachable"}' });
  await seed(upA, ev);
  const lonely = await startMain([wsUrl(upA.url), 'ws://127.0.0.1:9']);
  try {
    await lonely.waitFor(async () => {
      const r = (await lonely.stats()).upstream_relays.find((x) => x.url === 'ws://127.0.0.1:9');
      return r.state === 'disconnected' && /cannot connect/.test(r.last_error);
    }, 'the unreachable relay refused');
    const c = await rawClient(lonely.url);
    const t0 = Date.now();
    assert.deepEqual(await query(c, 'x', { authors: [u.pubkey], kinds: [0] }), [ev]);
    assert.ok(Date.now() - t0 < 2000, 'answered before the upstream timeout');
    c.close();
  } finally {
    await lonely.cleanup();
  }
});

test('a relay that never answers makes an unknown author wait for the timeout once, not on every ask', async () => {
  // It takes the subscription and says nothing, not even EOSE.
  const silent = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((r) => silent.once('listening', r));
  const silentUrl = `ws://127.0.0.1:${silent.address().port}`;
  const stalled = await startMain([wsUrl(upA.url), silentUrl], { upstream_timeout_ms: 500 });
  try {
    await stalled.waitUpstreamConnected();
    const c = await rawClient(stalled.url);
    const nobody = newUser().pubkey;
    assert.deepEqual(await query(c, 'first', { authors: [nobody], kinds: [0] }), []);
    assert.equal(await stalled.metric('pfpcache_upstream_lookup_timeouts_total'), 1, 'the first ask timed out');
    const queries = await stalled.metric('pfpcache_upstream_queries_total');
    assert.deepEqual(await query(c, 'again', { authors: [nobody], kinds: [0] }), []);
    assert.equal(await stalled.metric('pfpcache_upstream_queries_total'), queries, 'the second ask was answered from memory');
    assert.equal(await stalled.metric('pfpcache_upstream_lookup_timeouts_total'), 1);
    c.close();
  } finally {
    await stalled.cleanup();
    silent.close();
  }
});

test("an upstream relay's pings are answered with masked pongs carrying their payload", async () => {
  const pinger = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((r) => pinger.once('listening', r));
  const pingerUrl = `ws://127.0.0.1:${pinger.address().port}`;
  const connected = new Promise((resolve) => pinger.once('connection', resolve));
  const asking = await startMain([pingerUrl]);
  try {
    const ws = await connected;
    // ws checks that a client's frames are masked, and closes with 1002 otherwise.
    for (const payload of ['', 'one', 'x'.repeat(125)]) {
      const pong = new Promise((resolve) => ws.once('pong', (data) => resolve(String(data))));
      ws.ping(payload);
      assert.equal(await pong, payload);
    }
    assert.equal((await asking.stats()).upstream_relays[0].state, 'connected');
  } finally {
    await asking.cleanup();
    pinger.close();
  }
});

test('a relay that never reads does not grow what waits for it past max_client_queue_bytes', async () => {
  // It answers the upgrade, then reads nothing more: REQs pile up on this side.
  const deaf = createServer((sock) => {
    let head = '';
    sock.on('error', () => {});
    sock.on('data', function onData(chunk) {
      head += chunk.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      sock.off('data', onData);
      sock.pause();
      const key = /sec-websocket-key:\s*(\S+)/i.exec(head)[1];
      const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
      sock.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    });
  });
  await new Promise((r) => deaf.listen(0, '127.0.0.1', r));
  const deafUrl = `ws://127.0.0.1:${deaf.address().port}`;
  const cap = 1048576;
  const asking = await startMain([deafUrl], {
    upstream_timeout_ms: 30000,
    max_concurrent: 1000,
    max_message_length: 400000,
    max_client_queue_bytes: cap,
  });
  const clients = [];
  try {
    await asking.waitUpstreamConnected();
    // 200,000 unknown authors, 500 to a REQ of about 33 KB: more than the kernel's buffers and the cap hold.
    for (let i = 0; i < 20; i++) {
      const c = await rawClient(asking.url);
      clients.push(c);
      for (let r = 0; r < 2; r++) c.send(['REQ', `r${r}`, { authors: Array.from({ length: 5000 }, () => randomBytes(32).toString('hex')), kinds: [0] }]);
    }
    const relay = async () => (await asking.stats()).upstream_relays[0];
    await asking.waitFor(async () => /did not read/.test((await relay()).last_error), 'the deaf relay cut off', 20000);
    const peak = await asking.metric('pfpcache_upstream_relay_queue_peak_bytes', { relay: deafUrl });
    assert.ok(peak > 0 && peak <= cap + 64 * 1024, `at most the cap and one REQ waited (${peak} bytes)`);
  } finally {
    for (const c of clients) c.close();
    await asking.cleanup();
    deaf.close();
  }
});

test('a bad upstream_ca_file is a configuration error', async () => {
  const dir = await tempDir();
  try {
    const path = `${dir}/config.json`;
    await writeFile(path, JSON.stringify(testConfig(dir, { upstream_ca_file: `${dir}/missing.pem` })));
    const r = await runBinary(['--config', path]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /"upstream_ca_file" is ".*missing.pem"; allowed: a readable PEM file of certificates/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
