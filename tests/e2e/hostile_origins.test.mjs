// hostile_origins.test.mjs -- what origins and profiles an attacker controls cannot do to the download slots:
// origins that accept and never answer, one host taking every slot, background work taking those kept for
// pictures someone waits for, a response longer than its Content-Length poisoning the next download from the
// same origin; and picture URLs checked before they are cut, data: pictures bounded by their bytes.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { inspect, serveFixtures, stopFixtures } from './lib/images.mjs';
import { newUser, now, publishRaw, rawClient } from './lib/nostr.mjs';
import { startRelay } from './lib/relay.mjs';

let fixtures, images;

// The image server is on loopback, which these relays may reach; nothing else private is allowed.
const GUARDED = { allowed_source_addresses: ['127.0.0.1'], precache_on_metadata: false };
// Long enough that no stalled download ends by itself while a test looks at it.
const PATIENT = { download_timeout_seconds: 60, download_min_speed_seconds: 60 };
// A bound on waiting for an unrelated picture, well below PATIENT's timeout.
const DEADLINE_MS = 20000;

before(async () => ({ fixtures, images } = await serveFixtures()));

after(() => stopFixtures({ fixtures, images }));

// `n` origins on 127.0.0.1 that accept connections and never answer. open() counts the connections they hold.
async function startStalls(n) {
  const sockets = new Set();
  const servers = await Promise.all(
    Array.from({ length: n }, () => new Promise((resolve, reject) => {
      const server = createServer((socket) => {
        sockets.add(socket);
        socket.on('error', () => {});
        socket.on('close', () => sockets.delete(socket));
      });
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve(server));
    })),
  );
  return {
    urls: servers.map((s, i) => `http://127.0.0.1:${s.address().port}/stall${i}.jpg`),
    open: () => sockets.size,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    },
  };
}

// A user whose kind 0 names `picture`, published through `client`.
async function profile(client, picture) {
  const user = newUser();
  const content = JSON.stringify({ name: 'someone', picture });
  const ok = await publishRaw(client, user.sign({ kind: 0, created_at: now(), content }));
  assert.equal(ok[2], true, ok[3]);
  return user;
}

async function getPic(relay, pubkey, options = {}) {
  const res = await fetch(`${relay.url}/profile-pic/${pubkey}`, { redirect: 'manual', ...options });
  return { res, body: Buffer.from(await res.arrayBuffer()) };
}

// Runs `fn` with a test server, closed afterwards whatever happens.
async function using(server, fn) {
  try {
    await fn(server);
  } finally {
    await server.close();
  }
}

// A relay, a client publishing to it, and the cleanup of both.
async function withRelay(config, fn) {
  const relay = await startRelay({ config: { ...GUARDED, ...config } });
  const client = await rawClient(relay.url);
  try {
    await fn(relay, client);
  } finally {
    client.close();
    await relay.cleanup();
  }
}

// Requests the picture of each URL at once, and resolves once the relay has taken every request up.
async function requestAll(relay, client, urls) {
  const users = [];
  for (const url of urls) users.push(await profile(client, url));
  const before = await relay.metric('pfpcache_picture_requests_total', { result: 'miss' });
  const answers = users.map((u) => getPic(relay, u.pubkey).catch((e) => ({ error: e })));
  await relay.waitFor(
    async () => (await relay.metric('pfpcache_picture_requests_total', { result: 'miss' })) - before === urls.length,
    'every request taken up',
  );
  return answers;
}

// The picture of an unrelated profile, from the image server under another host name than 127.0.0.1.
async function unrelatedPicture(relay, client, name = 'small.jpg') {
  const u = await profile(client, `http://localhost:${images.port}/f/${name}?${Math.random()}`);
  return getPic(relay, u.pubkey, { signal: AbortSignal.timeout(DEADLINE_MS) });
}

