// picture.test.mjs -- GET /profile-pic/{pubkey}: resizing every accepted format, refusing hostile
// sources, caching (ETag, 304, STALE), negative caching, single flight, the address guard, and
// surviving kill -9, against a local image server.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { nip19 } from 'nostr-tools';

import { inspect, serveFixtures, stopFixtures } from './lib/images.mjs';
import { newUser, now, publishRaw, rawClient } from './lib/nostr.mjs';
import { startRelay, tempDir, until } from './lib/relay.mjs';

let fixtures, images, relay, client;

// Options every relay here shares: the image server on loopback is allowed, nothing else private is.
const GUARDED = {
  allowed_source_addresses: ['127.0.0.1'],
  download_timeout_seconds: 3,
  download_connect_timeout_seconds: 2,
  precache_on_metadata: false,
};

before(async () => {
  ({ fixtures, images } = await serveFixtures());
  relay = await startRelay({ config: GUARDED });
  client = await rawClient(relay.url);
});

after(async () => {
  client.close();
  await relay.cleanup();
  await stopFixtures({ fixtures, images });
});

// A user whose kind 0 names `picture`, published to `on`.
async function profile(picture, { on = client, created_at = now(), user = newUser() } = {}) {
  const content = JSON.stringify(picture === undefined ? { name: 'no picture' } : { name: 'someone', picture });
  assert.equal((await publishRaw(on, user.sign({ kind: 0, created_at, content })))[2], true);
  return user;
}

async function getPic(id, options = {}, base = relay.url) {
  const res = await fetch(`${base}/profile-pic/${id}`, { redirect: 'manual', ...options });
  const body = Buffer.from(await res.arrayBuffer());
  return { res, body };
}

// What libvips sees in a response body.
function inspectBody(body) {
  const path = join(fixtures, `out-${createHash('sha256').update(body).digest('hex')}`);
  writeFileSync(path, body);
  return inspect(path);
}

const sha256 = (b) => createHash('sha256').update(b).digest('hex');

test('a large JPEG is resized to fit max_image_size, cached, and served with strong cache headers', async () => {
  const u = await profile(`${images.url}/f/big.jpg`);
  const first = await getPic(u.pubkey);
  assert.equal(first.res.status, 200);
  assert.equal(first.res.headers.get('content-type'), 'image/jpeg');
  assert.equal(first.res.headers.get('x-cache'), 'MISS');
  assert.equal(Number(first.res.headers.get('content-length')), first.body.length);
  assert.equal(first.res.headers.get('etag'), `"${sha256(first.body)}"`);
  // A CDN in front may serve it stale for a day while it asks again, and for a week while the relay cannot answer.
  assert.equal(first.res.headers.get('cache-control'), 'public, max-age=2592000, stale-while-revalidate=86400, stale-if-error=604800');
  assert.equal(first.res.headers.get('surrogate-key'), u.pubkey);
  assert.ok(Date.parse(first.res.headers.get('last-modified')) > Date.now() - 60000);
  const seen = inspectBody(first.body);
  assert.deepEqual([seen.format, seen.width, seen.height, seen.bands, seen.interpretation], ['jpeg', 200, 133, 3, 'srgb']);

  const second = await getPic(u.pubkey);
  assert.equal(second.res.headers.get('x-cache'), 'HIT');
  assert.deepEqual(second.body, first.body);

  const conditional = await getPic(u.pubkey, { headers: { 'If-None-Match': first.res.headers.get('etag') } });
  assert.equal(conditional.res.status, 304);
  assert.equal(conditional.body.length, 0);

  const head = await getPic(u.pubkey, { method: 'HEAD' });
  assert.equal(head.res.status, 200);
  assert.equal(Number(head.res.headers.get('content-length')), first.body.length);
  assert.equal(head.body.length, 0);
  assert.equal(images.hits.get('/f/big.jpg'), 1);
});

