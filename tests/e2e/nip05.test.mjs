// nip05.test.mjs -- NIP-05 names in place of keys on /profile-pic, /profile-banner and /profile: resolved over
// HTTPS (a test CA), names compared without regard to case, "_" for a bare domain, remembered, and every way a
// resolution fails answered 404 with the reason: no such name, a redirect, an oversized or malformed document,
// an unreachable domain, an address the guard refuses, a certificate nobody vouches for. POST /batch-cache and
// GET /cache-follows take names too: resolved before the job, and a name that does not resolve refused by name.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { createServer } from 'node:https';
import { after, before, test } from 'node:test';

import { serveFixtures, stopFixtures } from './lib/images.mjs';
import { newUser, now, publishRaw, rawClient } from './lib/nostr.mjs';
import { freePort, startRelay, tempDir, until } from './lib/relay.mjs';
import { makeCertificates } from './lib/tls.mjs';

let fx, certDir, certs, server, domain, relay, client, alice, root;
const hits = new Map();
// Names a test adds to the domain's document: name -> pubkey.
const extraNames = {};

// The domain's nostr.json, by the name asked: each misbehaving name has a document of its own.
function nostrJson(req, res) {
  const url = new URL(req.url, 'https://x');
  const name = url.searchParams.get('name') ?? '';
  hits.set(name, (hits.get(name) ?? 0) + 1);
  if (url.pathname !== '/.well-known/nostr.json') return res.writeHead(404).end();
  const json = (body) => res.writeHead(200, { 'content-type': 'application/json' }).end(body);
  switch (name) {
    case 'redirect':
      return res.writeHead(302, { location: '/.well-known/nostr.json?name=alice' }).end();
    case 'big':
      return json(JSON.stringify({ names: { big: alice.pubkey }, pad: 'x'.repeat(100 << 10) }));
    case 'malformed':
      return json('{"names": {"malformed": "not a key"}}');
    case 'broken':
      return json('{"names": ');
    default:
      return json(
        JSON.stringify({
          names: { alice: alice.pubkey, _: root.pubkey, other: newUser().pubkey, ...extraNames },
          relays: { [alice.pubkey]: ['wss://relay.example.com'] },
        }),
      );
  }
}

before(async () => {
  fx = await serveFixtures();
  certDir = await tempDir();
  certs = makeCertificates(certDir);
  server = createServer({ cert: readFileSync(certs.cert), key: readFileSync(certs.key) }, nostrJson);
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  domain = `127.0.0.1:${server.address().port}`;
  alice = newUser();
  root = newUser();
  relay = await startRelay({
    config: { allowed_source_addresses: ['127.0.0.1'], precache_on_metadata: false, upstream_ca_file: certs.ca },
  });
  client = await rawClient(relay.url);
  for (const [u, picture, nip05] of [
    [alice, 'small.jpg', `Alice@${domain}`],
    [root, 'alpha.png', undefined],
  ]) {
    const content = JSON.stringify({ name: 'n', nip05, picture: `${fx.images.url}/f/${picture}`, banner: `${fx.images.url}/f/big.jpg` });
    assert.equal((await publishRaw(client, u.sign({ kind: 0, created_at: now(), content })))[2], true);
  }
});

after(async () => {
  client.close();
  await relay.cleanup();
  await new Promise((r) => server.close(r));
  await stopFixtures(fx);
  await rm(certDir, { recursive: true, force: true });
});

async function get(path, base = relay.url) {
  const res = await fetch(`${base}${path}`, { redirect: 'manual' });
  const body = Buffer.from(await res.arrayBuffer());
  return { res, body, json: () => JSON.parse(body) };
}

test('a NIP-05 name stands for its pubkey on /profile-pic, /profile-banner and /profile, in any case', async () => {
  const byKey = await get(`/profile-pic/${alice.pubkey}`);
  assert.equal(byKey.res.status, 200);
  const byName = await get(`/profile-pic/alice@${domain}`);
  assert.equal(byName.res.status, 200);
  assert.equal(byName.res.headers.get('etag'), byKey.res.headers.get('etag'), 'the same picture');
  const upper = await get(`/profile-pic/ALICE@${domain}?size=64&format=png`);
  assert.equal(upper.res.status, 200);
  assert.equal(upper.res.headers.get('content-type'), 'image/png');
  const banner = await get(`/profile-banner/alice@${domain}`);
  assert.equal(banner.res.status, 200);
  const profile = await get(`/profile/alice@${domain}`);
  assert.equal(profile.res.status, 200);
  assert.equal(profile.json().pubkey, alice.pubkey);
  // Fetched once: the name is remembered for nip05_cache_seconds.
  assert.equal(hits.get('alice'), 1);
});

