// profile_api.test.mjs -- GET /profile/{id} and POST /profiles: the kind 0 as JSON, the picture's state
// (pending, then cached, or failed) without waiting for downloads, ETag and 304, profiles found only on an
// upstream relay, 404 and every 400.
import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32, deflateSync } from 'node:zlib';
import { after, before, test } from 'node:test';

import { decode as decodeBlurhash } from 'blurhash';
import { nip19 } from 'nostr-tools';

import { makeFixtures, startImageServer } from './lib/images.mjs';
import { newUser, now, publishRaw, rawClient, wsUrl } from './lib/nostr.mjs';
import { startRelay, tempDir, until } from './lib/relay.mjs';

let fixtures, images, upstream, relay;

const GUARDED = {
  allowed_source_addresses: ['127.0.0.1'],
  download_timeout_seconds: 3,
  download_connect_timeout_seconds: 2,
  precache_on_metadata: false,
};

async function publish(target, ...events) {
  const c = await rawClient(target.url);
  try {
    for (const ev of events) assert.equal((await publishRaw(c, ev))[2], true);
  } finally {
    c.close();
  }
}

function profileOf(u, content, created_at = now() - 10) {
  return u.sign({ kind: 0, created_at, content: JSON.stringify(content) });
}

const getProfile = (id, headers = {}) => fetch(`${relay.url}/profile/${id}`, { headers });
const postProfiles = (body) =>
  fetch(`${relay.url}/profiles`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });

// Polls GET /profile/{id} until its picture's state is `state`, within a deadline.
async function untilPictureState(id, state) {
  return until(
    async () => {
      const body = await (await getProfile(id)).json();
      return body.picture.state === state ? body : null;
    },
    Boolean,
    { what: `the picture of ${id} ${state}`, timeoutMs: 10000 },
  );
}

