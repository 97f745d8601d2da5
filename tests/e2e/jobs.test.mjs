// jobs.test.mjs -- POST /batch-cache, GET /cache-follows and GET /jobs against a local upstream relay and a
// local image server: counts, limits, every refusal, and a job that survives kill -9.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { nip19 } from 'nostr-tools';

import { newUser, publishRaw } from './lib/nostr.mjs';
import { startRelay, tempDir, until } from './lib/relay.mjs';
import { startWorld, worldConfig } from './lib/world.mjs';

let world, images, relay;

before(async () => {
  world = await startWorld();
  ({ images, relay } = world);
});

after(() => world.close());

const upstreamProfile = (picture) => world.upstreamProfile(picture);

async function post(path, body, { headers = {}, base = relay.url } = {}) {
  const res = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, json: await res.json() };
}

async function get(path, base = relay.url) {
  const res = await fetch(`${base}${path}`);
  return { status: res.status, json: await res.json() };
}

// Polls GET /jobs/{id} until the job has ended.
async function finished(id, { base = relay.url, timeoutMs = 30000 } = {}) {
  const job = async () => {
    const { status, json } = await get(`/jobs/${id}`, base);
    assert.equal(status, 200);
    return json;
  };
  return until(job, (json) => json.state === 'done' || json.state === 'failed', { what: `job ${id} finished`, timeoutMs });
}

const picStatus = async (pubkey, base = relay.url) => {
  const res = await fetch(`${base}/profile-pic/${pubkey}`, { redirect: 'manual' });
  await res.arrayBuffer();
  return { status: res.status, cache: res.headers.get('x-cache') };
};

test('a batch of 300 pubkeys is cached, and its job reaches done with each outcome counted', async () => {
  const withPicture = [];
  for (let i = 0; i < 270; i++) withPicture.push(await upstreamProfile(`${images.url}/f/small.jpg?batch=${i}`));
  const noPicture = [];
  for (let i = 0; i < 10; i++) noPicture.push(await upstreamProfile(undefined));
  const unknown = Array.from({ length: 10 }, () => newUser());
  const broken = [];
  for (let i = 0; i < 10; i++) broken.push(await upstreamProfile(`${images.url}/status/500?batch=${i}`));
  // Five are cached before the job runs.
  for (const u of withPicture.slice(0, 5)) assert.equal((await picStatus(u.pubkey)).status, 200);

  const all = [...withPicture, ...noPicture, ...unknown, ...broken];
  // Duplicates, in any spelling, count once.
  const pubkeys = [...all.map((u) => u.pubkey), nip19.npubEncode(all[7].pubkey), all[9].pubkey.toUpperCase()];
  const { status, json } = await post('/batch-cache', { pubkeys });
  assert.equal(status, 202);
  assert.equal(json.message, 'Started caching 300 profile pictures');
  assert.equal(json.count, 300);
  assert.match(json.job_id, /^[0-9a-f]{16}$/);

  const job = await finished(json.job_id);
  assert.deepEqual(
    [job.type, job.state, job.total, job.done, job.cached, job.already_cached, job.not_found, job.failed],
    ['batch', 'done', 300, 300, 265, 5, 20, 10],
  );
  assert.ok(job.created_at <= job.started_at && job.started_at <= job.finished_at);
  for (const u of withPicture) assert.deepEqual(await picStatus(u.pubkey), { status: 200, cache: 'HIT' });
  for (const u of [...noPicture, ...unknown]) assert.equal((await picStatus(u.pubkey)).status, 404);
});

