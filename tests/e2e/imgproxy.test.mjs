// imgproxy.test.mjs -- the imgproxy-compatible endpoint (SPEC-imgproxy.md, issue 14): URLs from the official builder,
// signed and insecure; the strings Snort and Coracle build; sizes, formats, fill, force and extend; signatures (wrong,
// truncated, rotated keys); source encodings; errors from the path, the guard and the origin; ETag, 304, Cache-Control
// and Vary; one download for many sizes; 429 under a flood; the /stats and /metrics figures.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, test } from 'node:test';

import { generateImageUrl } from '@imgproxy/imgproxy-node';
import sharp from 'sharp';

import { serveFixtures, stopFixtures } from './lib/images.mjs';
import { freePort, startRelay, until } from './lib/relay.mjs';

// sharp points VIPSHOME at its own libvips, whose modules the relay's (Debian's) must not look for.
delete process.env.VIPSHOME;

const GUARDED = { allowed_source_addresses: ['127.0.0.1'], precache_on_metadata: false };
const P = '/imgproxy';
const K1 = { key: '943b421c9eb07c830af81030552c86009268de4e532ba2ee2eab8247c6da0881', salt: '520f986b998545b4785e0defbc4f3c1203f22de2374a3d53cb7a7fe9fea309c5' };
const K2 = { key: 'aa11bb22', salt: 'cc33' };
const K3 = { key: 'deadbeefdeadbeef', salt: '0badf00d' };
const WEBP = 'image/avif,image/webp,*/*';
const CURL = '*/*';
const MAX_AGE = 30 * 86400; // cache_expiration_days defaults to 30

let fx;
// One relay per configuration, all started at once.
let signed; // two keys (rotation), the guard letting loopback through
let open; // no key, unsigned allowed
let tight; // one key, 8-byte signatures, one slot and a queue of 2
let small; // unsigned, max_source_bytes at its minimum
let unguarded; // unsigned, no allowed_source_addresses: loopback is refused
let nokey; // no key, unsigned not allowed

before(async () => {
  fx = await serveFixtures();
  [signed, open, tight, small, unguarded, nokey] = await Promise.all([
    startRelay({ config: { ...GUARDED, imgproxy_key: [K1.key, K2.key], imgproxy_salt: [K1.salt, K2.salt] } }),
    startRelay({ config: { ...GUARDED, imgproxy_allow_unsigned: true } }),
    startRelay({
      config: { ...GUARDED, imgproxy_key: K1.key, imgproxy_salt: K1.salt, imgproxy_signature_size: 8, imgproxy_max_concurrent: 1, imgproxy_max_queue: 2 },
    }),
    startRelay({ config: { ...GUARDED, imgproxy_allow_unsigned: true, max_source_bytes: 1024 } }),
    startRelay({ config: { precache_on_metadata: false, imgproxy_allow_unsigned: true } }),
    startRelay({ config: { ...GUARDED } }),
  ]);
});

after(async () => {
  for (const r of [signed, open, tight, small, unguarded, nokey]) await r?.cleanup();
  await stopFixtures(fx);
});

const src = (name, query = '') => `${fx.images.url}/f/${name}${query}`;
const b64url = (s) => Buffer.from(s).toString('base64url');

// The signature imgproxy expects: HMAC-SHA256(key, salt || path after the signature), `size` bytes of it, base64url.
function sign(pathAfterSig, { key, salt }, size = 32) {
  const mac = createHmac('sha256', Buffer.from(key, 'hex')).update(Buffer.concat([Buffer.from(salt, 'hex'), Buffer.from(pathAfterSig)])).digest();
  return mac.subarray(0, size).toString('base64url');
}
const signedPath = (rest, k = K1, size) => `${P}/${sign(rest, k, size)}${rest}`;

// A path (from the prefix on) of the official builder's URL.
function built(url, options, k) {
  const endpoint = `http://relay.invalid${P}`;
  return generateImageUrl({ endpoint, url, options, ...(k ?? {}) }).slice(endpoint.length - P.length);
}