test('an npub, an nprofile and upper-case hex name the same picture; anything else is 400', async () => {
  const u = await profile(`${images.url}/f/small.jpg`);
  const { body } = await getPic(u.pubkey);
  for (const id of [nip19.npubEncode(u.pubkey), nip19.nprofileEncode({ pubkey: u.pubkey, relays: ['wss://r.example'] }),
    u.pubkey.toUpperCase()]) {
    const r = await getPic(id);
    assert.equal(r.res.status, 200, id);
    assert.deepEqual(r.body, body);
  }
  const npub = nip19.npubEncode(u.pubkey);
  // The last character changed, so the checksum fails.
  const damaged = `${npub.slice(0, -1)}${npub.endsWith('q') ? 'p' : 'q'}`;
  for (const bad of ['xyz', u.pubkey.slice(1), damaged, 'nsec1vl029mgpspedva04g90vltkh6fvh240zqtv9k0t9af8935ke9laqsnlfe5']) {
    const r = await getPic(bad);
    assert.equal(r.res.status, 400, bad);
    const msg = JSON.parse(r.body).error;
    assert.match(msg, /^not a public key or a NIP-05 name: /);
    assert.ok(!msg.includes(bad), 'the id is not echoed');
  }
});

// What each accepted format becomes: a JPEG within 200x200, never enlarged.
const FORMATS = [
  ['PNG with alpha, flattened on white', 'alpha.png', (s) => {
    assert.deepEqual([s.width, s.height, s.bands], [200, 200, 3]);
    assert.ok(s.left.every((v) => v >= 245), `transparent half is white: ${s.left}`);
    assert.ok(s.right[2] > 200 && s.right[0] < 60, `opaque half stays blue: ${s.right}`);
  }],
  ['CMYK JPEG, converted to sRGB', 'cmyk.jpg', (s) => {
    assert.deepEqual([s.interpretation, s.bands, s.width], ['srgb', 3, 200]);
    assert.ok(s.center[0] > 180 && s.center[1] < 90 && s.center[2] < 90, `still red: ${s.center}`);
  }],
  ['EXIF-rotated JPEG, turned upright', 'rotated.jpg', (s) => {
    assert.deepEqual([s.width, s.height], [100, 200]);
    assert.ok(s.orientation <= 1, 'no orientation left to apply');
  }],
  ['animated GIF, its first frame', 'anim.gif', (s) => {
    assert.deepEqual([s.width, s.height, s.bands, s.pages], [120, 120, 3, 1]);
    assert.ok(s.center[0] > 200 && s.center[1] < 60, `the first (red) frame: ${s.center}`);
  }],
  ['WebP', 'image.webp', (s) => assert.deepEqual([s.width, s.height], [200, 200])],
  ['AVIF', 'image.avif', (s) => assert.deepEqual([s.width, s.height], [200, 200])],
  ['small JPEG, not enlarged', 'small.jpg', (s) => assert.deepEqual([s.width, s.height], [64, 64])],
];

for (const [name, file, check] of FORMATS) {
  test(`accepted format: ${name}`, async () => {
    const u = await profile(`${images.url}/f/${file}`);
    const { res, body } = await getPic(u.pubkey);
    assert.equal(res.status, 200, body.toString());
    assert.equal(res.headers.get('content-type'), 'image/jpeg');
    const s = inspectBody(body);
    assert.equal(s.format, 'jpeg');
    check(s);
  });
}

// Sources that must be refused: each answer is 307 to the source, and the relay keeps serving.
const REFUSED = [
  ['an SVG', '/f/vector.svg'],
  ['a PNG whose header claims 50,000 x 50,000', '/f/huge.png'],
  ['a truncated JPEG', '/f/truncated.jpg'],
  ['random bytes sent as image/png', '/f/random.bin'],
  ['a body that never ends', '/endless'],
  ['a body that trickles a byte a second', '/trickle'],
  ['a body longer than its Content-Length', '/liar'],
  ['a chain of 6 redirects', '/redirect/6/small.jpg'],
  ['a 500 from the origin', '/status/500'],
  ['a redirect to a loopback address the guard refuses', () => `/to/127.0.0.2:${images.port}/f/small.jpg`],
  ['a redirect to a private address', '/to/10.255.255.1:80/f/small.jpg'],
];

for (const [name, path] of REFUSED) {
  test(`refused source: ${name}`, async () => {
    const url = `${images.url}${typeof path === 'function' ? path() : path}`;
    const u = await profile(url);
    const { res, body } = await getPic(u.pubkey);
    assert.equal(res.status, 307, body.toString());
    assert.equal(res.headers.get('location'), url);
    assert.match(JSON.parse(body).error, /could not be (downloaded|decoded)/);
    assert.equal((await fetch(`${relay.url}/health`)).status, 200);
  });
}

test('a chain of 5 redirects is followed', async () => {
  const u = await profile(`${images.url}/redirect/5/small.jpg`);
  assert.equal((await getPic(u.pubkey)).res.status, 200);
});

