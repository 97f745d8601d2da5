// cache.test.mjs -- purging (one pubkey, the pictures, everything; shared files; during a burst of reads),
// least-recently-served eviction under max_cache_size_mb, across a restart, and a full disk.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, statSync, statfsSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { makeNoise, serveFixtures, stopFixtures } from './lib/images.mjs';
import { newUser, publishRaw, rawClient } from './lib/nostr.mjs';
import { startRelay, tempDir, until } from './lib/relay.mjs';

const NOISE = 300;
let fixtures, images;

const GUARDED = { allowed_source_addresses: ['127.0.0.1'], precache_on_metadata: false };

before(async () => ({ fixtures, images } = await serveFixtures((dir) => makeNoise(dir, NOISE))));

after(() => stopFixtures({ fixtures, images }));

const sha256 = (b) => createHash('sha256').update(b).digest('hex');

async function profiles(relay, pictures) {
  const c = await rawClient(relay.url);
  const users = [];
  for (const picture of pictures) {
    const u = newUser();
    assert.equal((await publishRaw(c, u.sign({ kind: 0, content: JSON.stringify({ picture }) })))[2], true);
    users.push(u);
  }
  c.close();
  return users;
}

async function getPic(relay, pubkey) {
  const res = await fetch(`${relay.url}/profile-pic/${pubkey}`, { redirect: 'manual' });
  const body = Buffer.from(await res.arrayBuffer());
  return { status: res.status, cache: res.headers.get('x-cache'), etag: res.headers.get('etag'), body };
}

async function purge(relay, path, method = 'POST') {
  const res = await fetch(`${relay.url}${path}`, { method });
  return { status: res.status, json: await res.json() };
}

// The picture files under the media directory, and their total size (a file evicted meanwhile counts for nothing).
function mediaFiles(relay) {
  const dir = join(relay.dir, 'media');
  const sizes = readdirSync(dir, { recursive: true })
    .map(String)
    .filter((f) => /[0-9a-f]{64}$/.test(f))
    .map((f) => statSync(join(dir, f), { throwIfNoEntry: false })?.size)
    .filter((size) => size !== undefined);
  return { count: sizes.length, bytes: sizes.reduce((n, size) => n + size, 0) };
}

test('purging one pubkey, the pictures or everything removes records and files, and says so', async () => {
  const relay = await startRelay({ config: GUARDED });
  try {
    const [a, b, c] = await profiles(relay, [0, 0, 1].map((i) => `${images.url}/f/noise${i}.jpg`));
    const [broken] = await profiles(relay, [`${images.url}/status/500`]);
    for (const u of [a, b, c]) assert.equal((await getPic(relay, u.pubkey)).status, 200);
    assert.equal((await getPic(relay, broken.pubkey)).status, 307);
    // Each picture is a master and the two answers the seed's URL gets (JPEG, and WebP for browsers), made with it.
    assert.equal(mediaFiles(relay).count, 6, 'a and b share one master and its variants');

    // The seed's response; a file shared with another pubkey stays until its last user goes.
    const one = await purge(relay, `/purge-profile-pic/${a.pubkey}`);
    assert.equal(one.status, 200);
    assert.deepEqual([one.json.status, one.json.message], ['success', `Profile picture for ${a.pubkey} purged successfully`]);
    assert.equal(mediaFiles(relay).count, 6);
    assert.equal((await getPic(relay, b.pubkey)).cache, 'HIT');
    assert.equal((await purge(relay, `/purge-profile-pic/${b.pubkey}`, 'DELETE')).status, 200);
    assert.equal(mediaFiles(relay).count, 3, 'the master went with its variants');
    const none = await purge(relay, `/purge-profile-pic/${b.pubkey}`);
    assert.equal(none.status, 404);
    assert.equal(none.json.error, 'nothing is cached for this pubkey');
    assert.equal((await purge(relay, '/purge-profile-pic/nope')).status, 400);
    assert.equal((await getPic(relay, a.pubkey)).cache, 'MISS', 'a purged pubkey is fetched again');

    // Only the pictures: the remembered failure stays (no new download of the broken source).
    const hitsBefore = images.hits.get('/status/500');
    const pics = await purge(relay, '/purge-cache/profile-pics');
    assert.deepEqual([pics.status, pics.json.message], [200, 'Profile picture cache purged successfully']);
    assert.deepEqual([pics.json.pictures, pics.json.files], [2, 6]);
    assert.equal(mediaFiles(relay).count, 0);
    assert.equal((await getPic(relay, broken.pubkey)).status, 307);
    assert.equal(images.hits.get('/status/500'), hitsBefore);

    // Everything, by DELETE as the seed program allowed: the failure is forgotten too.
    assert.equal((await getPic(relay, c.pubkey)).cache, 'MISS');
    const all = await purge(relay, '/purge-cache/all', 'DELETE');
    assert.deepEqual([all.status, all.json.status, all.json.message], [200, 'success', 'All cached media purged successfully']);
    assert.equal(mediaFiles(relay).count, 0);
    assert.equal((await getPic(relay, broken.pubkey)).status, 307);
    assert.equal(images.hits.get('/status/500'), hitsBefore + 1);
    assert.equal((await fetch(`${relay.url}/purge-cache/all`)).status, 405);
  } finally {
    await relay.cleanup();
  }
});

