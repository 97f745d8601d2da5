// variants.test.mjs -- sizes, formats and animations of real pictures, made from one master per picture: the
// ladder, dpr, negotiation and Vary, 304 per variant, one download for many variants, frames, banners, the cache's
// accounting and purges, and a kill -9 while variants are being made.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { inspectBytes, serveFixtures, stopFixtures } from './lib/images.mjs';
import { newUser, now, publishRaw, rawClient } from './lib/nostr.mjs';
import { runBinary, startRelay, tempDir } from './lib/relay.mjs';

const GUARDED = { allowed_source_addresses: ['127.0.0.1'], precache_on_metadata: false };
const WEBP = 'image/avif,image/webp,*/*';
const CURL = '*/*';

let fx, relay, client;

before(async () => {
  fx = await serveFixtures();
  relay = await startRelay({ config: { ...GUARDED, negotiate_formats: ['webp'] } });
  client = await rawClient(relay.url);
});

after(async () => {
  client.close();
  await relay.cleanup();
  await stopFixtures(fx);
});

const sha256 = (b) => createHash('sha256').update(b).digest('hex');

// A new user whose kind 0 names `fields` (picture, banner), published to `r`.
async function profile(fields, c = client) {
  const user = newUser();
  const content = JSON.stringify({ name: 'variants', ...fields });
  assert.equal((await publishRaw(c, user.sign({ kind: 0, created_at: now(), content })))[2], true);
  return user;
}

async function get(path, { accept = CURL, headers = {}, base = relay.url } = {}) {
  const res = await fetch(`${base}${path}`, { redirect: 'manual', headers: { accept, ...headers } });
  const body = Buffer.from(await res.arrayBuffer());
  return { res, body, info: res.status === 200 && body.length > 0 ? inspectBytes(fx.fixtures, body) : null };
}

const picture = (u, query = '', opts) => get(`/profile-pic/${u.pubkey}${query}`, opts);
const banner = (u, query = '', opts) => get(`/profile-banner/${u.pubkey}${query}`, opts);
const longer = (info) => Math.max(info.width, info.height);

test("the seed's URL still gets the JPEG of max_image_size, and browsers the WebP, both hits at once", async () => {
  const u = await profile({ picture: `${fx.images.url}/f/big.jpg` });
  const first = await picture(u);
  assert.equal(first.res.status, 200);
  assert.equal(first.res.headers.get('x-cache'), 'MISS');
  assert.equal(first.res.headers.get('content-type'), 'image/jpeg');
  assert.equal(first.res.headers.get('vary'), 'Accept', 'negotiated: a cache must key on Accept');
  assert.deepEqual([first.info.format, longer(first.info)], ['jpeg', 200]);
  const made = (await relay.stats()).cache.variants.made;
  const webp = await picture(u, '', { accept: WEBP });
  assert.equal(webp.res.headers.get('x-cache'), 'HIT');
  assert.deepEqual([webp.info.format, longer(webp.info)], ['webp', 200]);
  assert.equal(webp.res.headers.get('vary'), 'Accept');
  assert.equal((await picture(u)).res.headers.get('x-cache'), 'HIT');
  assert.equal((await relay.stats()).cache.variants.made, made, 'both were made with the master, at download time');
  assert.equal(webp.res.headers.get('etag'), `"${sha256(webp.body)}"`);
  assert.notEqual(webp.res.headers.get('etag'), first.res.headers.get('etag'));
});