test('POST /batch-cache refuses malformed requests with a precise status and message', async () => {
  const good = newUser().pubkey;
  const cases = [
    ['{"pubkeys": [', {}, 400, /^malformed JSON: /],
    [[good], {}, 400, /must be an object with a "pubkeys" array/],
    [{ keys: [good] }, {}, 400, /must be an object with a "pubkeys" array/],
    [{ pubkeys: good }, {}, 400, /"pubkeys" must be an array/],
    [{ pubkeys: [] }, {}, 400, /"pubkeys" is empty/],
    [{ pubkeys: [good, 42] }, {}, 400, /"pubkeys"\[1\] is not a string/],
    [{ pubkeys: Array.from({ length: 1001 }, () => good) }, {}, 413, /at most 1000 pubkeys per request; got 1001/],
    [{ pubkeys: [good] }, { 'Content-Type': 'text/plain' }, 415, /must be JSON/],
    [{ pubkeys: [good] }, { 'Content-Type': 'application/x-www-form-urlencoded' }, 415, /must be JSON/],
  ];
  for (const [body, headers, status, message] of cases) {
    const r = await post('/batch-cache', body, { headers });
    assert.equal(r.status, status, JSON.stringify(body).slice(0, 80));
    assert.match(r.json.error, message);
  }
  const nsec = 'nsec1vl029mgpspedva04g90vltkh6fvh240zqtv9k0t9af8935ke9laqsnlfe5';
  const bad = await post('/batch-cache', { pubkeys: [good, 'xyz', good.slice(2), nsec] });
  assert.equal(bad.status, 400);
  assert.deepEqual(bad.json.invalid, [1, 2, 3]);
  assert.match(bad.json.error, /3 entries of "pubkeys" are not a public key .*: indexes 1, 2, 3$/);
  assert.ok(!bad.json.error.includes(nsec), 'keys are not echoed');
  const wrongMethod = await get('/batch-cache');
  assert.equal(wrongMethod.status, 405);
  // Nothing was started by any of these.
  const { json } = await get('/jobs?limit=1000');
  assert.ok(json.jobs.every((j) => j.total !== 1));
});

test('GET /cache-follows caches the distinct follows of a contact list, up to limit', async () => {
  const owner = newUser();
  const followed = [];
  for (let i = 0; i < 20; i++) followed.push(await upstreamProfile(`${images.url}/f/small.jpg?follow=${i}`));
  const strangers = Array.from({ length: 980 }, () => newUser().pubkey);
  const pubkeys = [...followed.map((u) => u.pubkey), ...strangers];
  // A 1,000-entry list, with a duplicate, a malformed entry and another tag in between.
  const tags = [...pubkeys.map((p) => ['p', p]), ['p', pubkeys[3]], ['p', 'not-a-key'], ['t', 'nostr']];
  assert.equal((await publishRaw(world.upClient, owner.sign({ kind: 3, tags })))[2], true);

  const first = await get(`/cache-follows/${owner.pubkey}?limit=20`);
  assert.equal(first.status, 202);
  assert.deepEqual(
    [first.json.message, first.json.count, first.json.pubkey],
    ['Started caching profile pictures for 20 follows', 20, owner.pubkey],
  );
  const job = await finished(first.json.job_id);
  assert.deepEqual([job.type, job.total, job.cached, job.pubkey], ['follows', 20, 20, owner.pubkey]);
  for (const u of followed) assert.deepEqual(await picStatus(u.pubkey), { status: 200, cache: 'HIT' });

  // The contact list is stored here now; the default limit is 500, and a larger one takes every distinct follow.
  const byDefault = await get(`/cache-follows/${nip19.npubEncode(owner.pubkey)}`);
  assert.equal(byDefault.json.count, 500);
  const all = await get(`/cache-follows/${owner.pubkey}?limit=5000`);
  assert.equal(all.json.count, 1000);
  const done = await finished(all.json.job_id);
  assert.deepEqual([done.total, done.already_cached, done.not_found], [1000, 20, 980]);
});

test('GET /cache-follows: no contact list is 404, a bad limit or pubkey 400', async () => {
  const nobody = newUser();
  const missing = await get(`/cache-follows/${nobody.pubkey}`);
  assert.equal(missing.status, 404);
  assert.match(missing.json.error, /no contact list \(kind 3\) found/);
  for (const limit of ['0', '5001', 'abc', '-1', '1.5', '']) {
    const r = await get(`/cache-follows/${nobody.pubkey}?limit=${limit}`);
    assert.equal(r.status, 400, `limit=${limit}`);
    assert.equal(r.json.error, 'limit must be an integer from 1 to 5000');
  }
  const bad = await get('/cache-follows/npub1notakey');
  assert.equal(bad.status, 400);
  assert.match(bad.json.error, /^not a public key or a NIP-05 name: /);
});

