// hostile_images.test.mjs -- pictures that would cost seconds of CPU or hundreds of MB to decode, refused with
// their reason in /metrics and remembered; AVIF and HEIF however libvips finds its modules; picture answers that
// browsers cannot misread, and originals served without what follows their end (a JPEG and ZIP polyglot).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { inspect, makeHostile, serveFixtures, stopFixtures } from './lib/images.mjs';
import { newUser, now, publishRaw, rawClient } from './lib/nostr.mjs';
import { BIN, runBinary, startRelay, tempDir, testConfig } from './lib/relay.mjs';

let fixtures, images, relay, client;

const GUARDED = {
  allowed_source_addresses: ['127.0.0.1'],
  download_timeout_seconds: 10,
  download_connect_timeout_seconds: 2,
  precache_on_metadata: false,
};

before(async () => {
  ({ fixtures, images } = await serveFixtures(makeHostile));
  relay = await startRelay({ config: GUARDED });
  client = await rawClient(relay.url);
});

after(async () => {
  client.close();
  await relay.cleanup();
  await stopFixtures({ fixtures, images });
});

// A user whose kind 0 names `picture`, published through `on`.
async function profile(picture, on = client) {
  const user = newUser();
  const content = JSON.stringify({ name: 'someone', picture });
  assert.equal((await publishRaw(on, user.sign({ kind: 0, created_at: now(), content })))[2], true);
  return user;
}

async function getPic(r, id, options = {}) {
  const res = await fetch(`${r.url}/profile-pic/${id}`, { redirect: 'manual', ...options });
  return { res, body: Buffer.from(await res.arrayBuffer()) };
}