test('twenty origins on one host that never answer hold max_downloads_per_host slots, and other pictures go ahead', async () => {
  await using(await startStalls(20), (stalls) =>
    withRelay(PATIENT, async (relay, client) => {
      const answers = await requestAll(relay, client, stalls.urls);
      const { res } = await unrelatedPicture(relay, client);
      assert.equal(res.status, 200);
      assert.equal(stalls.open(), 4, 'the stalled downloads are still under way, four of them');
      const m = await relay.metrics();
      assert.equal(m.get('pfpcache_download_slots', { limit: 'per_host' }), 4);
      assert.equal(m.get('pfpcache_downloads_busiest_host'), 4);
      assert.equal(m.get('pfpcache_downloads_running', { class: 'interactive' }), 4);
      assert.equal(m.get('pfpcache_downloads_queued', { class: 'interactive' }), 16);
      assert.ok(m.get('pfpcache_download_host_waits_total') >= 16);
      await stalls.close();
      for (const a of await Promise.all(answers)) assert.equal(a.res.status, 307);
    }));
});

test('origins that accept and never answer are cut at the minimum speed, so twenty hosts do not hold every slot', async () => {
  // As many downloads per host as there are stalls: as if each were a host of its own.
  const config = { ...PATIENT, download_min_speed_seconds: 1, max_downloads_per_host: 20 };
  await using(await startStalls(20), (stalls) =>
    withRelay(config, async (relay, client) => {
      const answers = await requestAll(relay, client, stalls.urls);
      const { res } = await unrelatedPicture(relay, client);
      assert.equal(res.status, 200);
      for (const a of await Promise.all(answers)) assert.equal(a.res.status, 307);
      const m = await relay.metrics();
      assert.equal(m.get('pfpcache_download_failures_total', { reason: 'too_slow' }), 20);
      assert.equal(m.get('pfpcache_download_failures_total', { reason: 'timeout' }), 0);
    }));
});

test('background work holds at most its share of the slots, so a picture someone waits for finds one free', async () => {
  const config = { ...PATIENT, precache_on_metadata: true, max_concurrent: 4, max_downloads_per_host: 10 };
  await using(await startStalls(6), (stalls) =>
    withRelay(config, async (relay, client) => {
      // Published, never requested: their pictures are fetched ahead, in the background.
      for (const url of stalls.urls) await profile(client, url);
      await relay.waitFor(
        async () => (await relay.metric('pfpcache_downloads_queued', { class: 'background' })) > 0,
        'background downloads waiting for a slot',
      );
      const { res } = await unrelatedPicture(relay, client);
      assert.equal(res.status, 200);
      const m = await relay.metrics();
      assert.equal(m.get('pfpcache_download_slots', { limit: 'background' }), 2);
      assert.equal(m.get('pfpcache_downloads_running', { class: 'background' }), 2);
      assert.equal(stalls.open(), 2);
    }));
});

// One origin on 127.0.0.1 over raw sockets, answering every request on a kept-alive connection with small.jpg,
// except /overlong, whose answer is followed, when the test says so, by a second one nobody asked for (alpha.png),
// and /missing, a 404 with a body. It counts the connections it was given.
async function startLiar() {
  const answer = (status, type, body) =>
    Buffer.concat([Buffer.from(`HTTP/1.1 ${status}\r\nContent-Type: ${type}\r\nContent-Length: ${body.length}\r\n\r\n`), body]);
  const small = answer('200 OK', 'image/jpeg', readFileSync(join(fixtures, 'small.jpg')));
  const smuggled = answer('200 OK', 'image/png', readFileSync(join(fixtures, 'alpha.png')));
  const missing = answer('404 Not Found', 'text/plain', Buffer.from('not here\n'));
  let connections = 0;
  let overlong = null;
  const sockets = new Set();
  const server = createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    let head = '';
    socket.on('data', (chunk) => {
      head += chunk.toString('latin1');
      let end;
      while ((end = head.indexOf('\r\n\r\n')) >= 0) {
        const path = head.slice(0, end).split(' ')[1];
        head = head.slice(end + 4);
        if (path === '/missing') socket.write(missing);
        else socket.write(small);
        if (path === '/overlong') overlong = socket;
      }
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    connections: () => connections,
    // Writes the answer nobody asked for on the connection of /overlong; resolves once the kernel has it.
    smuggle: () => new Promise((resolve) => overlong.write(smuggled, resolve)),
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(r));
    },
  };
}