test('GET /jobs lists jobs newest first; an unknown id is 404, a malformed one 400', async () => {
  const a = await post('/batch-cache', { pubkeys: [newUser().pubkey] });
  const b = await post('/batch-cache', { pubkeys: [newUser().pubkey, newUser().pubkey] });
  await finished(b.json.job_id);
  const { status, json } = await get('/jobs?limit=2');
  assert.equal(status, 200);
  assert.deepEqual(json.jobs.map((j) => j.id), [b.json.job_id, a.json.job_id]);
  assert.deepEqual(Object.keys(json.jobs[0]).sort(), [
    'already_cached', 'cached', 'created_at', 'done', 'failed', 'finished_at', 'id', 'not_found', 'started_at',
    'state', 'total', 'type',
  ]);
  assert.equal((await get('/jobs/0000000000000001')).status, 404);
  assert.equal((await get('/jobs/xyz')).status, 400);
  assert.equal((await get('/jobs?limit=0')).status, 400);
});

test('a job interrupted by kill -9 resumes after the restart and finishes', async () => {
  const dir = await tempDir();
  const users = [];
  for (let i = 0; i < 60; i++) users.push(await upstreamProfile(`${images.url}/slow/150/small.jpg?resume=${i}`));
  let victim = await startRelay({ dir, config: worldConfig(world.upstream, { max_concurrent: 2 }) });
  await victim.waitUpstreamConnected();
  const { json } = await post('/batch-cache', { pubkeys: users.map((u) => u.pubkey) }, { base: victim.url });
  // Let some pictures be cached, then kill it mid-job.
  await victim.waitFor(async () => (await get(`/jobs/${json.job_id}`, victim.url)).json.done >= 5, 'five pubkeys done', 15000);
  victim.proc.kill('SIGKILL');
  await victim.exited;

  victim = await startRelay({ dir, config: worldConfig(world.upstream) });
  try {
    // Unfinished after the kill; the restarted relay takes it up again on its own.
    assert.notEqual((await get(`/jobs/${json.job_id}`, victim.url)).json.state, 'done');
    assert.equal(await victim.metric('pfpcache_jobs_resumed_total'), 1);
    const job = await finished(json.job_id, { base: victim.url });
    assert.equal(job.state, 'done');
    assert.equal(job.done, 60);
    assert.equal(job.cached + job.already_cached, 60);
    for (const u of users) assert.deepEqual(await picStatus(u.pubkey, victim.url), { status: 200, cache: 'HIT' });
  } finally {
    await victim.cleanup();
  }
});

test('SIGTERM during a job leaves the pubkeys in flight undone, not failed: after the restart the job finishes with no failure', async () => {
  const dir = await tempDir();
  const users = [];
  for (let i = 0; i < 40; i++) users.push(await upstreamProfile(`${images.url}/slow/1500/small.jpg?term=${i}`));
  let victim = await startRelay({ dir, config: worldConfig(world.upstream, { max_concurrent: 8 }) });
  await victim.waitUpstreamConnected();
  const { json } = await post('/batch-cache', { pubkeys: users.map((u) => u.pubkey) }, { base: victim.url });
  // Downloads under way, each taking 1.5 s: the job's pubkeys are in flight when the signal comes.
  await victim.waitFor(async () => (await victim.stats()).downloads.started >= 4, 'downloads in flight', 15000);
  assert.equal((await get(`/jobs/${json.job_id}`, victim.url)).json.state, 'running');
  assert.equal((await victim.stop('SIGTERM')).code, 0, victim.stderr);

  victim = await startRelay({ dir, config: worldConfig(world.upstream) });
  try {
    const resumed = (await get(`/jobs/${json.job_id}`, victim.url)).json;
    assert.equal(resumed.failed, 0, 'pubkeys abandoned at the stop were counted as failed');
    assert.ok(resumed.done < 40, `${resumed.done} done before the stop`);
    const job = await finished(json.job_id, { base: victim.url });
    assert.deepEqual([job.state, job.done, job.failed, job.cached + job.already_cached], ['done', 40, 0, 40]);
  } finally {
    await victim.cleanup();
  }
});
