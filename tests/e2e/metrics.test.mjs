// metrics.test.mjs -- GET /metrics parsed as Prometheus text (every family the operator needs, well formed)
// and GET /stats, both moving as pictures, lookups, jobs and failures happen.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { newUser, rawClient, wsUrl } from './lib/nostr.mjs';
import { parseMetrics, until } from './lib/relay.mjs';
import { startWorld } from './lib/world.mjs';

let world, images, upstream, relay;

before(async () => {
  world = await startWorld();
  ({ images, upstream, relay } = world);
});

after(() => world.close());

// GET /metrics, its status and content type checked, parsed.
async function metrics() {
  const res = await fetch(`${relay.url}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
  return parseMetrics(await res.text());
}

const stats = () => relay.stats();

const upstreamProfile = (picture) => world.upstreamProfile(picture);

async function getPic(pubkey) {
  const res = await fetch(`${relay.url}/profile-pic/${pubkey}`, { redirect: 'manual' });
  return { status: res.status, body: Buffer.from(await res.arrayBuffer()) };
}

const FAMILIES = {
  pfpcache_http_requests_total: 'counter',
  pfpcache_picture_requests_total: 'counter',
  pfpcache_picture_served_bytes_total: 'counter',
  pfpcache_upstream_lookups_total: 'counter',
  pfpcache_upstream_lookup_duration_seconds: 'histogram',
  pfpcache_upstream_relay_up: 'gauge',
  pfpcache_upstream_relay_state: 'gauge',
  pfpcache_upstream_relay_connects_total: 'counter',
  pfpcache_upstream_relay_invalid_events_total: 'counter',
  pfpcache_downloads_total: 'counter',
  pfpcache_download_failures_total: 'counter',
  pfpcache_image_processing_seconds: 'histogram',
  pfpcache_cache_pictures: 'gauge',
  pfpcache_cache_bytes: 'gauge',
  pfpcache_cache_evictions_total: 'counter',
  pfpcache_cache_evicted_files_total: 'counter',
  pfpcache_jobs: 'gauge',
  pfpcache_jobs_resumed_total: 'counter',
  pfpcache_relay_connections: 'gauge',
  pfpcache_relay_subscriptions_total: 'counter',
  pfpcache_relay_slow_clients_closed_total: 'counter',
  pfpcache_events_stored_total: 'counter',
};

test('/metrics is well-formed Prometheus text with every family an operator needs', async () => {
  const m = await metrics();
  for (const [name, type] of Object.entries(FAMILIES)) assert.equal(m.families.get(name), type, name);
  for (const [name, type] of m.families) {
    if (type === 'counter') assert.match(name, /_total$/, `counter ${name}`);
    if (type === 'histogram') {
      assert.match(name, /_seconds$/);
      const buckets = m.samples.filter((s) => s.name === `${name}_bucket`);
      assert.ok(buckets.every((b, i) => i === 0 || b.value >= buckets[i - 1].value), `${name} buckets are cumulative`);
      assert.equal(buckets.at(-1).labels.le, '+Inf');
      assert.equal(buckets.at(-1).value, m.get(`${name}_count`));
    }
  }
  for (const reason of ['timeout', 'too_big', 'refused_address', 'bad_image']) {
    assert.ok(m.samples.some((s) => s.name === 'pfpcache_download_failures_total' && s.labels.reason === reason), reason);
  }
  assert.equal(m.get('pfpcache_upstream_relay_up', { relay: wsUrl(upstream.url) }), 1);
  assert.equal(m.get('pfpcache_upstream_relay_state', { relay: wsUrl(upstream.url), state: 'connected' }), 1);
  for (const state of ['queued', 'running', 'done', 'failed']) {
    assert.ok(m.samples.some((s) => s.name === 'pfpcache_jobs' && s.labels.state === state), state);
  }
});

test('counters and /stats move as pictures are fetched, failures happen and jobs run', async () => {
  const before = await metrics();
  const statsBefore = await stats();
  const good = await upstreamProfile(`${images.url}/f/small.jpg?metrics`);
  const bad = await upstreamProfile(`${images.url}/f/random.bin?metrics`);
  const viewer = await rawClient(relay.url);

  const miss = await getPic(good.pubkey);
  const hit = await getPic(good.pubkey);
  assert.deepEqual([miss.status, hit.status], [200, 200]);
  assert.equal((await getPic(bad.pubkey)).status, 307);
  assert.equal((await getPic(newUser().pubkey)).status, 404);
  const job = await (await fetch(`${relay.url}/batch-cache`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ pubkeys: [good.pubkey] }),
  })).json();
  // The job is small: done well within the deadline, or the test fails naming the state it stayed in.
  await until(async () => (await (await fetch(`${relay.url}/jobs/${job.job_id}`)).json()).state, (state) => state === 'done', {
    what: 'the job done',
    intervalMs: 20,
  });

  const after = await metrics();
  const delta = (name, labels) => after.get(name, labels) - before.get(name, labels);
  assert.equal(delta('pfpcache_http_requests_total', { route: '/profile-pic/*', status: '200' }), 2);
  assert.equal(delta('pfpcache_http_requests_total', { route: '/profile-pic/*', status: '307' }), 1);
  assert.equal(delta('pfpcache_http_requests_total', { route: '/profile-pic/*', status: '404' }), 1);
  assert.equal(delta('pfpcache_http_requests_total', { route: '/batch-cache', status: '202' }), 1);
  assert.equal(delta('pfpcache_picture_requests_total', { result: 'hit' }), 1);
  assert.equal(delta('pfpcache_picture_requests_total', { result: 'miss' }), 3);
  assert.equal(delta('pfpcache_picture_served_bytes_total'), miss.body.length + hit.body.length);
  assert.equal(delta('pfpcache_downloads_total'), 2);
  assert.equal(delta('pfpcache_download_failures_total', { reason: 'bad_image' }), 1);
  assert.equal(delta('pfpcache_image_processing_seconds_count'), 2);
  assert.equal(delta('pfpcache_upstream_lookups_total', { result: 'found' }), 2);
  assert.equal(delta('pfpcache_upstream_lookups_total', { result: 'not_found' }), 1);
  assert.equal(delta('pfpcache_upstream_lookup_duration_seconds_count'), 3);
  assert.ok(delta('pfpcache_upstream_lookup_duration_seconds_sum') > 0);
  assert.equal(delta('pfpcache_events_stored_total', { kind: '0' }), 2, 'two profiles came from upstream');
  assert.equal(delta('pfpcache_cache_pictures'), 1);
  // The picture is its master and the two answers made with it, the JPEG served among them.
  assert.equal(delta('pfpcache_cache_files'), 3);
  assert.ok(delta('pfpcache_cache_bytes') > miss.body.length);
  assert.equal(delta('pfpcache_picture_answers_total', { format: 'jpeg' }), 2);
  assert.equal(delta('pfpcache_variants_made_total'), 0, 'the seed\'s answer was made with the master');
  assert.equal(delta('pfpcache_jobs', { state: 'done' }), 1);
  assert.equal(after.get('pfpcache_relay_connections'), 1);

  // /stats says the same.
  const s = await stats();
  assert.equal(s.cache.pictures - statsBefore.cache.pictures, 1);
  assert.equal(s.cache.bytes, after.get('pfpcache_cache_bytes'));
  assert.equal(s.cache.hits, after.get('pfpcache_picture_requests_total', { result: 'hit' }));
  assert.equal(s.cache.hit_ratio, s.cache.hits / (s.cache.hits + s.cache.stale + s.cache.misses));
  assert.equal(s.downloads.failed.bad_image, after.get('pfpcache_download_failures_total', { reason: 'bad_image' }));
  assert.equal(s.jobs.done, after.get('pfpcache_jobs', { state: 'done' }));
  assert.equal(s.relay.connections, 1);
  assert.equal(s.relay.events_stored['0'], after.get('pfpcache_events_stored_total', { kind: '0' }));
  assert.deepEqual(s.upstream_relays.map((r) => [r.url, r.state]), [[wsUrl(upstream.url), 'connected']]);
  assert.deepEqual(s.admin, { token: false, nip98: false, loopback_only: true });
  viewer.close();
});