async function get(relay, path, { accept = CURL, headers = {}, method = 'GET' } = {}) {
  const res = await fetch(`${relay.url}${path}`, { method, redirect: 'manual', headers: { accept, ...headers } });
  const body = Buffer.from(await res.arrayBuffer());
  // Decoded by sharp: another libvips build than the relay's, as an imgproxy client's browser is another decoder.
  const info = res.status === 200 && body.length > 0 ? await sharp(body).metadata() : null;
  return { res, body, info, status: res.status, json: () => JSON.parse(body.toString()) };
}

const ok = (r, what) => assert.equal(r.status, 200, `${what}: ${r.status} ${r.body.toString().slice(0, 200)}`);
const dims = (r) => [r.info.width, r.info.height];

// An error answer: the status, a JSON body with an "error" string.
function fails(r, status, what, pattern) {
  assert.equal(r.status, status, `${what}: ${r.status} ${r.body.toString().slice(0, 200)}`);
  assert.match(r.res.headers.get('content-type') ?? '', /application\/json/, what);
  const { error } = r.json();
  assert.equal(typeof error, 'string', what);
  if (pattern) assert.match(error, pattern, what);
}

// big.jpg is 3000 x 2000, so its master is 1024 x 683; small.jpg 64 x 64; alpha.png 400 x 400 with alpha.

test('URLs from the official builder, signed with either configured key, give the size and format asked for', async () => {
  for (const k of [K1, K2]) {
    const r = await get(signed, built(src('big.jpg', '?builder'), { resize: { resizing_type: 'fit', width: 300, height: 300 } }, k));
    ok(r, 'rs:fit:300:300');
    assert.deepEqual(dims(r), [300, 200], 'fit keeps the 3:2 aspect ratio');
    assert.equal(r.info.format, 'jpeg', '*/* negotiates JPEG');
  }
  const png = await get(signed, built(src('big.jpg', '?builder'), { width: 150, format: 'png' }, K1));
  ok(png, 'w:150/f:png');
  assert.equal(png.res.headers.get('content-type'), 'image/png');
  assert.deepEqual([png.info.format, ...dims(png)], ['png', 150, 100], 'h 0 keeps the aspect ratio');
  const tall = await get(signed, built(src('big.jpg', '?builder'), { width: 0, height: 100, format: 'webp' }, K2));
  ok(tall, 'w:0/h:100/f:webp');
  assert.deepEqual([tall.info.format, ...dims(tall)], ['webp', 150, 100], 'no width keeps the aspect ratio');
  // The builder leaves out w:0; written out, it means the same.
  const zero = await get(signed, signedPath(`/w:0/h:100/f:webp/${b64url(src('big.jpg', '?builder'))}`));
  ok(zero, 'w:0/h:100');
  assert.deepEqual(dims(zero), [150, 100], 'w 0 keeps the aspect ratio');
  const none = await get(signed, built(src('big.jpg', '?builder'), {}, K1));
  ok(none, 'no options at all');
  assert.equal(Math.max(...dims(none)), 1024, 'without a size, the master');
});

test('insecure URLs from the official builder work on a relay with no key and unsigned allowed', async () => {
  const r = await get(open, built(src('big.jpg', '?insecure'), { resize: { resizing_type: 'fill', width: 100, height: 50 }, format: 'png' }));
  assert.ok(built(src('big.jpg'), {}).startsWith(`${P}/insecure/`));
  ok(r, 'insecure fill');
  assert.deepEqual([r.info.format, ...dims(r)], ['png', 100, 50]);
  for (const sig of ['x', '_', 'anything']) {
    ok(await get(open, `${P}/${sig}/rs:fit:64:64/${b64url(src('small.jpg', '?insecure'))}`), `signature text ${sig}`);
  }
});