test('the address guard refuses loopback and names the range, even through a host name', async () => {
  const strict = await startRelay({ config: { ...GUARDED, allowed_source_addresses: [] } });
  const c = await rawClient(strict.url);
  try {
    for (const host of ['127.0.0.1', 'localhost']) {
      const url = `http://${host}:${images.port}/status/200?${host}`;
      const u = await profile(url, { on: c });
      const { res } = await getPic(u.pubkey, {}, strict.url);
      assert.equal(res.status, 307);
      assert.equal(res.headers.get('location'), url);
    }
    assert.equal(await strict.metric('pfpcache_download_failures_total', { reason: 'refused_address' }), 2);
    // The log names the range; its line may reach the test a moment after the answer.
    await strict.waitForLog(/refused_address \(refused address: loopback\)/);
    assert.equal(images.hits.get('/status/200'), undefined, 'the guard refused before connecting');
  } finally {
    c.close();
    await strict.cleanup();
  }
});

test('no kind 0, or a kind 0 without a picture, is 404 with a JSON error', async () => {
  const nobody = await getPic(newUser().pubkey);
  assert.equal(nobody.res.status, 404);
  assert.match(JSON.parse(nobody.body).error, /no profile \(kind 0\) found/);
  const u = await profile(undefined);
  const bare = await getPic(u.pubkey);
  assert.equal(bare.res.status, 404);
  assert.match(JSON.parse(bare.body).error, /has no picture/);
  const odd = await profile('ipfs://bafy/picture.png');
  assert.equal((await getPic(odd.pubkey)).res.status, 404);
});

test('a failure is remembered without downloading again, until a newer kind 0 arrives', async () => {
  const u = newUser();
  const broken = `${images.url}/status/404?remember`;
  await profile(broken, { user: u, created_at: now() - 60 });
  assert.equal((await getPic(u.pubkey)).res.status, 307);
  assert.equal((await getPic(u.pubkey)).res.status, 307);
  assert.equal(images.hits.get('/status/404'), 1, 'the second answer came from memory');

  await profile(`${images.url}/f/small.jpg?fixed`, { user: u });
  // The newer kind 0 clears the remembered failure once its record is written; until then it still answers 307.
  const fixed = await until(() => getPic(u.pubkey), (r) => r.res.status !== 307);
  assert.equal(fixed.res.status, 200);
});

test('concurrent requests for one uncached pubkey share one download', async () => {
  const url = `${images.url}/f/image.webp?single-flight`;
  const u = await profile(url);
  const before = images.hits.get('/f/image.webp') ?? 0;
  const all = await Promise.all(Array.from({ length: 50 }, () => getPic(u.pubkey)));
  const etags = new Set(all.map((r) => r.res.headers.get('etag')));
  assert.ok(all.every((r) => r.res.status === 200));
  assert.equal(etags.size, 1);
  assert.equal((images.hits.get('/f/image.webp') ?? 0) - before, 1);
});

test('pubkeys sharing a picture URL share one download and one stored file', async () => {
  const url = `${images.url}/f/anim.gif?shared`;
  const [a, b] = [await profile(url), await profile(url)];
  const before = images.hits.get('/f/anim.gif') ?? 0;
  const ra = await getPic(a.pubkey);
  const rb = await getPic(b.pubkey);
  assert.equal(rb.res.headers.get('etag'), ra.res.headers.get('etag'));
  assert.equal((images.hits.get('/f/anim.gif') ?? 0) - before, 1);
});

test('data: URIs with base64 pictures are decoded', async () => {
  const { readFileSync } = await import('node:fs');
  const png = readFileSync(join(fixtures, 'alpha.png')).toString('base64');
  const u = await profile(`data:image/png;base64,${png}`);
  const { res, body } = await getPic(u.pubkey);
  assert.equal(res.status, 200);
  assert.equal(inspectBody(body).width, 200);
});

