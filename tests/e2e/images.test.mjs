// images.test.mjs -- the test image generator and the misbehaving image origin that other
// end-to-end tests rely on: if these are wrong, failures elsewhere would mislead.
import assert from 'node:assert/strict';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { inspect, makeFixtures, startImageServer } from './lib/images.mjs';
import { tempDir } from './lib/relay.mjs';

let dir;
let server;

before(async () => {
  dir = makeFixtures(await tempDir());
  server = await startImageServer(dir);
});

after(async () => {
  await server?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const fixture = (name) => inspect(join(dir, name));

test('big.jpg is a 3000x2000 sRGB JPEG', () => {
  const info = fixture('big.jpg');
  assert.equal(info.format, 'jpeg');
  assert.equal(info.width, 3000);
  assert.equal(info.height, 2000);
  assert.equal(info.bands, 3);
  assert.equal(info.interpretation, 'srgb');
});

test('small.jpg is 64x64', () => {
  const info = fixture('small.jpg');
  assert.equal(info.width, 64);
  assert.equal(info.height, 64);
});

test('alpha.png is transparent on the left and opaque blue on the right', () => {
  const info = fixture('alpha.png');
  assert.equal(info.format, 'png');
  assert.equal(info.bands, 4);
  assert.equal(info.left[3], 0);
  assert.deepEqual(info.right, [0, 0, 255, 255]);
});

test('cmyk.jpg reads back as four-band CMYK red', () => {
  const info = fixture('cmyk.jpg');
  assert.equal(info.interpretation, 'cmyk');
  assert.equal(info.bands, 4);
  assert.deepEqual(info.center, [0, 255, 255, 0]);
});

test('rotated.jpg stores 400x200 landscape pixels with EXIF orientation 6', () => {
  const info = fixture('rotated.jpg');
  assert.equal(info.orientation, 6);
  assert.equal(info.width, 400);
  assert.equal(info.height, 200);
  assert.deepEqual(info.left, [0, 0, 0]);
  assert.deepEqual(info.right, [255, 255, 255]);
});

test('anim.gif has three 120 pixel wide pages', () => {
  const info = fixture('anim.gif');
  assert.equal(info.format, 'gif');
  assert.equal(info.pages, 3);
  assert.equal(info.width, 120);
  assert.equal(info.height, 120);
});

test('image.webp is 300x300 and image.avif is a 256x256 HEIF', () => {
  const webp = fixture('image.webp');
  assert.equal(webp.format, 'webp');
  assert.equal(webp.width, 300);
  assert.equal(webp.height, 300);
  const avif = fixture('image.avif');
  assert.equal(avif.format, 'heif');
  assert.equal(avif.width, 256);
  assert.equal(avif.height, 256);
});

test('huge.png claims 50000x50000 and is inspected from its header alone', () => {
  const info = fixture('huge.png');
  assert.equal(info.format, 'png');
  assert.equal(info.width, 50000);
  assert.equal(info.height, 50000);
  assert.equal(info.center, null);
});

test('inspecting a truncated JPEG or random bytes fails cleanly', () => {
  // A truncated JPEG may load with a warning or fail; either way the tool must exit, not crash.
  try {
    assert.equal(fixture('truncated.jpg').width, 600);
  } catch (err) {
    assert.equal(err.status, 1, String(err.stderr));
  }
  assert.throws(
    () => fixture('random.bin'),
    (err) => err.status === 1 && err.signal === null,
  );
});

test('/f/ serves fixture bytes with a type from the extension, and 404 for unknown names', async () => {
  const res = await fetch(`${server.url}/f/small.jpg`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'image/jpeg');
  assert.deepEqual(Buffer.from(await res.arrayBuffer()), await readFile(join(dir, 'small.jpg')));

  const missing = await fetch(`${server.url}/f/nothing.jpg`);
  await missing.arrayBuffer();
  assert.equal(missing.status, 404);
});

test('random.bin is served as image/png', async () => {
  const res = await fetch(`${server.url}/f/random.bin`);
  assert.equal(res.headers.get('content-type'), 'image/png');
  assert.equal((await res.arrayBuffer()).byteLength, 20000);
});

test('a redirect chain ends at the fixture and counts every hop', async () => {
  const before = server.total();
  const res = await fetch(`${server.url}/redirect/2/small.jpg`);
  assert.equal(res.status, 200);
  assert.deepEqual(Buffer.from(await res.arrayBuffer()), await readFile(join(dir, 'small.jpg')));
  assert.equal(server.total() - before, 3);
  assert.equal(server.hits.get('/redirect/2/small.jpg'), 1);
  assert.equal(server.hits.get('/redirect/1/small.jpg'), 1);

  const hop = await fetch(`${server.url}/redirect/6/small.jpg`, { redirect: 'manual' });
  assert.equal(hop.status, 302);
  assert.equal(hop.headers.get('location'), '/redirect/5/small.jpg');
  const away = await fetch(`${server.url}/to/10.0.0.1:8080/a/b.jpg`, { redirect: 'manual' });
  assert.equal(away.headers.get('location'), 'http://10.0.0.1:8080/a/b.jpg');
});

test('/status/503 answers 503', async () => {
  const res = await fetch(`${server.url}/status/503`);
  await res.text();
  assert.equal(res.status, 503);
});

test('/endless keeps streaming until the client aborts', async () => {
  const ac = new AbortController();
  const res = await fetch(`${server.url}/endless`, { signal: ac.signal });
  assert.equal(res.headers.get('content-type'), 'image/jpeg');
  assert.equal(res.headers.get('content-length'), null);
  const reader = res.body.getReader();
  let received = 0;
  let first;
  while (received <= 1024 * 1024) {
    const { value } = await reader.read();
    first ??= value;
    received += value.length;
  }
  assert.deepEqual([...first.subarray(0, 3)], [0xff, 0xd8, 0xff]);
  ac.abort();
  await assert.rejects(reader.read(), { name: 'AbortError' });
});

test('/trickle sends the start of a JPEG and then stalls', async () => {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), 1500);
  const res = await fetch(`${server.url}/trickle`, { signal: ac.signal });
  const reader = res.body.getReader();
  const chunks = [];
  await assert.rejects(async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      chunks.push(...value);
    }
  }, { name: 'AbortError' });
  clearTimeout(timer);
  assert.deepEqual(chunks.slice(0, 3), [0xff, 0xd8, 0xff]);
  // One byte a second: in 1.5 s at most one more byte follows the first three.
  assert.ok(chunks.length <= 4, `received ${chunks.length} bytes`);
});

test('/liar sends far more than its Content-Length and the server survives the hang-up', async () => {
  const res = await fetch(`${server.url}/liar`);
  assert.equal(res.headers.get('content-length'), '1000');
  assert.equal((await res.arrayBuffer()).byteLength, 1000);
  const again = await fetch(`${server.url}/status/200`);
  assert.equal(await again.text(), 'status 200\n');
});