test('a purge during a burst of reads never serves a partial picture or an error', async () => {
  const relay = await startRelay({ config: { ...GUARDED, memory_cache_mb: 0 } });
  try {
    const users = await profiles(relay, Array.from({ length: 40 }, (_, i) => `${images.url}/f/noise${i}.jpg`));
    for (const u of users) assert.equal((await getPic(relay, u.pubkey)).status, 200);
    let purged = 0;
    const reads = [];
    for (let round = 0; round < 10; round++) {
      for (const u of users) reads.push(getPic(relay, u.pubkey));
      if (round % 3 === 1) purged += (await purge(relay, round === 4 ? '/purge-cache/all' : '/purge-cache/profile-pics')).status === 200;
      await new Promise((r) => setTimeout(r, 5));
    }
    const answers = await Promise.all(reads);
    assert.equal(purged, 3);
    for (const a of answers) {
      assert.equal(a.status, 200);
      assert.equal(a.etag, `"${sha256(a.body)}"`, 'every body is the whole picture its ETag names');
    }
    assert.ok(answers.some((a) => a.cache === 'MISS') && answers.some((a) => a.cache === 'HIT'));
  } finally {
    await relay.cleanup();
  }
});

// Writes are committed a moment after the answer, eviction follows the commit that crosses the limit and goes on in
// chunks after the files fit: waits (up to 2 s) for every write committed, no eviction under way and the files within.
async function settlesWithin(relay, limit, what) {
  const settled = async () => {
    const { cache } = await relay.stats();
    return cache.writes_pending === 0 && !cache.evicting && mediaFiles(relay).bytes <= limit;
  };
  await until(settled, Boolean, {
    what: `the files within ${limit} bytes ${what}, every write committed and no eviction under way`,
    timeoutMs: 2000,
    intervalMs: 10,
  });
}

test('LRU: the cache stays under max_cache_size_mb, recently served pictures stay, and recency survives a restart', async () => {
  const dir = await tempDir();
  // A picture is its master and two variants, some 100 KB of noise: room for about forty.
  const LIMIT = 4 << 20;
  const config = { ...GUARDED, max_cache_size_mb: LIMIT >> 20, lru_low_water_percent: 90 };
  let relay = await startRelay({ dir, config });
  const users = await profiles(relay, Array.from({ length: NOISE }, (_, i) => `${images.url}/f/noise${i}.jpg`));
  const favourites = users.slice(0, 5);
  // Whether a user's picture is cached, from its file: looking does not count as serving it.
  const file = new Map();
  const cached = (u) => statSync(join(dir, 'media', file.get(u).slice(0, 2), file.get(u)), { throwIfNoEntry: false }) !== undefined;
  const serve = async (u) => {
    const r = await getPic(relay, u.pubkey);
    assert.equal(r.status, 200);
    file.set(u, r.etag.slice(1, -1));
    return r;
  };
  try {
    // Every picture once, the favourites again every 20: they are never the least recently served.
    for (let i = 0; i < 200; i++) {
      await serve(users[i]);
      if (i % 20 === 19) for (const f of favourites) await serve(f);
      await settlesWithin(relay, LIMIT, `after ${i + 1} pictures`);
    }
    await relay.waitFor(async () => (await relay.stats()).cache.evicted_files > 0, 'an eviction done');
    assert.ok(favourites.every(cached), 'the favourites stayed');
    assert.ok(!cached(users[100]), 'an old picture was evicted');
    const old = users.slice(5, 200).filter(cached);
    // Between the low-water mark and the limit, less the favourites, by the pictures' own size.
    const { cache } = await relay.stats();
    const per = cache.bytes / cache.pictures;
    const [least, most] = [Math.floor((0.9 * LIMIT) / per) - 5, Math.ceil(LIMIT / per) - 5];
    assert.ok(old.length >= least - 2 && old.length <= most, `${least} to ${most} pictures of ${per | 0} bytes fit: ${old.length}`);

    // The five oldest still cached are served now, then the relay restarts: they must count as recent.
    const recent = old.slice(0, 5);
    for (const u of recent) assert.equal((await serve(u)).cache, 'HIT');
    await relay.stop();
    relay = await startRelay({ dir, config });
    for (let i = 200; i < 220; i++) await serve(users[i]);
    await settlesWithin(relay, LIMIT, 'after the restart');
    assert.ok(recent.every(cached), 'served before the restart, kept');
    assert.ok(favourites.every(cached));
    const gone = old.slice(5).filter((u) => !cached(u)).length;
    assert.ok(gone >= 15, `the least recently served went instead: ${gone} of ${old.length - 5}`);
  } finally {
    await relay.cleanup();
    await rm(dir, { recursive: true, force: true });
  }
});