test('five sizes in three formats of one picture cost one download, each on the ladder, each its own ETag and 304', async () => {
  const u = await profile({ picture: `${fx.images.url}/f/big.jpg?five` });
  const downloads = fx.images.hits.get('/f/big.jpg') ?? 0;
  const etags = new Set();
  for (const size of [24, 64, 100, 300, 1000]) {
    for (const format of ['jpeg', 'webp', 'avif']) {
      const r = await picture(u, `?size=${size}&format=${format}`, { accept: WEBP });
      assert.equal(r.res.status, 200, `${size} ${format}`);
      assert.equal(r.res.headers.get('content-type'), `image/${format}`);
      assert.equal(r.res.headers.get('vary'), null, 'the URL names the format');
      assert.equal(r.info.format, format === 'avif' ? 'heif' : format);
      const step = [32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024].find((s) => s >= size);
      assert.equal(longer(r.info), step, `${size} is served at ${step}`);
      assert.equal(r.res.headers.get('etag'), `"${sha256(r.body)}"`);
      etags.add(r.res.headers.get('etag'));
      const again = await picture(u, `?size=${size}&format=${format}`, { headers: { 'if-none-match': r.res.headers.get('etag') } });
      assert.equal(again.res.status, 304, 'the same variant is not modified');
    }
  }
  assert.equal(etags.size, 15);
  assert.equal(fx.images.hits.get('/f/big.jpg'), downloads + 1, 'one download for fifteen variants');
  // Another variant's ETag is no match.
  const [first] = etags;
  assert.equal((await picture(u, '?size=48&format=png', { headers: { 'if-none-match': first } })).res.status, 200);
  const { cache } = await relay.stats();
  assert.ok(cache.variants.made >= 15);
  assert.ok(cache.variants.served_by_format.avif >= 5 && cache.variants.served_by_size['64'] >= 6);
  const m = await relay.metrics();
  assert.ok(m.get('pfpcache_picture_answers_total', { format: 'avif' }) >= 5);
  assert.ok(m.get('pfpcache_variant_making_seconds_count', { format: 'webp' }) >= 5);
});

test('dpr multiplies the size before the ladder, and no picture is enlarged past its master', async () => {
  const u = await profile({ picture: `${fx.images.url}/f/big.jpg?dpr` });
  for (const [query, side] of [
    ['?size=64&dpr=2', 128],
    ['?s=100&dpr=1.5', 192],
    ['?w=40&dpr=2.625', 128],
    ['?dpr=3', 768],
  ]) {
    const r = await picture(u, `${query}&f=webp`);
    assert.equal(longer(r.info), side, query);
  }
  const small = await profile({ picture: `${fx.images.url}/f/small.jpg` });
  const r = await picture(small, '?size=512&format=png');
  assert.deepEqual([r.info.width, r.info.height], [64, 64], 'a 64 px source stays 64 px');
  assert.equal(longer((await picture(small, '?size=1024&format=png')).info), 64);
});

test('a format from Accept varies on it; a format in the URL does not', async () => {
  const u = await profile({ picture: `${fx.images.url}/f/alpha.png` });
  const chrome = await picture(u, '?size=128', { accept: 'image/avif,image/webp,image/apng,image/*,*/*;q=0.8' });
  assert.deepEqual([chrome.info.format, chrome.res.headers.get('vary')], ['webp', 'Accept']);
  assert.equal(chrome.info.bands, 4, 'WebP keeps the transparency');
  const old = await picture(u, '?size=128', { accept: 'image/png,image/*;q=0.8' });
  assert.deepEqual([old.info.format, old.res.headers.get('vary')], ['jpeg', 'Accept']);
  assert.equal(old.info.bands, 3, 'JPEG is flattened');
  const named = await picture(u, '?size=128&format=avif', { accept: 'image/webp' });
  assert.deepEqual([named.info.format, named.res.headers.get('vary')], ['heif', null]);
});