test('a bare domain is its "_" name', async () => {
  const r = await get(`/profile/${domain}`);
  assert.equal(r.res.status, 200);
  assert.equal(r.json().pubkey, root.pubkey);
  assert.equal((await get(`/profile-pic/_@${domain}`)).res.status, 200);
});

test('every way a name fails to resolve is 404 JSON saying why, and remembered', async () => {
  const closed = await freePort();
  for (const [id, why] of [
    [`nobody@${domain}`, /no such name/],
    [`redirect@${domain}`, /domain unreachable: a redirect/],
    [`big@${domain}`, /malformed nostr\.json: .*64 KiB/],
    [`malformed@${domain}`, /malformed nostr\.json/],
    [`broken@${domain}`, /malformed nostr\.json/],
    [`alice@127.0.0.1:${closed}`, /domain unreachable/],
  ]) {
    const r = await get(`/profile-pic/${id}`);
    assert.equal(r.res.status, 404, id);
    assert.match(r.json().error, /^the NIP-05 name could not be resolved: /, id);
    assert.match(r.json().error, why, id);
    assert.equal((await get(`/profile/${id}`)).res.status, 404, id);
  }
  assert.equal(hits.get('nobody'), 1, 'the failure is remembered');
  assert.equal(hits.get('redirect'), 1, 'the redirect was not followed');
  const { nip05 } = await relay.stats();
  assert.ok(nip05.resolved >= 1 && nip05.failed >= 6 && nip05.cached >= 6 && nip05.remembered >= 8, JSON.stringify(nip05));
  const m = await relay.metrics();
  assert.equal(m.get('pfpcache_nip05_resolutions_total', { result: 'failed' }), nip05.failed);
  // Not a name either: still 400.
  const bad = await get('/profile-pic/not-a-name');
  assert.equal(bad.res.status, 400);
  assert.match(bad.json().error, /^not a public key or a NIP-05 name: /);
});

test('the profile API says whether the kind 0\'s nip05 names its pubkey, once the name is resolved', async () => {
  const impostor = newUser();
  const content = JSON.stringify({ name: 'impostor', nip05: `other@${domain}` });
  assert.equal((await publishRaw(client, impostor.sign({ kind: 0, created_at: now(), content })))[2], true);
  // Not known yet: null, and resolved in the background; then false, since the name is someone else's.
  assert.equal((await get(`/profile/${impostor.pubkey}`)).json().nip05_valid, null);
  await relay.waitFor(async () => (await get(`/profile/${impostor.pubkey}`)).json().nip05_valid === false, 'nip05_valid false');
  // Alice's own name, in another case, was resolved already: true at once.
  assert.equal((await get(`/profile/${alice.pubkey}`)).json().nip05_valid, true);
  // No nip05 at all: null.
  assert.equal((await get(`/profile/${root.pubkey}`)).json().nip05_valid, null);
});

test('the domain is guarded like a picture source, and its certificate must be one the relay trusts', async () => {
  const guarded = await startRelay({ config: { precache_on_metadata: false, upstream_ca_file: certs.ca } });
  const untrusting = await startRelay({ config: { allowed_source_addresses: ['127.0.0.1'], precache_on_metadata: false } });
  try {
    const before = hits.get('other') ?? 0;
    const refused = await get(`/profile/other@${domain}`, guarded.url);
    assert.equal(refused.res.status, 404);
    assert.match(refused.json().error, /refused address/);
    const tls = await get(`/profile/other@${domain}`, untrusting.url);
    assert.equal(tls.res.status, 404);
    assert.match(tls.json().error, /domain unreachable/);
    assert.equal(hits.get('other') ?? 0, before, 'no document was served to either');
  } finally {
    await guarded.cleanup();
    await untrusting.cleanup();
  }
});