test("Snort's strings: rs:fit:S:S with a fractional dpr capped to the source and the master, and no options at all", async () => {
  const big = b64url(src('big.jpg', '?snort'));
  const r = await get(signed, signedPath(`/rs:fit:48:48/dpr:2.625/${big}`));
  ok(r, 'dpr 2.625');
  assert.deepEqual(dims(r), [126, 84], '48 x 2.625 = 126');
  const capped = await get(signed, signedPath(`/rs:fit:400:400/dpr:2.625/${big}`));
  ok(capped, 'dpr past the master');
  assert.equal(capped.info.width, 1024, 'not enlarged past the master');
  assert.ok(Math.abs(capped.info.height - 683) <= 1);
  const tiny = await get(signed, signedPath(`/rs:fit:48:48/dpr:2.625/${b64url(src('small.jpg', '?snort'))}`));
  ok(tiny, 'dpr past the source');
  assert.deepEqual(dims(tiny), [64, 64], 'a 64 px source is not enlarged');
  const plain = await get(signed, signedPath(`//${big}`));
  ok(plain, 'empty options part');
  assert.equal(plain.info.width, 1024, 'no resize: the master');
  assert.equal(plain.res.headers.get('vary'), 'Accept');
});

test("Coracle's unsigned /x/s:W:H/{btoa(source)}: padded, unpadded, and with standard base64's '+' and '/'", async () => {
  // btoa writes standard base64. Sources whose encodings need padding, and ones that hold a '/' and a '+', which
  // imgproxy's own base64url would misread; the query varies the encoding, within a bounded search.
  const encodings = [];
  for (let i = 0; i < 2000 && encodings.length < 3; i++) {
    const enc = Buffer.from(src('big.jpg', `?coracle=${'~'.repeat((i % 3) + 1)}${i}`)).toString('base64');
    const wanted = [enc.endsWith('='), enc.includes('/'), enc.includes('+')];
    if (wanted[encodings.length]) encodings.push(enc);
  }
  assert.equal(encodings.length, 3, 'a padded, a slashed and a plussed encoding were found');
  for (const s of [encodings[0], encodings[0].replace(/=+$/, ''), encodings[1], encodings[2]]) {
    const r = await get(open, `${P}/x/s:300:300/${s}`);
    ok(r, s);
    assert.deepEqual(dims(r), [300, 200]);
  }
});

test('fill is exact, force ignores the aspect ratio, extend pads a small picture to the box, enlarge enlarges', async () => {
  const big = b64url(src('big.jpg', '?geometry'));
  const fill = await get(signed, signedPath(`/rs:fill:100:50/${big}`));
  ok(fill, 'fill');
  assert.deepEqual(dims(fill), [100, 50]);
  const force = await get(signed, signedPath(`/rs:force:100:100/${big}`));
  ok(force, 'force');
  assert.deepEqual(dims(force), [100, 100]);
  const s = b64url(src('small.jpg', '?geometry'));
  const fit = await get(signed, signedPath(`/rs:fit:200:200/${s}`));
  assert.deepEqual(dims(fit), [64, 64], 'not enlarged');
  const extended = await get(signed, signedPath(`/rs:fit:200:200:0:1/${s}`));
  ok(extended, 'extend');
  assert.deepEqual(dims(extended), [200, 200], 'padded to the box');
  const enlarged = await get(signed, signedPath(`/rs:fit:200:200:1/${s}`));
  ok(enlarged, 'enlarge');
  assert.deepEqual(dims(enlarged), [200, 200]);
});