test('animated=1 keeps the frames, as WebP or as GIF for clients without WebP; without it, the first frame', async () => {
  const u = await profile({ picture: `${fx.images.url}/f/anim.gif` });
  const still = await picture(u, '?size=64', { accept: WEBP });
  assert.deepEqual([still.info.format, still.info.pages], ['webp', 1]);
  const moving = await picture(u, '?size=64&animated=1', { accept: WEBP });
  assert.deepEqual([moving.info.format, moving.info.pages, longer(moving.info)], ['webp', 3, 64]);
  assert.equal(moving.res.headers.get('vary'), 'Accept');
  const gif = await picture(u, '?a=1&size=64', { accept: 'image/png,image/gif' });
  assert.deepEqual([gif.info.format, gif.info.pages], ['gif', 3]);
  const named = await picture(u, '?a=1&format=webp&size=64', { accept: CURL });
  assert.deepEqual([named.info.format, named.info.pages, named.res.headers.get('vary')], ['webp', 3, null]);
  // A picture that does not move is served still, in the format it would get without asking.
  const s = await profile({ picture: `${fx.images.url}/f/small.jpg?still` });
  const r = await picture(s, '?animated=1', { accept: 'image/png' });
  assert.deepEqual([r.info.format, r.info.pages], ['jpeg', 1]);
});

test('a parameter a picture request cannot use is 400 JSON naming it, for pictures and banners alike', async () => {
  const u = await profile({ picture: `${fx.images.url}/f/small.jpg?bad`, banner: `${fx.images.url}/f/big.jpg?bad` });
  for (const [path, name] of [
    [`/profile-pic/${u.pubkey}?size=0`, /^size:/],
    [`/profile-pic/${u.pubkey}?size=1025`, /^size: .*1024/],
    [`/profile-pic/${u.pubkey}?dpr=4.5`, /^dpr:/],
    [`/profile-pic/${u.pubkey}?format=tiff`, /^format:/],
    [`/profile-pic/${u.pubkey}?animated=2`, /^animated:/],
    [`/profile-pic/${u.pubkey}?animated=1&format=png`, /^animated:/],
    [`/profile-pic/${u.pubkey}?default=gravatar`, /^default:/],
    [`/profile-banner/${u.pubkey}?size=1921`, /^size: .*1920/],
    [`/profile-banner/${u.pubkey}?default=identicon`, /^default: a banner/],
    [`/profile-banner/${u.pubkey}?f=bmp`, /^format:/],
  ]) {
    const r = await get(path);
    assert.equal(r.res.status, 400, path);
    assert.match(JSON.parse(r.body).error, name, path);
  }
  assert.equal((await picture(u, '?utm_source=cdn&size=64')).res.status, 200, 'unknown parameters are ignored');
});

test('banners: widths on their own ladder up to 1920, max_banner_size by default, 404 without one', async () => {
  const u = await profile({ picture: `${fx.images.url}/f/small.jpg?b`, banner: `${fx.images.url}/f/big.jpg?banner` });
  const plain = await banner(u);
  assert.equal(plain.res.status, 200);
  assert.deepEqual([plain.info.format, plain.info.width, plain.info.height], ['jpeg', 1000, 667]);
  for (const [size, width] of [
    [1300, 1440],
    [1920, 1920],
    [600, 768],
  ]) {
    const r = await banner(u, `?size=${size}&format=webp`);
    assert.deepEqual([r.info.format, r.info.width], ['webp', width], `${size}`);
  }
  assert.equal(longer((await picture(u, '?size=64&f=png')).info), 64, 'the avatar is apart from the banner');
  const none = await profile({ picture: `${fx.images.url}/f/small.jpg?nobanner` });
  const r = await banner(none);
  assert.equal(r.res.status, 404);
  assert.equal(JSON.parse(r.body).error, 'the profile has no banner');
  const blank = await banner(none, '?default=blank&size=300&f=png');
  assert.deepEqual([blank.res.status, blank.info.width, blank.info.height], [200, 384, 128]);
  // The profile API reports it like the picture.
  const p = await (await fetch(`${relay.url}/profile/${u.pubkey}`)).json();
  assert.equal(p.banner.state, 'cached');
  assert.equal(p.banner.relay_url, `${relay.url}/profile-banner/${u.pubkey}`);
  assert.deepEqual([p.banner.width, p.banner.height], [1920, 1280]);
});