async function post(path, body) {
  const res = await fetch(`${relay.url}${path}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: await res.json() };
}

// Polls GET /jobs/{id} until the job has ended.
async function finished(id) {
  const job = async () => (await get(`/jobs/${id}`)).json();
  return until(job, (j) => j.state === 'done' || j.state === 'failed', { what: `job ${id} finished`, timeoutMs: 30000 });
}

async function picStatus(pubkey) {
  const r = await get(`/profile-pic/${pubkey}`);
  return { status: r.res.status, cache: r.res.headers.get('x-cache') };
}

// A user with a picture of its own, in the domain's document as `name`; nothing asked for its picture yet.
async function namedUser(name) {
  const u = newUser();
  extraNames[name] = u.pubkey;
  const content = JSON.stringify({ name, picture: `${fx.images.url}/f/small.jpg?user=${name}` });
  assert.equal((await publishRaw(client, u.sign({ kind: 0, created_at: now(), content })))[2], true);
  return u;
}

test('POST /batch-cache takes NIP-05 names, resolved once each before the job, and caches their pictures', async () => {
  const carol = await namedUser('carol');
  const before = (await relay.stats()).nip05.resolved;
  // carol three times, in three spellings, and root as a bare domain: two pubkeys.
  const r = await post('/batch-cache', { pubkeys: [`carol@${domain}`, `CAROL@${domain}`, carol.pubkey, domain] });
  assert.equal(r.status, 202, JSON.stringify(r.json));
  assert.deepEqual([r.json.message, r.json.count], ['Started caching 2 profile pictures', 2]);
  assert.match(r.json.job_id, /^[0-9a-f]{16}$/);
  assert.equal(hits.get('carol'), 1, 'one request for the name, however spelt');
  assert.ok((await relay.stats()).nip05.resolved > before);
  const job = await finished(r.json.job_id);
  assert.deepEqual([job.type, job.state, job.total, job.cached + job.already_cached], ['batch', 'done', 2, 2]);
  assert.deepEqual(await picStatus(carol.pubkey), { status: 200, cache: 'HIT' });
});

test('POST /batch-cache with a name that does not resolve is 400 naming it and why, and starts nothing', async () => {
  const jobsBefore = (await get('/jobs?limit=1000')).json().jobs.length;
  const r = await post('/batch-cache', {
    pubkeys: [alice.pubkey, `nobody-batch@${domain}`, `alice@${domain}`, `broken@${domain}`],
  });
  assert.equal(r.status, 400);
  assert.match(
    r.json.error,
    new RegExp(`^2 NIP-05 names of "pubkeys" could not be resolved: nobody-batch@${domain} \\(index 1\\): no such name.*; broken@${domain} \\(index 3\\): malformed nostr\\.json`),
  );
  assert.deepEqual(
    r.json.unresolved.map((u) => [u.index, u.name]),
    [
      [1, `nobody-batch@${domain}`],
      [3, `broken@${domain}`],
    ],
  );
  assert.match(r.json.unresolved[0].error, /^no such name/);
  assert.match(r.json.unresolved[1].error, /^malformed nostr\.json/);
  // Words that are neither keys nor names are still refused by index, before any name is resolved.
  const bad = await post('/batch-cache', { pubkeys: [`carol@${domain}`, 'xyz'] });
  assert.equal(bad.status, 400);
  assert.deepEqual(bad.json.invalid, [1]);
  assert.match(bad.json.error, /is not a public key \(hex, npub or nprofile\) or a NIP-05 name: index 1$/);
  // More distinct names than a request may resolve: 413, and no document asked for.
  const many = Array.from({ length: 101 }, (_, i) => `many${i}@${domain}`);
  const tooMany = await post('/batch-cache', { pubkeys: many });
  assert.equal(tooMany.status, 413);
  assert.match(tooMany.json.error, /at most 100 NIP-05 names per request/);
  assert.equal(hits.get('many0'), undefined);
  assert.equal((await get('/jobs?limit=1000')).json().jobs.length, jobsBefore, 'no job was started');
});

test('GET /cache-follows/{name} caches the follows of the pubkey the name stands for', async () => {
  const dave = await namedUser('dave');
  const erin = await namedUser('erin');
  const tags = [
    ['p', dave.pubkey],
    ['p', erin.pubkey],
  ];
  assert.equal((await publishRaw(client, alice.sign({ kind: 3, created_at: now(), tags })))[2], true);
  const r = await get(`/cache-follows/Alice@${domain}`);
  assert.equal(r.res.status, 202, r.body.toString());
  assert.deepEqual([r.json().count, r.json().pubkey], [2, alice.pubkey]);
  const job = await finished(r.json().job_id);
  assert.deepEqual([job.type, job.state, job.total, job.cached, job.pubkey], ['follows', 'done', 2, 2, alice.pubkey]);
  for (const u of [dave, erin]) assert.deepEqual(await picStatus(u.pubkey), { status: 200, cache: 'HIT' });
  // A name that does not resolve: the 404 of the picture routes; neither key nor name: 400.
  const missing = await get(`/cache-follows/nobody-follows@${domain}`);
  assert.equal(missing.res.status, 404);
  assert.match(missing.json().error, /^the NIP-05 name could not be resolved: no such name/);
  const bad = await get('/cache-follows/not-a-name');
  assert.equal(bad.res.status, 400);
  assert.match(bad.json().error, /^not a public key or a NIP-05 name: /);
});
