// fallbacks.test.mjs -- GET /profile-pic/{pubkey}?default=identicon|blank: generated pictures for pubkeys without a
// usable picture, in the requested size and format, with their caching headers; `default_avatar`; the 400s of the
// variant parameters; and the seed's answers (404 JSON, 307 to a failed source) kept when no `default` is given.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { inspectBytes, makeFixtures, startImageServer } from './lib/images.mjs';
import { newUser, now, publishRaw, rawClient } from './lib/nostr.mjs';
import { runBinary, startRelay, tempDir, testConfig } from './lib/relay.mjs';

let fixtures, images, relay, client;

// Sources on the loopback image server are allowed; nothing is fetched ahead of a request.
const LOOPBACK = { allowed_source_addresses: ['127.0.0.1'], download_timeout_seconds: 3, precache_on_metadata: false };

before(async () => {
  fixtures = makeFixtures(await tempDir());
  [images, relay] = await Promise.all([startImageServer(fixtures), startRelay({ config: LOOPBACK })]);
  client = await rawClient(relay.url);
});

after(async () => {
  client.close();
  await Promise.all([relay.cleanup(), images.close()]);
  await rm(fixtures, { recursive: true, force: true });
});

// A new user whose kind 0 has `picture`, or none.
async function profile(picture) {
  const user = newUser();
  const content = JSON.stringify({ name: 'fallback', ...(picture === undefined ? {} : { picture }) });
  assert.equal((await publishRaw(client, user.sign({ kind: 0, created_at: now(), content })))[2], true);
  return user;
}

async function getPic(id, query = '', headers = {}, base = relay.url) {
  const res = await fetch(`${base}/profile-pic/${id}${query}`, { redirect: 'manual', headers });
  return { res, body: Buffer.from(await res.arrayBuffer()) };
}

const inspectBody = (body) => inspectBytes(fixtures, body);

const MAGIC = {
  jpeg: (b) => b.subarray(0, 3).equals(Buffer.from([0xff, 0xd8, 0xff])),
  png: (b) => b.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])),
  webp: (b) => b.subarray(0, 4).toString('latin1') === 'RIFF' && b.subarray(8, 12).toString('latin1') === 'WEBP',
  avif: (b) => b.subarray(4, 12).toString('latin1') === 'ftypavif',
};