// Runs `fn` with the environment variables of `vars` set, for the relays it starts.
async function withEnv(vars, fn) {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  Object.assign(process.env, vars);
  try {
    return await fn();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

// Runs `fn(relay, client)` against a relay of its own, configured with `config` over GUARDED and started with the
// environment variables of `env`, and stops it.
async function withRelay(config, fn, env = {}) {
  const r = await withEnv(env, () => startRelay({ config: { ...GUARDED, ...config } }));
  const c = await rawClient(r.url);
  try {
    return await fn(r, c);
  } finally {
    c.close();
    await r.cleanup();
  }
}

const refused = (r, reason) => r.metric('pfpcache_image_refused_total', { reason });

// What libvips sees in a response body.
function inspectBody(body) {
  const path = join(fixtures, `out-${createHash('sha256').update(body).digest('hex')}`);
  writeFileSync(path, body);
  return inspect(path);
}

// Requests the picture of a profile naming /f/`file`: it must be refused for `reason` (307 to the source, the
// reason counted once), then remembered: asked again, it is answered from the record, with no new download.
async function assertRefusedAndRemembered(r, c, file, reason) {
  const url = `${images.url}/f/${file}?${reason}-${r.url}`;
  const path = `/f/${file}`;
  const before = await refused(r, reason);
  const hits = images.hits.get(path) ?? 0;
  const u = await profile(url, c);
  const first = await getPic(r, u.pubkey);
  assert.equal(first.res.status, 307, first.body.toString());
  assert.equal(first.res.headers.get('location'), url);
  assert.equal(await refused(r, reason), before + 1, `refused for ${reason}`);
  const negative = await r.metric('pfpcache_picture_requests_total', { result: 'negative' });
  const again = await getPic(r, u.pubkey);
  assert.equal(again.res.status, 307);
  assert.equal(await r.metric('pfpcache_picture_requests_total', { result: 'negative' }), negative + 1);
  assert.equal(images.hits.get(path), hits + 1, 'downloaded once');
  assert.equal((await fetch(`${r.url}/health`)).status, 200);
}

test('AVIF and HEIF are decoded even when VIPSHOME points libvips away from its modules', async () => {
  // libvips looks for its loadable modules (HEIF among them) under VIPSHOME, and so misses them here.
  await withRelay(
    {},
    async (r, c) => {
      for (const file of ['image.avif', 'image.heic']) {
        const u = await profile(`${images.url}/f/${file}?vipshome`, c);
        const { res, body } = await getPic(r, u.pubkey);
        assert.equal(res.status, 200, `${file}: ${body}`);
        assert.equal(res.headers.get('content-type'), 'image/jpeg');
        const seen = inspectBody(body);
        assert.deepEqual([seen.format, seen.width, seen.height], ['jpeg', 200, 200], file);
      }
    },
    { VIPSHOME: fixtures },
  );
});

test('a relay whose libvips cannot load AVIF and HEIF at all refuses to start, and says why', async () => {
  // A copy of libvips with no modules beside it, and VIPSHOME pointing there too: nowhere to find vips-heif.
  const dir = await tempDir();
  try {
    const lib = join(dir, 'lib');
    await mkdir(lib);
    const [, name, path] = /^\s*(libvips\.so\S*) => (\S+)/m.exec(execFileSync('ldd', [BIN], { encoding: 'utf8' }));
    copyFileSync(realpathSync(path), join(lib, name));
    const config = join(dir, 'config.json');
    await writeFile(config, JSON.stringify(testConfig(dir, GUARDED)));
    const r = await withEnv({ LD_LIBRARY_PATH: lib, VIPSHOME: lib }, () => runBinary(['--config', config]));
    assert.notEqual(r.code, 0, r.stderr);
    assert.match(r.stderr, /libvips \S+ has no heifload_buffer, which the accepted formats need/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('an AVIF whose ispe box claims 100000 x 100000 is refused from its header, and remembered', async () => {
  await assertRefusedAndRemembered(relay, client, 'bomb.avif', 'pixels');
});

test('a 33 KB JPEG of 2,080 arithmetic-coded scans at 7071 x 7071 is refused before decoding, and remembered', async () => {
  await assertRefusedAndRemembered(relay, client, 'scans.jpg', 'scans');
});

test('a PNG whose image data runs on for 2 GiB past its last row is refused, and remembered', async () => {
  await assertRefusedAndRemembered(relay, client, 'trailing.png', 'trailing_data');
});

test('a progressive JPEG and a 49-megapixel PNG, as encoders write them, are accepted', async () => {
  for (const file of ['progressive.jpg', 'slow.png']) {
    const u = await profile(`${images.url}/f/${file}?accepted`);
    const { res, body } = await getPic(relay, u.pubkey);
    assert.equal(res.status, 200, `${file}: ${body}`);
    assert.equal(inspectBody(body).width, 200, file);
  }
});

test('a picture not done within image_timeout_ms is refused, and remembered', async () => {
  // slow.png takes about half a second to decode and resize; each strip of it checks the deadline.
  await withRelay({ image_timeout_ms: 100 }, async (r, c) => {
    await assertRefusedAndRemembered(r, c, 'slow.png', 'timeout');
    const u = await profile(`${images.url}/f/small.jpg?quick`, c);
    assert.equal((await getPic(r, u.pubkey)).res.status, 200, 'a small picture is done in time');
  });
});

test('a picture whose decoder alone would need more than image_memory_mb is refused; smaller ones pass', async () => {
  // A progressive JPEG's decoder keeps every coefficient: 3000 x 2000 x 3 x 2 bytes, some 36 MB.
  await withRelay({ image_memory_mb: 16 }, async (r, c) => {
    await assertRefusedAndRemembered(r, c, 'progressive.jpg', 'memory');
    const u = await profile(`${images.url}/f/big.jpg?memory`, c);
    assert.equal((await getPic(r, u.pubkey)).res.status, 200, 'a baseline JPEG decodes a band of rows at a time');
  });
});

test('hostile pictures fetched ahead are refused in the background while an unrelated picture is served', async () => {
  await withRelay({ precache_on_metadata: true, image_threads: 2 }, async (r, c) => {
    // Published only, never requested: each is fetched ahead as its kind 0 is stored.
    const hostile = { 'scans.jpg': 'scans', 'trailing.png': 'trailing_data', 'bomb.avif': 'pixels' };
    const users = {};
    for (const file of Object.keys(hostile)) users[file] = await profile(`${images.url}/f/${file}?ahead`, c);
    const bystander = await profile(`${images.url}/f/small.jpg?bystander`, c);
    const { res } = await getPic(r, bystander.pubkey);
    assert.equal(res.status, 200);
    for (const reason of Object.values(hostile)) {
      await r.waitFor(async () => (await refused(r, reason)) === 1, `a refusal for ${reason}`, 20000);
    }
    for (const [file, u] of Object.entries(users)) {
      assert.equal((await getPic(r, u.pubkey)).res.status, 307, `${file} is remembered`);
      assert.equal(images.hits.get(`/f/${file}`) >= 1, true);
    }
    assert.equal((await fetch(`${r.url}/health`)).status, 200);
  });
});

function assertUnmisreadable(res, what) {
  assert.equal(res.headers.get('x-content-type-options'), 'nosniff', what);
  assert.equal(res.headers.get('content-security-policy'), "default-src 'none'", what);
}

test("every picture answer carries X-Content-Type-Options: nosniff and Content-Security-Policy: default-src 'none'", async () => {
  const u = await profile(`${images.url}/f/small.jpg?headers`);
  const miss = await getPic(relay, u.pubkey);
  assert.equal(miss.res.headers.get('x-cache'), 'MISS');
  assertUnmisreadable(miss.res, '200 MISS');
  const hit = await getPic(relay, u.pubkey);
  assert.equal(hit.res.headers.get('x-cache'), 'HIT');
  assertUnmisreadable(hit.res, '200 HIT');
  const notModified = await getPic(relay, u.pubkey, { headers: { 'If-None-Match': hit.res.headers.get('etag') } });
  assert.equal(notModified.res.status, 304);
  assertUnmisreadable(notModified.res, '304');
  const head = await getPic(relay, u.pubkey, { method: 'HEAD' });
  assertUnmisreadable(head.res, 'HEAD');
  const bad = await profile(`${images.url}/f/random.bin?headers`);
  const redirect = await getPic(relay, bad.pubkey);
  assert.equal(redirect.res.status, 307);
  assertUnmisreadable(redirect.res, '307');
  const remembered = await getPic(relay, bad.pubkey);
  assertUnmisreadable(remembered.res, '307 from the record');
  const missing = await getPic(relay, newUser().pubkey);
  assert.equal(missing.res.status, 404);
  assertUnmisreadable(missing.res, '404');
  const invalid = await getPic(relay, 'not-a-key');
  assert.equal(invalid.res.status, 400);
  assertUnmisreadable(invalid.res, '400');
});

test('with resize_images false, a JPEG followed by a ZIP is served as the JPEG alone; other originals byte for byte', async () => {
  await withRelay({ resize_images: false }, async (r, c) => {
    const polyglot = readFileSync(join(fixtures, 'polyglot.jpg'));
    const zipAt = polyglot.indexOf(Buffer.from('PK\x03\x04', 'latin1'));
    assert.ok(zipAt > 0 && polyglot.includes(Buffer.from('PK\x05\x06', 'latin1')), 'the fixture is a JPEG and a ZIP');
    const u = await profile(`${images.url}/f/polyglot.jpg?original`, c);
    const { res, body } = await getPic(r, u.pubkey);
    assert.equal(res.status, 200, body.toString());
    assert.equal(res.headers.get('content-type'), 'image/jpeg');
    assertUnmisreadable(res, 'the original');
    assert.deepEqual(body, polyglot.subarray(0, zipAt), 'the JPEG up to its end marker');
    assert.ok(!body.includes(Buffer.from('PK', 'latin1')), 'nothing of the archive');

    for (const file of ['small.jpg', 'alpha.png', 'anim.gif', 'image.webp', 'image.avif', 'image.heic']) {
      const v = await profile(`${images.url}/f/${file}?original`, c);
      const got = await getPic(r, v.pubkey);
      assert.equal(got.res.status, 200, `${file}: ${got.body}`);
      assert.deepEqual(got.body, readFileSync(join(fixtures, file)), file);
    }
  });
});
