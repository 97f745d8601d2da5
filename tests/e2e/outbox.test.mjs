// outbox.test.mjs -- profiles found where their authors write (NIP-65, the outbox model) and where hints point:
// a kind 0 only on its write relay, named by a kind 10002 on the upstream relay; only on an nprofile's relay; only
// on a relay a NIP-05 document names. Discovered relays are shared (200 lookups, one connection), closed when
// idle, skipped after a failure, and guarded like picture downloads. Every relay is an instance of the binary or
// a small recording server, on loopback.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { createServer } from 'node:https';
import { after, before, test } from 'node:test';

import { nip19 } from 'nostr-tools';
import { WebSocketServer } from 'ws';

import { newUser, now, publishRaw, rawClient, wsUrl } from './lib/nostr.mjs';
import { freePort, startRelay, tempDir } from './lib/relay.mjs';
import { makeCertificates } from './lib/tls.mjs';

const TIMEOUT_MS = 2000;
let upstream, writer, hinted, main, certDir, certs, names;
const clients = new Map();
const nip05 = new Map(); // name -> { pubkey, relays }

async function publish(relay, event) {
  if (!clients.has(relay)) clients.set(relay, await rawClient(relay.url));
  const ok = await publishRaw(clients.get(relay), event);
  assert.equal(ok[2], true, `${relay.url} refused the event: ${ok[3]}`);
}

const profile = (user, name) => user.sign({ kind: 0, created_at: now(), content: JSON.stringify({ name }) });
const relayList = (user, ...urls) => user.sign({ kind: 10002, created_at: now(), tags: urls.map((u) => ['r', u]) });

function nostrJson(req, res) {
  const name = new URL(req.url, 'https://x').searchParams.get('name') ?? '';
  const entry = nip05.get(name);
  if (entry === undefined) return res.writeHead(404).end();
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ names: { [name]: entry.pubkey }, relays: { [entry.pubkey]: entry.relays } }));
}

function mainConfig(extra = {}) {
  return {
    upstream_relays: [wsUrl(upstream.url)],
    upstream_timeout_ms: TIMEOUT_MS,
    allow_private_sources: true,
    precache_on_metadata: false,
    upstream_ca_file: certs.ca,
    discovery_idle_seconds: 1,
    ...extra,
  };
}

before(async () => {
  certDir = await tempDir();
  certs = makeCertificates(certDir);
  names = createServer({ cert: readFileSync(certs.cert), key: readFileSync(certs.key) }, nostrJson);
  await new Promise((r) => names.listen(0, '127.0.0.1', r));
  [upstream, writer, hinted] = await Promise.all([startRelay(), startRelay(), startRelay()]);
  main = await startRelay({ config: mainConfig() });
  await main.waitUpstreamConnected();
});

after(async () => {
  for (const c of clients.values()) c.close();
  await Promise.all([main, upstream, writer, hinted].map((r) => r.cleanup()));
  await new Promise((r) => names.close(r));
  await rm(certDir, { recursive: true, force: true });
});

const getProfile = (relay, id) => fetch(`${relay.url}/profile/${id}`);

test("a kind 0 only on the author's write relay is found through its kind 10002 on the upstream relay", async () => {
  const u = newUser();
  await publish(upstream, relayList(u, wsUrl(writer.url)));
  await publish(writer, profile(u, 'writes elsewhere'));
  const before = (await main.stats()).lookups.by_tier.outbox;

  const res = await getProfile(main, u.pubkey);
  assert.equal(res.status, 200);
  assert.equal((await res.json()).name, 'writes elsewhere');
  const stats = await main.stats();
  assert.equal(stats.lookups.by_tier.outbox, before + 1);
  // Stored here from then on: the relay serves it to its own clients.
  const c = await rawClient(main.url);
  try {
    const events = [];
    c.send(['REQ', 'k0', { kinds: [0], authors: [u.pubkey] }]);
    await c.next((m) => m[0] === 'EOSE' && m[1] === 'k0');
    for (const m of c.messages) if (m[0] === 'EVENT' && m[1] === 'k0') events.push(m[2]);
    assert.equal(events.length, 1);
    assert.equal(JSON.parse(events[0].content).name, 'writes elsewhere');
  } finally {
    c.close();
  }
});

test("a kind 0 only on an nprofile's relay is found there", async () => {
  const u = newUser();
  await publish(hinted, profile(u, 'hinted'));
  const plain = await getProfile(main, u.pubkey);
  assert.equal(plain.status, 404, 'without the hint, nothing has it');
  const before = (await main.stats()).lookups.by_tier.hint;

  const res = await getProfile(main, nip19.nprofileEncode({ pubkey: u.pubkey, relays: [wsUrl(hinted.url)] }));
  assert.equal(res.status, 200);
  assert.equal((await res.json()).name, 'hinted');
  assert.equal((await main.stats()).lookups.by_tier.hint, before + 1);
});

test('a kind 0 only on a relay the NIP-05 document names is found there', async () => {
  const u = newUser();
  nip05.set('carol', { pubkey: u.pubkey, relays: [wsUrl(hinted.url)] });
  await publish(hinted, profile(u, 'carol'));

  const res = await getProfile(main, `carol@127.0.0.1:${names.address().port}`);
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.pubkey, u.pubkey);
  assert.equal(body.name, 'carol');
});