test('a stale entry is served STALE while it is refreshed, and a changed picture replaces it', async () => {
  const quick = await startRelay({
    config: { ...GUARDED, cache_expiration_days: 0.00002, cache_stale_while_revalidate_seconds: 0, cache_stale_if_error_seconds: 0 },
  });
  const c = await rawClient(quick.url);
  try {
    const u = newUser();
    await profile(`${images.url}/f/small.jpg?stale`, { on: c, user: u, created_at: now() - 10 });
    const first = await getPic(u.pubkey, {}, quick.url);
    // With the stale directives set to 0, they are left out.
    assert.equal(first.res.headers.get('cache-control'), 'public, max-age=1');
    await profile(`${images.url}/f/image.webp?stale`, { on: c, user: u });
    // max-age is 1 s: the entry turns stale within about a second of being stored.
    const stale = await until(() => getPic(u.pubkey, {}, quick.url), (r) => r.res.headers.get('x-cache') !== 'HIT');
    assert.equal(stale.res.headers.get('x-cache'), 'STALE');
    assert.equal(stale.res.headers.get('etag'), first.res.headers.get('etag'));
    let fresh;
    for (let i = 0; i < 50; i++) {
      fresh = await getPic(u.pubkey, {}, quick.url);
      if (fresh.res.headers.get('etag') !== first.res.headers.get('etag')) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.notEqual(fresh.res.headers.get('etag'), first.res.headers.get('etag'));
    assert.equal(inspectBody(fresh.body).width, 200);
  } finally {
    c.close();
    await quick.cleanup();
  }
});

test('with precache_on_metadata, a new kind 0 is fetched ahead and a changed picture re-cached', async () => {
  const eager = await startRelay({ config: { ...GUARDED, precache_on_metadata: true } });
  const c = await rawClient(eager.url);
  const waitFor = async (pred) => {
    for (let i = 0; i < 100; i++) {
      const r = await getPic(u.pubkey, {}, eager.url);
      if (pred(r)) return r;
      await new Promise((res) => setTimeout(res, 50));
    }
    throw new Error('never happened');
  };
  const u = newUser();
  try {
    await profile(`${images.url}/f/small.jpg?eager`, { on: c, user: u, created_at: now() - 10 });
    const first = await waitFor((r) => r.res.headers.get('x-cache') === 'HIT');
    await profile(`${images.url}/f/alpha.png?eager`, { on: c, user: u });
    const second = await waitFor((r) => r.res.headers.get('etag') !== first.res.headers.get('etag'));
    assert.equal(second.res.status, 200);
    assert.equal(inspectBody(second.body).width, 200);
  } finally {
    c.close();
    await eager.cleanup();
  }
});

test('with resize_images false the checked original is stored and served', async () => {
  const raw = await startRelay({ config: { ...GUARDED, resize_images: false } });
  const c = await rawClient(raw.url);
  try {
    const u = await profile(`${images.url}/f/image.webp?original`, { on: c });
    const { res, body } = await getPic(u.pubkey, {}, raw.url);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'image/webp');
    const { readFileSync } = await import('node:fs');
    assert.deepEqual(body, readFileSync(join(fixtures, 'image.webp')));
    const bad = await profile(`${images.url}/f/truncated.jpg?original`, { on: c });
    assert.equal((await getPic(bad.pubkey, {}, raw.url)).res.status, 307);
  } finally {
    c.close();
    await raw.cleanup();
  }
});

test('kill -9 during a burst of downloads leaves only whole pictures', async () => {
  const dir = await tempDir();
  let victim = await startRelay({ dir, config: GUARDED });
  let c = await rawClient(victim.url);
  const users = [];
  // The image server holds each answer a little, so that the burst is still under way when the relay is killed.
  for (let i = 0; i < 30; i++) users.push(await profile(`${images.url}/slow/100/${i % 2 ? 'big.jpg' : 'image.avif'}?burst=${i}`, { on: c }));
  c.close();
  const burst = users.map((u) => getPic(u.pubkey, {}, victim.url).catch(() => null));
  await until(
    () => victim.stats(),
    ({ downloads: d }) => d.started > 0 && d.started > d.processed + Object.values(d.failed).reduce((a, b) => a + b, 0),
    { intervalMs: 5 },
  );
  victim.proc.kill('SIGKILL');
  await Promise.all(burst);
  await victim.exited;

  victim = await startRelay({ dir, config: GUARDED });
  try {
    const leftovers = readdirSync(join(dir, 'media'), { recursive: true }).filter((f) => String(f).includes('.tmp.'));
    assert.deepEqual(leftovers, []);
    for (const u of users) {
      const { res, body } = await getPic(u.pubkey, {}, victim.url);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('etag'), `"${sha256(body)}"`, 'the bytes are the ones stored');
      assert.equal(inspectBody(body).format, 'jpeg');
    }
  } finally {
    await victim.cleanup();
  }
});