test('formats: f:png, f:webp, a .webp extension on the source, and Accept without a format', async () => {
  const a = src('alpha.png', '?formats');
  const png = await get(signed, signedPath(`/rs:fit:100:100/f:png/${b64url(a)}`));
  assert.deepEqual([png.res.headers.get('content-type'), png.info.format, ...dims(png)], ['image/png', 'png', 100, 100]);
  const webp = await get(signed, signedPath(`/rs:fit:100:100/f:webp/${b64url(a)}`), { accept: CURL });
  assert.deepEqual([webp.res.headers.get('content-type'), webp.info.format], ['image/webp', 'webp']);
  const ext = await get(signed, signedPath(`/rs:fit:100:100/${b64url(a)}.webp`));
  assert.deepEqual([ext.res.headers.get('content-type'), ext.info.format], ['image/webp', 'webp']);
  const browser = await get(signed, signedPath(`/rs:fit:100:100/${b64url(a)}`), { accept: WEBP });
  assert.deepEqual([browser.info.format, browser.res.headers.get('vary')], ['webp', 'Accept']);
  const curl = await get(signed, signedPath(`/rs:fit:100:100/${b64url(a)}`), { accept: CURL });
  assert.deepEqual([curl.info.format, curl.res.headers.get('vary')], ['jpeg', 'Accept']);
  const head = await get(signed, signedPath(`/rs:fit:100:100/f:webp/${b64url(a)}`), { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(head.res.headers.get('content-type'), 'image/webp');
  assert.equal(head.body.length, 0);
});

test('a wrong or missing signature is 403; a third key is 403', async () => {
  const rest = `/rs:fit:64:64/${b64url(src('small.jpg', '?sig'))}`;
  const good = sign(rest, K1);
  const wrong = (good[0] === 'A' ? 'B' : 'A') + good.slice(1);
  const before = (await signed.stats()).imgproxy.forbidden;
  fails(await get(signed, `${P}/${wrong}${rest}`), 403, 'one character changed');
  fails(await get(signed, `${P}/insecure${rest}`), 403, 'insecure with a key configured');
  fails(await get(signed, `${P}/${sign(rest, K3)}${rest}`), 403, 'a key not configured');
  fails(await get(signed, `${P}/${sign(rest, K1, 8)}${rest}`), 403, 'truncated when the full length is configured');
  fails(await get(signed, `${P}/${sign(rest.replace('64:64', '65:64'), K1)}${rest}`), 403, 'signed for another path');
  ok(await get(signed, `${P}/${good}${rest}`), 'the right one');
  ok(await get(signed, `${P}/${sign(rest, K2)}${rest}`), 'the second key');
  assert.equal((await signed.stats()).imgproxy.forbidden, before + 5);
});

test('imgproxy_signature_size 8: a truncated signature is accepted, a full-length one is 403', async () => {
  const rest = `/rs:fit:64:64/${b64url(src('small.jpg', '?truncated'))}`;
  const short = sign(rest, K1, 8);
  assert.equal(short.length, 11);
  ok(await get(tight, `${P}/${short}${rest}`), 'the first 8 bytes');
  fails(await get(tight, `${P}/${sign(rest, K1)}${rest}`), 403, 'all 32 bytes');
});

test('sources: padded and unpadded base64url, split by "/", plain with @ext', async () => {
  let url;
  for (let i = 0; ; i++) if ((url = src('big.jpg', `?enc=${i}`)).length % 3 !== 0) break;
  const unpadded = b64url(url);
  const padded = Buffer.from(url).toString('base64').replace(/\+/g, '-').replace(/\//g, '_');
  assert.ok(padded.endsWith('='));
  for (const [what, s] of [
    ['unpadded', unpadded],
    ['padded', padded],
    ['split by /', unpadded.match(/.{1,10}/g).join('/')],
  ]) {
    const r = await get(signed, signedPath(`/rs:fit:300:300/${s}`));
    ok(r, what);
    assert.deepEqual(dims(r), [300, 200], what);
  }
  const split = await get(signed, signedPath(`/rs:fit:300:300/${unpadded.match(/.{1,7}/g).join('/')}.png`));
  assert.deepEqual([split.info.format, ...dims(split)], ['png', 300, 200], 'split, with an extension');
  const plain = await get(signed, signedPath(`/rs:fit:300:300/plain/${encodeURIComponent(url)}@png`));
  ok(plain, 'plain');
  assert.deepEqual([plain.res.headers.get('content-type'), plain.info.format, ...dims(plain)], ['image/png', 'png', 300, 200]);
  // The builder writes a plain source as it is, unescaped: one without a query, since a '?' would start the query.
  const builtPlain = await get(signed, built({ value: src('big.jpg'), displayAs: 'plain' }, { width: 300 }, K2));
  ok(builtPlain, 'plain from the builder');
  assert.deepEqual(dims(builtPlain), [300, 200]);
});

test('an unknown option is 400 JSON naming it; so are malformed options and sources', async () => {
  const s = b64url(src('small.jpg', '?bad'));
  const before = (await signed.stats()).imgproxy.bad_requests;
  fails(await get(signed, signedPath(`/rs:fit:64:64/blur:5/${s}`)), 400, 'blur', /blur/);
  fails(await get(open, `${P}/x/watermark:1/${s}`), 400, 'watermark', /watermark/);
  fails(await get(signed, signedPath(`/rs:fit:abc:64/${s}`)), 400, 'a width that is no number');
  fails(await get(signed, signedPath(`/rs:fit:64:64/${b64url('ftp://127.0.0.1/x.jpg')}`)), 400, 'an ftp source');
  fails(await get(signed, signedPath(`/rs:fit:64:64/!!!`)), 400, 'no base64');
  assert.ok((await signed.stats()).imgproxy.bad_requests >= before + 4);
});

test('with no key and unsigned not allowed, every path is 404', async () => {
  const s = b64url(src('small.jpg', '?nokey'));
  const hits = fx.images.total();
  fails(await get(nokey, `${P}/insecure/rs:fit:64:64/${s}`), 404, 'insecure');
  fails(await get(nokey, `${P}/${sign(`/rs:fit:64:64/${s}`, K1)}/rs:fit:64:64/${s}`), 404, 'signed');
  fails(await get(nokey, `${P}/x/blur:5/${s}`), 404, 'even a bad option');
  assert.equal(fx.images.total(), hits, 'nothing downloaded');
});

test('a private-address source is 404 with the guard on, and the origin sees no request', async () => {
  const hits = fx.images.total();
  fails(await get(unguarded, `${P}/insecure/rs:fit:64:64/${b64url(src('small.jpg', '?guard'))}`), 404, '127.0.0.1');
  fails(await get(unguarded, `${P}/insecure//plain/${encodeURIComponent(src('big.jpg', '?guard'))}`), 404, '127.0.0.1, plain');
  assert.equal(fx.images.total(), hits, 'the guard refused before connecting');
});

test("the origin's failures: 404, 500, refused connection, not an image, too big", async () => {
  const path = (url) => `${P}/insecure/rs:fit:64:64/${b64url(url)}`;
  fails(await get(open, path(src('missing.jpg'))), 404, 'origin 404');
  fails(await get(open, path(`${fx.images.url}/status/500`)), 502, 'origin 500');
  fails(await get(open, path(`http://127.0.0.1:${await freePort()}/f/small.jpg`)), 502, 'connection refused');
  fails(await get(open, path(src('random.bin'))), 415, 'random bytes as image/png');
  fails(await get(open, path(src('vector.svg'))), 415, 'an SVG');
  fails(await get(small, path(src('big.jpg', '?too-big'))), 413, 'over max_source_bytes');
  assert.ok((await open.stats()).imgproxy.source_failures >= 4, "the origin's failures are counted");
  ok(await get(open, path(src('small.jpg', '?after-failures'))), 'still serving');
});

test('ETag is strong, If-None-Match gives 304, Cache-Control has max-age, Vary only when negotiated', async () => {
  const path = signedPath(`/rs:fit:128:128/f:webp/${b64url(src('alpha.png', '?etag'))}`);
  const r = await get(signed, path);
  ok(r, 'first');
  const etag = r.res.headers.get('etag');
  assert.match(etag, /^"[0-9a-f]{64}"$/);
  assert.equal(r.res.headers.get('cache-control'), `public, max-age=${MAX_AGE}, stale-while-revalidate=86400, stale-if-error=604800`);
  assert.equal(r.res.headers.get('vary'), null, 'f:webp: nothing to vary on');
  const before = (await signed.stats()).imgproxy.not_modified;
  const again = await get(signed, path, { headers: { 'if-none-match': etag } });
  assert.equal(again.status, 304);
  assert.equal(again.body.length, 0);
  assert.equal((await signed.stats()).imgproxy.not_modified, before + 1);
  assert.equal((await get(signed, path, { headers: { 'if-none-match': '"0000"' } })).status, 200, 'another ETag');
  const other = await get(signed, signedPath(`/rs:fit:64:64/f:webp/${b64url(src('alpha.png', '?etag'))}`), { headers: { 'if-none-match': etag } });
  assert.equal(other.status, 200, "another size's ETag is no match");
  assert.notEqual(other.res.headers.get('etag'), etag);
  const negotiated = await get(signed, signedPath(`/rs:fit:128:128/${b64url(src('alpha.png', '?etag'))}`), { accept: WEBP });
  assert.equal(negotiated.res.headers.get('vary'), 'Accept');
  assert.equal(negotiated.res.headers.get('cache-control'), `public, max-age=${MAX_AGE}, stale-while-revalidate=86400, stale-if-error=604800`);
});

test('ten sizes of one source cost one download, requested at once or one after another', async () => {
  const SIZES = [24, 32, 48, 64, 100, 128, 200, 256, 300, 512];
  for (const mode of ['concurrent', 'sequential']) {
    const url = src('big.jpg', `?ten-${mode}`);
    const paths = SIZES.map((s) => signedPath(`/rs:fit:${s}:${s}/f:webp/${b64url(url)}`));
    const hits = fx.images.hits.get('/f/big.jpg') ?? 0;
    const fetched = (await signed.stats()).imgproxy.sources_fetched;
    const answers = mode === 'concurrent' ? await Promise.all(paths.map((p) => get(signed, p))) : [];
    if (mode === 'sequential') for (const p of paths) answers.push(await get(signed, p));
    answers.forEach((r, i) => {
      ok(r, `${mode} ${SIZES[i]}`);
      assert.equal(Math.max(...dims(r)), SIZES[i], `${mode} ${SIZES[i]}`);
    });
    assert.equal(fx.images.hits.get('/f/big.jpg'), hits + 1, `${mode}: one download for ten sizes`);
    assert.equal((await signed.stats()).imgproxy.sources_fetched, fetched + 1, `${mode}: one source fetched`);
    assert.equal((await get(signed, paths[3])).res.headers.get('x-cache'), 'HIT', 'a size asked for again');
  }
});

test('a new source is answered before its master is stored; that answer becomes the stored variant', async () => {
  const url = src('big.jpg', '?early');
  const path = `${P}/insecure/rs:fit:256:256/f:webp/${b64url(url)}`;
  const idle = () => until(() => open.stats(), (s) => s.imgproxy.running === 0, { what: 'the masters stored' });
  const before = (await open.stats()).imgproxy;
  const first = await get(open, path);
  ok(first, 'a new source');
  assert.equal(first.res.headers.get('x-cache'), 'MISS');
  assert.deepEqual(dims(first), [256, 171]);
  const made = await idle();
  assert.equal(made.imgproxy.early_answers, before.early_answers + 1, 'answered from the pixels, before the master');
  assert.equal(made.imgproxy.variants_made, before.variants_made + 1);
  const again = await get(open, path);
  assert.equal(again.res.headers.get('x-cache'), 'HIT');
  assert.equal(again.res.headers.get('etag'), first.res.headers.get('etag'), 'the early answer is the one stored');
  assert.ok(again.body.equals(first.body));
  const other = await get(open, `${P}/insecure/rs:fit:100:100/f:webp/${b64url(url)}`);
  ok(other, 'another size, from the stored master');
  assert.deepEqual(dims(other), [100, 67]);
  const after = (await idle()).imgproxy;
  assert.equal(after.sources_fetched, before.sources_fetched + 1, 'one download');
  assert.equal(after.variants_made, before.variants_made + 2);
  assert.equal(after.early_answers, before.early_answers + 1);

  // An animation keeps its frames: it waits for its master, as before.
  const anim = await get(open, `${P}/insecure/rs:fit:64:64/f:webp/${b64url(src('anim.gif', '?early'))}`);
  ok(anim, 'an animated source');
  assert.equal(anim.info.pages, 3);
  assert.equal((await idle()).imgproxy.early_answers, before.early_answers + 1, 'no early answer for an animation');
});

test('a flood of distinct slow sources past the queue gets 429 with Retry-After; the rest 200; the relay answers after', async () => {
  const N = 20;
  const paths = Array.from({ length: N }, (_, i) => {
    const rest = `/rs:fit:64:64/${b64url(`${fx.images.url}/slow/800/small.jpg?n=${i}`)}`;
    return `${P}/${sign(rest, K1, 8)}${rest}`;
  });
  const answers = await Promise.all(paths.map((p) => get(tight, p)));
  const rejected = answers.filter((r) => r.status === 429);
  const served = answers.filter((r) => r.status === 200);
  assert.equal(rejected.length + served.length, N, `only 200 and 429: ${answers.map((r) => r.status)}`);
  assert.ok(rejected.length >= 1, 'one slot and a queue of two cannot take twenty');
  assert.ok(served.length >= 1, 'the ones holding the slot and the queue are served');
  for (const r of rejected) {
    assert.match(r.res.headers.get('retry-after') ?? '', /^\d+$/, 'Retry-After in seconds');
    assert.equal(typeof r.json().error, 'string');
  }
  const s = await until(() => tight.stats(), (st) => st.imgproxy.running === 0 && st.imgproxy.queued === 0, { what: 'the queue drained' });
  assert.ok(s.imgproxy.rejected >= rejected.length && s.imgproxy.rejected > 0);
  assert.equal(s.imgproxy.max_concurrent, 1);
  assert.equal(s.imgproxy.max_queue, 2);
  const rest = `/rs:fit:32:32/${b64url(src('small.jpg', '?after-flood'))}`;
  ok(await get(tight, `${P}/${sign(rest, K1, 8)}${rest}`), 'after the flood');
  assert.ok((await tight.metric('pfpcache_imgproxy_requests_total', { outcome: 'rejected' })) >= rejected.length);
});

test('/stats imgproxy counters move and /metrics has the imgproxy families', async () => {
  const path = signedPath(`/rs:fit:96:96/f:jpeg/${b64url(src('big.jpg', '?counters'))}`);
  const s0 = (await signed.stats()).imgproxy;
  for (const k of ['requests', 'hits', 'misses', 'stale', 'not_modified', 'sources_fetched', 'source_failures', 'variants_made', 'rejected', 'bad_requests', 'forbidden', 'running', 'queued', 'max_concurrent', 'max_queue', 'bytes_served']) {
    assert.equal(typeof s0[k], 'number', k);
  }
  const first = await get(signed, path);
  assert.equal(first.res.headers.get('x-cache'), 'MISS');
  const second = await get(signed, path);
  assert.equal(second.res.headers.get('x-cache'), 'HIT');
  const s1 = (await signed.stats()).imgproxy;
  assert.equal(s1.requests, s0.requests + 2);
  assert.equal(s1.hits, s0.hits + 1);
  assert.equal(s1.misses, s0.misses + 1);
  assert.equal(s1.sources_fetched, s0.sources_fetched + 1);
  assert.ok(s1.variants_made >= s0.variants_made + 1);
  assert.ok(s1.bytes_served >= s0.bytes_served + first.body.length + second.body.length);
  const m = await signed.metrics();
  for (const f of ['pfpcache_imgproxy_requests_total', 'pfpcache_imgproxy_sources_fetched_total', 'pfpcache_imgproxy_running', 'pfpcache_imgproxy_queued']) {
    assert.ok(m.families.has(f), f);
  }
  assert.ok(m.get('pfpcache_imgproxy_requests_total', { outcome: 'hit' }) >= 1);
  assert.ok(m.get('pfpcache_imgproxy_requests_total', { outcome: 'miss' }) >= 1);
  assert.ok(m.get('pfpcache_imgproxy_requests_total', { outcome: 'forbidden' }) >= 1);
  assert.ok(m.get('pfpcache_imgproxy_sources_fetched_total') >= s1.sources_fetched);
});