test('a write relay that is down: the answer comes within the timeout, and the next lookup skips it', async () => {
  const dead = `ws://127.0.0.1:${await freePort()}`;
  const [u, v] = [newUser(), newUser()];
  await publish(upstream, relayList(u, dead));
  await publish(upstream, relayList(v, dead));
  const s0 = (await main.stats()).discovery;

  const started = Date.now();
  assert.equal((await getProfile(main, u.pubkey)).status, 404);
  assert.ok(Date.now() - started < TIMEOUT_MS + 1000, `answered after ${Date.now() - started} ms`);
  const s1 = (await main.stats()).discovery;
  assert.equal(s1.connections_opened, s0.connections_opened + 1);
  assert.ok(s1.relays_backing_off >= 1);

  assert.equal((await getProfile(main, v.pubkey)).status, 404);
  const s2 = (await main.stats()).discovery;
  assert.equal(s2.connections_opened, s1.connections_opened, 'the dead relay was not tried again');
  assert.equal(s2.skipped.backoff, s1.skipped.backoff + 1);
  const text = await (await fetch(`${main.url}/metrics`)).text();
  assert.match(text, /pfpcache_discovery_relays_skipped_total\{reason="backoff"\} [1-9]/);
});

test('200 lookups of pubkeys sharing a write relay use one connection to it, which closes when idle', async () => {
  const shared = await startRelay();
  try {
    const users = Array.from({ length: 200 }, () => newUser());
    for (const u of users) {
      await publish(upstream, relayList(u, wsUrl(shared.url)));
      await publish(shared, profile(u, `user ${u.pubkey.slice(0, 8)}`));
    }
    const conns = await shared.metric('pfpcache_relay_connections_total');
    const open = await shared.metric('pfpcache_relay_connections'); // this test's own publisher
    const reqs = await shared.metric('pfpcache_relay_subscriptions_total');

    const answers = await Promise.all(users.map((u) => getProfile(main, u.pubkey).then((r) => r.json())));
    answers.forEach((body, i) => assert.equal(body.name, `user ${users[i].pubkey.slice(0, 8)}`));
    assert.equal((await shared.metric('pfpcache_relay_connections_total')) - conns, 1);
    const asked = (await shared.metric('pfpcache_relay_subscriptions_total')) - reqs;
    assert.ok(asked >= 1 && asked < 200, `${asked} REQs for 200 authors`);

    await main.waitFor(async () => (await main.stats()).discovery.connections === 0, 'the idle connection closed');
    await shared.waitFor(async () => (await shared.metric('pfpcache_relay_connections')) === open, 'the relay saw it close');
  } finally {
    await shared.cleanup();
  }
});

test('a write relay on a private address is not connected to while the guard is on', async () => {
  let connections = 0;
  const recorder = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((r) => recorder.once('listening', r));
  recorder.on('connection', () => connections++);
  const guarded = await startRelay({ config: mainConfig({ allow_private_sources: false }) });
  try {
    await guarded.waitUpstreamConnected();
    const u = newUser();
    await publish(upstream, relayList(u, `ws://127.0.0.1:${recorder.address().port}`));
    assert.equal((await getProfile(guarded, u.pubkey)).status, 404);
    await guarded.waitFor(async () => (await guarded.stats()).discovery.refused === 1, 'the address refused');
    assert.equal(connections, 0);
  } finally {
    await guarded.cleanup();
    recorder.close();
  }
});

test("/cache-follows of a pubkey whose kind 3 is only on its write relay starts a job for its follows", async () => {
  const u = newUser();
  const follows = [newUser(), newUser(), newUser()];
  await publish(upstream, relayList(u, wsUrl(writer.url)));
  await publish(writer, u.sign({ kind: 3, created_at: now(), tags: follows.map((f) => ['p', f.pubkey]) }));

  const res = await fetch(`${main.url}/cache-follows/${u.pubkey}`);
  assert.equal(res.status, 202);
  const body = await res.json();
  assert.equal(body.count, 3);
  assert.match(body.job_id, /^[0-9a-f]{16}$/);
});

test('what a hinted relay sends is verified: a forged profile is not taken', async () => {
  const u = newUser();
  let asked = 0;
  const forger = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((r) => forger.once('listening', r));
  forger.on('connection', (sock) =>
    sock.on('message', (data) => {
      const [verb, sub] = JSON.parse(String(data));
      if (verb !== 'REQ') return;
      asked++;
      const forged = { ...profile(u, 'forged'), content: JSON.stringify({ name: 'altered' }) };
      sock.send(JSON.stringify(['EVENT', sub, forged]));
      sock.send(JSON.stringify(['EOSE', sub]));
    }),
  );
  try {
    const id = nip19.nprofileEncode({ pubkey: u.pubkey, relays: [`ws://127.0.0.1:${forger.address().port}`] });
    assert.equal((await getProfile(main, id)).status, 404);
    assert.equal(asked, 1, 'the hinted relay was asked');
    assert.equal((await getProfile(main, u.pubkey)).status, 404, 'nothing was stored');
  } finally {
    forger.close();
  }
});

test('relay hints in a contact list lead to the follows\' profiles', async () => {
  const u = newUser();
  const f = newUser();
  await publish(hinted, profile(f, 'followed'));
  await publish(upstream, u.sign({ kind: 3, created_at: now(), tags: [['p', f.pubkey, wsUrl(hinted.url)]] }));

  const res = await fetch(`${main.url}/cache-follows/${u.pubkey}`);
  assert.equal(res.status, 202);
  const found = await getProfile(main, f.pubkey);
  assert.equal(found.status, 200);
  assert.equal((await found.json()).name, 'followed');
});

test("POST /profiles takes an nprofile's relays as hints too", async () => {
  const u = newUser();
  await publish(hinted, profile(u, 'batched'));
  const id = nip19.nprofileEncode({ pubkey: u.pubkey, relays: [wsUrl(hinted.url)] });
  const res = await fetch(`${main.url}/profiles`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ pubkeys: [id, newUser().pubkey] }),
  });
  assert.equal(res.status, 200);
  const [found, missing] = await res.json();
  assert.equal(found.name, 'batched');
  assert.equal(missing.found, false);
});