// Picture files under the media directory.
function mediaFiles(dir) {
  const media = join(dir, 'media');
  return readdirSync(media, { recursive: true })
    .map(String)
    .filter((f) => /[0-9a-f]{64}$/.test(f))
    .map((f) => statSync(join(media, f), { throwIfNoEntry: false })?.size)
    .filter((size) => size !== undefined);
}

test('variants count against the cache, and a purge removes them with their master', async () => {
  const r = await startRelay({ config: GUARDED });
  try {
    const c = await rawClient(r.url);
    const u = await profile({ picture: `${fx.images.url}/f/big.jpg?purge` }, c);
    c.close();
    assert.equal((await get(`/profile-pic/${u.pubkey}`, { base: r.url })).res.status, 200);
    await r.waitFor(async () => (await r.stats()).cache.files === 3, 'the master and its two first variants');
    for (const size of [32, 64, 128, 256]) await get(`/profile-pic/${u.pubkey}?size=${size}&f=avif`, { base: r.url });
    await r.waitFor(async () => (await r.stats()).cache.files === 7, 'four more variants stored');
    const { cache } = await r.stats();
    const sizes = mediaFiles(r.dir);
    assert.equal(sizes.length, 7);
    assert.equal(cache.bytes, sizes.reduce((a, b) => a + b, 0), 'every file is counted, variants included');
    const res = await fetch(`${r.url}/purge-profile-pic/${u.pubkey}`, { method: 'POST' });
    assert.equal(res.status, 200);
    assert.equal(mediaFiles(r.dir).length, 0, 'the variants went with their master');
    assert.deepEqual([(await r.stats()).cache.files, (await r.stats()).cache.bytes], [0, 0]);
  } finally {
    await r.cleanup();
  }
});

test('a kill -9 while variants are being made leaves nothing partial', async () => {
  const dir = await tempDir();
  let r = await startRelay({ dir, config: GUARDED });
  const c = await rawClient(r.url);
  const users = [];
  for (let i = 0; i < 4; i++) users.push(await profile({ picture: `${fx.images.url}/f/big.jpg?kill${i}` }, c));
  c.close();
  for (const u of users) assert.equal((await get(`/profile-pic/${u.pubkey}`, { base: r.url })).res.status, 200);
  // Many variants asked at once; the relay dies while they are being made and stored.
  const asked = [];
  for (const u of users)
    for (const size of [48, 96, 192, 384, 768]) asked.push(get(`/profile-pic/${u.pubkey}?size=${size}&f=avif`, { base: r.url }).catch(() => null));
  await r.waitFor(async () => (await r.stats()).cache.variants.made >= 2, 'some variants made');
  r.proc.kill('SIGKILL');
  await Promise.all(asked);
  await r.exited;

  const check = await runBinary(['--config', r.configPath, '--check-db']);
  assert.equal(check.code, 0, check.stdout + check.stderr);
  r = await startRelay({ dir, config: GUARDED });
  try {
    const leftovers = readdirSync(join(dir, 'media'), { recursive: true }).filter((f) => String(f).includes('.tmp.'));
    assert.deepEqual(leftovers, []);
    await r.waitFor(async () => (await r.stats()).cache.pictures === 4, 'the pictures kept');
    // Every variant answers whole: the stored ones and those made again.
    for (const u of users) {
      for (const size of [48, 96, 192, 384, 768]) {
        const v = await get(`/profile-pic/${u.pubkey}?size=${size}&f=avif`, { base: r.url });
        assert.equal(v.res.status, 200);
        assert.equal(v.res.headers.get('etag'), `"${sha256(v.body)}"`);
        assert.equal(longer(v.info), size);
      }
    }
    const { cache } = await r.stats();
    assert.equal(cache.bytes, mediaFiles(dir).reduce((a, b) => a + b, 0), 'no file uncounted, none missing');
  } finally {
    await r.cleanup();
  }
});