test('an identicon is the same bytes for the same key, different for another, with its caching headers', async () => {
  const a = newUser().pubkey;
  const b = newUser().pubkey;
  const first = await getPic(a, '?default=identicon&format=png');
  const again = await getPic(a, '?d=identicon&f=png');
  const other = await getPic(b, '?default=identicon&format=png');
  for (const r of [first, again, other]) {
    assert.equal(r.res.status, 200);
    assert.equal(r.res.headers.get('content-type'), 'image/png');
    assert.equal(r.res.headers.get('cache-control'), 'public, max-age=3600');
    assert.equal(r.res.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(r.res.headers.get('content-security-policy'), "default-src 'none'");
    assert.equal(r.res.headers.get('vary'), null, 'the URL names the format');
    assert.equal(r.res.headers.get('etag'), `"${createHash('sha256').update(r.body).digest('hex')}"`);
    assert.ok(MAGIC.png(r.body));
  }
  assert.ok(first.body.equals(again.body), 'deterministic');
  assert.ok(!first.body.equals(other.body), 'distinct keys, distinct pictures');
  const info = inspectBody(first.body);
  assert.equal(info.format, 'png');
  assert.equal(info.width, 200, 'without size: max_image_size');
  assert.equal(info.height, 200);
});

test('the requested size is honoured, rounded up the ladder, with dpr', async () => {
  const key = newUser().pubkey;
  for (const [query, side] of [
    ['?d=identicon&f=png&size=100', 128],
    ['?d=identicon&f=png&s=48', 48],
    ['?d=identicon&f=png&w=30&dpr=2', 64],
    ['?d=identicon&f=png&size=1024', 1024],
  ]) {
    const { res, body } = await getPic(key, query);
    assert.equal(res.status, 200, query);
    const info = inspectBody(body);
    assert.equal(info.width, side, query);
    assert.equal(info.height, side, query);
  }
});

test('every format has its magic bytes and Content-Type', async () => {
  const key = newUser().pubkey;
  for (const format of ['jpeg', 'webp', 'avif', 'png']) {
    const { res, body } = await getPic(key, `?d=identicon&size=64&format=${format}`);
    assert.equal(res.status, 200, format);
    assert.equal(res.headers.get('content-type'), `image/${format}`);
    assert.ok(MAGIC[format](body), `${format} magic bytes`);
    const info = inspectBody(body);
    assert.equal(info.format, format === 'avif' ? 'heif' : format);
    assert.equal(info.width, 64);
  }
});

test('a negotiated format varies on Accept; a named one does not', async () => {
  const key = newUser().pubkey;
  const webp = await getPic(key, '?d=identicon', { accept: 'image/avif,image/webp,*/*' });
  assert.equal(webp.res.headers.get('content-type'), 'image/webp');
  assert.equal(webp.res.headers.get('vary'), 'Accept');
  const any = await getPic(key, '?d=identicon', { accept: '*/*' });
  assert.equal(any.res.headers.get('content-type'), 'image/jpeg', 'a wildcard gets JPEG');
  assert.equal(any.res.headers.get('vary'), 'Accept');
  const named = await getPic(key, '?d=identicon&f=webp', { accept: 'image/webp' });
  assert.equal(named.res.headers.get('vary'), null);
  assert.ok(named.body.equals(webp.body), 'the same variant either way');
});

test('If-None-Match gives 304 per variant', async () => {
  const key = newUser().pubkey;
  const png = await getPic(key, '?d=identicon&f=png&s=64');
  const etag = png.res.headers.get('etag');
  const again = await getPic(key, '?d=identicon&f=png&s=64', { 'if-none-match': etag });
  assert.equal(again.res.status, 304);
  assert.equal(again.res.headers.get('etag'), etag);
  assert.equal(again.body.length, 0);
  const bigger = await getPic(key, '?d=identicon&f=png&s=128', { 'if-none-match': etag });
  assert.equal(bigger.res.status, 200, 'another size is another variant');
  const webp = await getPic(key, '?d=identicon&f=webp&s=64', { 'if-none-match': etag });
  assert.equal(webp.res.status, 200, 'another format is another variant');
  assert.notEqual(webp.res.headers.get('etag'), etag);
});

test('blank is one light colour at the requested size, for no profile and for no picture', async () => {
  const bare = await profile(undefined);
  for (const id of [newUser().pubkey, bare.pubkey]) {
    const { res, body } = await getPic(id, '?default=blank&format=png&size=48');
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('cache-control'), 'public, max-age=3600');
    assert.match(res.headers.get('etag'), /^"[0-9a-f]{64}"$/);
    const info = inspectBody(body);
    assert.equal(info.width, 48);
    assert.equal(info.height, 48);
    for (const px of [info.left, info.center, info.right]) assert.deepEqual(px.slice(0, 3), [240, 240, 240]);
  }
  const jpeg = await getPic(newUser().pubkey, '?d=blank&f=jpeg&s=32');
  assert.ok(MAGIC.jpeg(jpeg.body));
});

test('without default the seed answers stay: 404 JSON for no profile, 307 to a source that failed', async () => {
  const nobody = await getPic(newUser().pubkey);
  assert.equal(nobody.res.status, 404);
  assert.match(JSON.parse(nobody.body).error, /no profile \(kind 0\) found/);
  const explicit = await getPic(newUser().pubkey, '?default=404&size=64');
  assert.equal(explicit.res.status, 404);
  assert.match(JSON.parse(explicit.body).error, /no profile/);

  const broken = `${images.url}/status/404?fallback`;
  const u = await profile(broken);
  const first = await getPic(u.pubkey);
  assert.equal(first.res.status, 307);
  assert.equal(first.res.headers.get('location'), broken);
  // Remembered now: with default the same failure is an identicon, without it the redirect again.
  const drawn = await getPic(u.pubkey, '?default=identicon&format=png');
  assert.equal(drawn.res.status, 200);
  assert.ok(MAGIC.png(drawn.body));
  assert.equal((await getPic(u.pubkey)).res.status, 307);

  // A failed download on its first request, too.
  const v = await profile(`${images.url}/status/500?fallback`);
  const blank = await getPic(v.pubkey, '?d=blank&f=png');
  assert.equal(blank.res.status, 200);
  assert.equal(inspectBody(blank.body).width, 200);
});

test('a real picture is served, in the size and format asked, rather than the fallback', async () => {
  const u = await profile(`${images.url}/f/alpha.png`);
  const { res, body } = await getPic(u.pubkey, '?default=identicon&size=64&format=png');
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'image/png');
  assert.equal(res.headers.get('cache-control').includes('max-age=3600'), false);
  const info = inspectBody(body);
  assert.equal(info.format, 'png');
  assert.equal(info.width, 64);
  assert.equal(info.bands, 4, 'its transparency kept');
});