// Runs `fn(relay, disk)` on a relay whose `sub` directory (media or db) is a tmpfs of `mb` MB, so that the test can
// fill a real disk (CI runs as root). A mount that fails fails the test: it is never skipped. Unmounts after.
async function onSmallDisk(sub, mb, fn) {
  const dir = await tempDir();
  const disk = join(dir, sub);
  mkdirSync(disk, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${mb}m`, 'tmpfs', disk]);
  let relay;
  try {
    relay = await startRelay({ dir, config: GUARDED });
    await fn(relay, disk);
  } finally {
    await relay?.cleanup({ keepDir: true });
    execFileSync('umount', [disk]);
    await rm(dir, { recursive: true, force: true });
  }
}

// Takes every free block of the filesystem under `dir` with a file of its own.
function fillDisk(dir) {
  try {
    writeFileSync(join(dir, 'filler'), Buffer.alloc(statfsSync(dir).bavail * statfsSync(dir).bsize + (1 << 20)));
  } catch (e) {
    assert.equal(e.code, 'ENOSPC');
  }
  assert.equal(statfsSync(dir).bavail, 0);
}

async function batch(relay, users) {
  const res = await fetch(`${relay.url}/batch-cache`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ pubkeys: users.map((u) => u.pubkey) }),
  });
  assert.equal(res.status, 202);
  const { job_id: id } = await res.json();
  return until(async () => (await fetch(`${relay.url}/jobs/${id}`)).json(), (j) => j.state === 'done', {
    what: `job ${id} done`,
    timeoutMs: 30000,
  });
}

test('a full media disk is not a failed download: the least recently served go, down to lru_low_water_percent of what is on disk, and the new pictures are cached', async () => {
  // Thirty pictures of a master and two variants each, some 100 KB of noise, fit.
  await onSmallDisk('media', 4, async (relay, disk) => {
    const old = await profiles(relay, Array.from({ length: 30 }, (_, i) => `${images.url}/f/noise${i}.jpg`));
    for (const u of old) assert.equal((await getPic(relay, u.pubkey)).status, 200);
    await relay.waitFor(async () => (await relay.stats()).cache.pictures === 30, '30 pictures on disk');
    const before = (await relay.stats()).cache.bytes;
    fillDisk(disk);

    const fresh = await profiles(relay, Array.from({ length: 10 }, (_, i) => `${images.url}/f/noise${100 + i}.jpg`));
    const job = await batch(relay, fresh);
    assert.deepEqual([job.cached, job.failed], [10, 0], 'a picture the full disk could not take counted as failed');
    const m = await relay.metrics();
    assert.ok(m.get('pfpcache_cache_disk_full_total') >= 1);
    assert.ok(m.get('pfpcache_cache_disk_full_evictions_total') >= 1);
    // Each eviction went down to 90 % of what was cached then, never to the 1 GiB limit's low-water mark.
    const { cache } = await relay.stats();
    assert.ok(cache.evicted_files >= 3 && cache.bytes < before && cache.bytes >= before / 2, JSON.stringify(cache));
    for (const u of fresh) assert.deepEqual((await getPic(relay, u.pubkey)).status, 200);
    for (const u of fresh) assert.equal((await getPic(relay, u.pubkey)).cache, 'HIT');
    assert.doesNotMatch(relay.stderr, /database_max_size_mb/);
    assert.match(relay.stderr, /the disk of media_cache_path is full/);
  });
});

test('a full disk under the database is not a full database: events are refused with "disk is full", and stored again once there is room', async () => {
  await onSmallDisk('db', 1, async (relay, disk) => {
    const c = await rawClient(relay.url);
    fillDisk(disk);
    const big = (i) => newUser().sign({ kind: 0, content: JSON.stringify({ about: `${i}`.repeat(60000) }) });
    const refused = await publishRaw(c, big(1));
    assert.deepEqual(refused.slice(2), [false, "error: the relay's disk is full"]);
    // Logged by the writer as the client is answered: the line may come a moment after the OK.
    await relay.waitForLog(/the disk of database_path is full/);
    assert.doesNotMatch(relay.stderr, /database_max_size_mb/);
    await rm(join(disk, 'filler'));
    assert.deepEqual((await publishRaw(c, big(2))).slice(2), [true, '']);
    c.close();
  });
});