function dimensions(body) {
  const path = join(fixtures, `out-${createHash('sha256').update(body).digest('hex')}`);
  writeFileSync(path, body);
  const s = inspect(path);
  return [s.width, s.height];
}

test('a response longer than its Content-Length does not poison the next download from the same origin', async () => {
  await using(await startLiar(), (liar) =>
    withRelay({}, async (relay, client) => {
      const first = await profile(client, `${liar.url}/overlong`);
      assert.equal((await getPic(relay, first.pubkey)).res.status, 200);
      await liar.smuggle();
      const second = await profile(client, `${liar.url}/next.jpg`);
      const { res, body } = await getPic(relay, second.pubkey);
      assert.equal(res.status, 200);
      assert.deepEqual(dimensions(body), [64, 64], 'small.jpg as asked, not the smuggled alpha.png');
      assert.equal(liar.connections(), 2, 'the second download came over a connection of its own');
      assert.equal(await relay.metric('pfpcache_download_connections_closed_total'), 1);
    }));
});

test('a failed download does not leave its connection for the next download from the same origin', async () => {
  await using(await startLiar(), (liar) =>
    withRelay({}, async (relay, client) => {
      const broken = await profile(client, `${liar.url}/missing`);
      assert.equal((await getPic(relay, broken.pubkey)).res.status, 307);
      const next = await profile(client, `${liar.url}/next.jpg`);
      assert.equal((await getPic(relay, next.pubkey)).res.status, 200);
      assert.equal(liar.connections(), 2);
      assert.equal(await relay.metric('pfpcache_download_connections_closed_total'), 1);
    }));
});

test('a picture URL longer than 4096 bytes is refused with its reason, not cut and fetched', async () => {
  await withRelay({}, async (relay, client) => {
    const u = await profile(client, `${images.url}/f/long.jpg?${'a'.repeat(100 * 1024)}`);
    const { res, body } = await getPic(relay, u.pubkey);
    assert.equal(res.status, 404);
    assert.match(JSON.parse(body).error, /picture URL is longer than 4096 bytes/);
    assert.equal(images.hits.get('/f/long.jpg'), undefined, 'nothing was fetched');
    assert.equal(await relay.metric('pfpcache_downloads_total'), 0);
  });
});

// A JPEG of about 50 KB: small.jpg with a comment segment of 48,000 bytes after its start marker.
function fiftyKilobyteJpeg() {
  const small = readFileSync(join(fixtures, 'small.jpg'));
  const comment = Buffer.alloc(4 + 48000, 0x20);
  comment.writeUInt16BE(0xfffe, 0);
  comment.writeUInt16BE(48002, 2);
  return Buffer.concat([small.subarray(0, 2), comment, small.subarray(2)]);
}

test('a data: picture of 50 KB is served, and its bytes are one picture however its URI is written', async () => {
  const jpeg = fiftyKilobyteJpeg();
  assert.ok(jpeg.length > 49000);
  await withRelay({}, async (relay, client) => {
    const a = await profile(client, `data:image/jpeg;base64,${jpeg.toString('base64')}`);
    const b = await profile(client, `DATA:image/png;BASE64,${jpeg.toString('base64').replace(/=+$/, '')}`);
    const ra = await getPic(relay, a.pubkey);
    assert.equal(ra.res.status, 200, ra.body.toString());
    assert.deepEqual(dimensions(ra.body), [64, 64]);
    const rb = await getPic(relay, b.pubkey);
    assert.equal(rb.res.status, 200);
    assert.equal(rb.res.headers.get('etag'), ra.res.headers.get('etag'));
    assert.equal(await relay.metric('pfpcache_downloads_total'), 1, 'the second was the first picture again');
  });
});

test('a data: picture larger than max_source_bytes is refused with its reason', async () => {
  const jpeg = fiftyKilobyteJpeg();
  await withRelay({ max_source_bytes: 40000 }, async (relay, client) => {
    const u = await profile(client, `data:image/jpeg;base64,${jpeg.toString('base64')}`);
    const { res, body } = await getPic(relay, u.pubkey);
    assert.equal(res.status, 404);
    assert.match(JSON.parse(body).error, /data: picture is larger than max_source_bytes/);
    assert.equal(await relay.metric('pfpcache_downloads_total'), 0);
  });
});