test('a parameter the relay cannot use is 400 JSON naming it', async () => {
  const key = newUser().pubkey;
  const u = await profile(`${images.url}/f/small.jpg`);
  for (const [query, name] of [
    ['?size=0', /^size:/],
    ['?s=abc', /^size:/],
    ['?size=1025', /^size: .*1024/],
    ['?dpr=5', /^dpr:/],
    ['?dpr=x', /^dpr:/],
    ['?format=gif', /^format:/],
    ['?f=bmp', /^format:/],
    ['?animated=maybe', /^animated:/],
    ['?default=mm', /^default:/],
    ['?d=retro', /^default:/],
  ]) {
    for (const id of [key, u.pubkey]) {
      const { res, body } = await getPic(id, query);
      assert.equal(res.status, 400, query);
      assert.equal(res.headers.get('content-type'), 'application/json');
      assert.match(JSON.parse(body).error, name, query);
    }
  }
  // Parameters the relay does not know are ignored.
  assert.equal((await getPic(key, '?d=identicon&utm_source=x&cb=1')).res.status, 200);
});

test('generated answers are counted by kind in /stats and /metrics', async () => {
  const before = (await relay.stats()).cache.generated;
  await getPic(newUser().pubkey, '?d=identicon&s=32');
  await getPic(newUser().pubkey, '?d=blank&s=32');
  await getPic(newUser().pubkey, '?d=blank&s=32');
  const after = (await relay.stats()).cache.generated;
  assert.equal(after.identicon, before.identicon + 1);
  assert.equal(after.blank, before.blank + 2);
  assert.equal(await relay.metric('pfpcache_generated_pictures_total', { kind: 'identicon' }), after.identicon);
  assert.equal(await relay.metric('pfpcache_generated_pictures_total', { kind: 'blank' }), after.blank);
});

test('a generated picture is drawn once for concurrent requests, then answered from memory', async () => {
  const key = newUser().pubkey;
  const before = (await relay.stats()).cache.generated;
  const url = '?d=identicon&f=avif&s=512';
  const first = await Promise.all(Array.from({ length: 5 }, () => getPic(key, url)));
  for (const r of first) {
    assert.equal(r.res.status, 200);
    assert.ok(r.body.equals(first[0].body));
  }
  const again = await getPic(key, url);
  assert.ok(again.body.equals(first[0].body));
  assert.equal(again.res.headers.get('etag'), first[0].res.headers.get('etag'));
  const after = (await relay.stats()).cache.generated;
  assert.equal(after.identicon, before.identicon + 6);
  assert.equal(after.drawn, before.drawn + 1, 'one drawing for six answers');
  assert.equal(await relay.metric('pfpcache_generated_drawn_total'), after.drawn);
});

test('default_avatar sets what a request without default gets; master_max_size and negotiate_formats apply', async () => {
  const r = await startRelay({
    config: { ...LOOPBACK, default_avatar: 'identicon', master_max_size: 256, negotiate_formats: ['avif', 'webp'] },
  });
  try {
    const key = newUser().pubkey;
    const drawn = await getPic(key, '', { accept: 'image/avif,image/webp,*/*' }, r.url);
    assert.equal(drawn.res.status, 200);
    assert.equal(drawn.res.headers.get('content-type'), 'image/avif');
    const webp = await getPic(key, '', { accept: 'image/webp,*/*' }, r.url);
    assert.equal(webp.res.headers.get('content-type'), 'image/webp');
    const curl = await getPic(key, '', { accept: '*/*' }, r.url);
    assert.equal(curl.res.headers.get('content-type'), 'image/jpeg');
    assert.equal(inspectBody(curl.body).width, 200);
    const no = await getPic(key, '?default=404', {}, r.url);
    assert.equal(no.res.status, 404);
    assert.match(JSON.parse(no.body).error, /no profile/);
    const big = await getPic(key, '?size=512', {}, r.url);
    assert.equal(big.res.status, 400);
    assert.match(JSON.parse(big.body).error, /^size: .*256/);
  } finally {
    await r.cleanup();
  }
});

test('default_avatar, master_max_size and negotiate_formats are checked', async () => {
  const dir = await tempDir();
  try {
    for (const [key, value, allowed] of [
      ['default_avatar', 'mm', /"404", "identicon" or "blank"/],
      ['negotiate_formats', ['webp', 'gif'], /"jpeg", "webp", "avif" or "png"/],
      ['master_max_size', 2048, /32 to 1024/],
    ]) {
      const path = join(dir, 'config.json');
      await writeFile(path, JSON.stringify(testConfig(dir, { [key]: value })));
      const res = await runBinary(['--config', path, '--check']);
      assert.equal(res.code, 2, `${key}: ${res.stderr}`);
      assert.match(res.stderr, new RegExp(key));
      assert.match(res.stderr, allowed);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