// A PNG of `width` x `height` RGB pixels, colour(x, y) -> [r, g, b].
function png(width, height, colour) {
  const chunk = (type, data) => {
    const body = Buffer.concat([Buffer.from(type), data]);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  const rows = Buffer.alloc(height * (1 + 3 * width));
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) rows.set(colour(x, y), y * (1 + 3 * width) + 1 + 3 * x);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(rows)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

const RED = [220, 30, 30];
const BLUE = [20, 40, 200];

before(async () => {
  fixtures = makeFixtures(await tempDir());
  // Three quarters red (the left), one quarter blue (the right).
  await writeFile(join(fixtures, 'redblue.png'), png(120, 120, (x) => (x < 90 ? RED : BLUE)));
  images = await startImageServer(fixtures);
  upstream = await startRelay();
  relay = await startRelay({ config: { ...GUARDED, upstream_relays: [wsUrl(upstream.url)], upstream_timeout_ms: 2000 } });
  await relay.waitUpstreamConnected();
});

after(async () => {
  await relay.cleanup();
  await upstream.cleanup();
  await images.close();
  await rm(fixtures, { recursive: true, force: true });
});

test('a stored profile: its fields as published, its picture pending, then cached with its size', async () => {
  const u = newUser();
  const ev = profileOf(u, {
    name: 'alice',
    display_name: 'Alice',
    about: 'hi',
    nip05: 'alice@example.com',
    website: 'https://example.com',
    lud16: 'alice@ln.example',
    picture: `${images.url}/f/small.jpg`,
    banner: `${images.url}/f/big.jpg`,
  });
  await publish(relay, ev);

  const res = await getProfile(nip19.npubEncode(u.pubkey));
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /^application\/json/);
  assert.equal(res.headers.get('cache-control'), 'public, max-age=60');
  const body = await res.json();
  assert.equal(body.pubkey, u.pubkey);
  assert.equal(body.npub, nip19.npubEncode(u.pubkey));
  assert.equal(body.name, 'alice');
  assert.equal(body.display_name, 'Alice');
  assert.equal(body.about, 'hi');
  assert.equal(body.nip05, 'alice@example.com');
  assert.equal(body.website, 'https://example.com');
  assert.equal(body.lud16, 'alice@ln.example');
  assert.equal(body.created_at, ev.created_at);
  assert.equal(body.picture.url, `${images.url}/f/small.jpg`);
  assert.equal(body.picture.relay_url, `${relay.url}/profile-pic/${u.pubkey}`);
  // The answer did not wait for the download: the picture was queued.
  assert.equal(body.picture.state, 'pending');
  assert.deepEqual(body.banner, {
    url: `${images.url}/f/big.jpg`,
    relay_url: `${relay.url}/profile-banner/${u.pubkey}`,
    state: 'pending',
  });

  const cached = await untilPictureState(u.pubkey, 'cached');
  assert.ok(cached.picture.width > 0 && cached.picture.height > 0);
  assert.ok(cached.picture.width <= 200 && cached.picture.height <= 200);
  assert.match(cached.picture.blurhash, /^[0-9A-Za-z#$%*+,\-.:;=?@[\]^_{|}~]{28}$/);
  assert.match(cached.picture.color, /^#[0-9a-f]{6}$/);
  const pic = await fetch(cached.picture.relay_url);
  assert.equal(pic.status, 200);
  assert.equal(pic.headers.get('x-cache'), 'HIT');
  await pic.arrayBuffer();
  // The banner was queued too, behind the picture: its master is as wide as the widest banner answer.
  const both = await until(async () => (await (await getProfile(u.pubkey)).json()).banner, (b) => b.state === 'cached' && b.blurhash, {
    what: 'the banner cached and summarised',
  });
  assert.deepEqual([both.width, both.height], [1920, 1280]);
  assert.match(both.color, /^#[0-9a-f]{6}$/);
  const stats = (await relay.stats()).profiles;
  assert.ok(stats.found >= 2 && stats.pending >= 1);
  assert.ok((await relay.metric('pfpcache_profile_answers_total', { result: 'pending' })) >= 1);
});

test('a cached picture has a blurhash that decodes to its colours, and its dominant colour', async () => {
  const u = newUser();
  await publish(relay, profileOf(u, { picture: `${images.url}/f/redblue.png` }));
  assert.equal((await (await getProfile(u.pubkey)).json()).picture.state, 'pending');
  const { picture } = await untilPictureState(u.pubkey, 'cached');
  assert.equal(picture.width, 120);
  assert.equal(picture.height, 120);

  // The dominant colour is the red, within what JPEG keeps of it.
  const c = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/.exec(picture.color);
  assert.ok(c, picture.color);
  [1, 2, 3].forEach((i) => assert.ok(Math.abs(parseInt(c[i], 16) - RED[i - 1]) <= 24, `${picture.color} is red`));

  // 4x3 components: 4 + 2 * 12 characters; it decodes red on the left and blue on the right.
  assert.equal(picture.blurhash.length, 28);
  const px = decodeBlurhash(picture.blurhash, 8, 8);
  const at = (x, y) => Array.from(px.slice(4 * (y * 8 + x), 4 * (y * 8 + x) + 3));
  const [lr, lg, lb] = at(1, 4);
  const [rr, , rb] = at(7, 4);
  assert.ok(lr > 150 && lr > lg + 80 && lr > lb + 80, `left ${at(1, 4)} is red`);
  assert.ok(rb > rr, `right ${at(7, 4)} is bluer than red`);

  // Computed once: the same answer again, and one picture summarised.
  const again = (await (await getProfile(u.pubkey)).json()).picture;
  assert.equal(again.blurhash, picture.blurhash);
  assert.equal(again.color, picture.color);
  assert.ok((await relay.stats()).profiles.summaries >= 1);
});

test('fields that are not strings are null, as are absent ones; no picture is state none', async () => {
  const u = newUser();
  await publish(relay, profileOf(u, { name: 42, about: ['x'] }));
  const body = await (await getProfile(u.pubkey)).json();
  assert.equal(body.name, null);
  assert.equal(body.about, null);
  assert.equal(body.lud16, null);
  assert.deepEqual(body.picture, { url: null, relay_url: null, state: 'none' });
  assert.deepEqual(body.banner, { url: null, relay_url: null, state: 'none' });
});

test('a picture that cannot be downloaded ends failed', async () => {
  const u = newUser();
  await publish(relay, profileOf(u, { picture: `${images.url}/status/404` }));
  assert.equal((await (await getProfile(u.pubkey)).json()).picture.state, 'pending');
  await untilPictureState(u.pubkey, 'failed');
});

test('ETag: 304 on If-None-Match, and a new one when the kind 0 changes', async () => {
  const u = newUser();
  await publish(relay, profileOf(u, { name: 'one' }, now() - 100));
  const first = await getProfile(u.pubkey);
  const etag = first.headers.get('etag');
  assert.match(etag, /^"[0-9a-f]{32}"$/);
  await first.arrayBuffer();
  const again = await getProfile(u.pubkey, { 'if-none-match': etag });
  assert.equal(again.status, 304);
  assert.equal(again.headers.get('etag'), etag);
  assert.ok((await relay.stats()).profiles.not_modified >= 1);
  const head = await fetch(`${relay.url}/profile/${u.pubkey}`, { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(head.headers.get('etag'), etag);
  assert.equal((await head.arrayBuffer()).byteLength, 0);

  await publish(relay, profileOf(u, { name: 'two' }, now() - 5));
  const changed = await getProfile(u.pubkey, { 'if-none-match': etag });
  assert.equal(changed.status, 200);
  assert.notEqual(changed.headers.get('etag'), etag);
  assert.equal((await changed.json()).name, 'two');
});

test('a profile only the upstream relay has is looked up, for GET and in a batch', async () => {
  const a = newUser();
  const b = newUser();
  await publish(upstream, profileOf(a, { name: 'from upstream a' }), profileOf(b, { name: 'from upstream b' }));
  const single = await getProfile(nip19.nprofileEncode({ pubkey: a.pubkey }));
  assert.equal(single.status, 200);
  assert.equal((await single.json()).name, 'from upstream a');

  const queriesBefore = (await relay.stats()).lookups.queries;
  const c = newUser();
  await publish(upstream, profileOf(c, { name: 'from upstream c' }));
  const res = await postProfiles({ pubkeys: [b.pubkey, nip19.npubEncode(c.pubkey)] });
  assert.equal(res.status, 200);
  const arr = await res.json();
  assert.deepEqual(
    arr.map((p) => p.name),
    ['from upstream b', 'from upstream c'],
  );
  // Both were asked of the upstream relay together.
  assert.equal((await relay.stats()).lookups.queries, queriesBefore + 1);
});

test('a batch answers in order, with duplicates and {found: false} for pubkeys without a kind 0', async () => {
  const u = newUser();
  const nobody = newUser();
  await publish(relay, profileOf(u, { name: 'batch' }));
  const res = await postProfiles({ pubkeys: [nip19.npubEncode(u.pubkey), nobody.pubkey, u.pubkey.toUpperCase()] });
  assert.equal(res.status, 200);
  assert.ok(res.headers.get('etag'));
  const arr = await res.json();
  assert.equal(arr.length, 3);
  assert.equal(arr[0].name, 'batch');
  assert.deepEqual(arr[1], { pubkey: nobody.pubkey, found: false });
  assert.equal(arr[2].pubkey, u.pubkey);
});

test('a pubkey without a kind 0 anywhere is 404 JSON', async () => {
  const res = await getProfile(newUser().pubkey);
  assert.equal(res.status, 404);
  assert.match((await res.json()).error, /no profile/);
  assert.ok((await relay.stats()).profiles.not_found >= 1);
});

test('every bad request is 400 JSON naming what is wrong', async () => {
  const bad = await getProfile('nothex');
  assert.equal(bad.status, 400);
  assert.match((await bad.json()).error, /not a public key/);

  const u = newUser().pubkey;
  const cases = [
    ['{not json', /malformed JSON/],
    ['[]', /must be an object with a "pubkeys" array/],
    [{ keys: [u] }, /must be an object with a "pubkeys" array/],
    [{ pubkeys: u }, /"pubkeys" must be an array/],
    [{ pubkeys: [] }, /"pubkeys" is empty/],
    [{ pubkeys: Array(501).fill(u) }, /at most 500 pubkeys per request; got 501/],
    [{ pubkeys: [u, 7] }, /pubkeys\[1\] is not a string/],
    [{ pubkeys: [u, 'npub1nope'] }, /pubkeys\[1\] is not a public key/],
  ];
  for (const [body, error] of cases) {
    const res = await postProfiles(body);
    assert.equal(res.status, 400, JSON.stringify(body).slice(0, 60));
    assert.match((await res.json()).error, error);
  }
  const ok = await postProfiles({ pubkeys: Array(500).fill(u) });
  assert.equal(ok.status, 200);
  assert.equal((await ok.json()).length, 500);
});
