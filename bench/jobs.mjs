// jobs.mjs -- batch pre-caching and LRU eviction:
//   batch: 2,000 pubkeys whose profiles are on a local upstream relay and whose pictures are on a local
//     nginx (a static origin, so that the machine's cores go to the relay as with a remote origin), cached by
//     POST /batch-cache; the reference is the same pubkeys fetched through
//     /profile-pic one request at a time, by a second relay in the same run; and the limit: the same source
//     pictures through the image pipeline alone (bench/tools/pipeline_rate.c), on as many image threads as
//     the relay uses, with no network or disk;
//   LRU: evicting a tenth of a 100,000-entry cache (bench/tools/evict_rate.c), against unlinking as many
//     files of the same size with no index at all.
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

import { startRelay } from '../tests/e2e/lib/relay.mjs';
import { benchDir, here, openSocket, publishAll, startNginx } from './lib.mjs';

const PUBKEYS = Number(process.env.BATCH_PUBKEYS ?? 2000);
// JOBS_ONLY=batch measures the batch and its limit alone, without the one-at-a-time reference or the LRU part.
const only = process.env.JOBS_ONLY;
const tools = process.env.BENCH_TOOLS ?? here('../build/release/bench');
const dir = benchDir();

const sources = join(dir, 'sources');
mkdirSync(sources);
execFileSync(join(tools, 'corpus'), ['distinct', sources, String(PUBKEYS)]);
const images = await startNginx(sources, join(dir, 'nginx'));
const upstream = await startRelay({ dir: join(dir, 'upstream') });
// Every pubkey has its own picture; the query string keeps the two relays' downloads apart.
const profiles = (tag) =>
  execFileSync(join(tools, 'sign_profiles'), [String(PUBKEYS), `${images.url}/p%d.jpg?${tag}`, String(PUBKEYS)], {
    encoding: 'utf8',
  }).trim().split('\n');
const config = {
  upstream_relays: [upstream.url.replace(/^http/, 'ws')],
  allowed_source_addresses: ['127.0.0.1'],
  precache_on_metadata: false,
};

async function mainRelay(name) {
  const relay = await startRelay({ dir: join(dir, name), config });
  await relay.waitForLog(/upstream ws:\S+: connected/);
  return relay;
}

try {
  const batchProfiles = profiles('batch');
  const singleProfiles = profiles('single');
  const ws = await openSocket(upstream.url);
  await publishAll(ws, [...batchProfiles, ...singleProfiles]);
  ws.close();

  // The limit, measured just before the batch and again just after it: on a shared machine the mean of the
  // two brackets the load the batch ran under. The relays run with image_threads at its default, 0: one per
  // online CPU.
  const pipeline = () =>
    execFileSync(join(tools, 'pipeline_rate'), [sources, '0'], { encoding: 'utf8' }).trim().split(' ').map(Number);
  const before = pipeline();

  // POST /batch-cache, 1,000 pubkeys a request, then until every job is done.
  const batch = await mainRelay('batch');
  const pubkeys = batchProfiles.map((l) => JSON.parse(l).pubkey);
  const t0 = performance.now();
  const ids = [];
  for (let i = 0; i < pubkeys.length; i += 1000) {
    const res = await fetch(`${batch.url}/batch-cache`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ pubkeys: pubkeys.slice(i, i + 1000) }),
    });
    ids.push((await res.json()).job_id);
  }
  let cached = 0;
  for (const id of ids) {
    for (;;) {
      const job = await (await fetch(`${batch.url}/jobs/${id}`)).json();
      if (job.state === 'done') {
        cached += job.cached;
        break;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  const batchSeconds = (performance.now() - t0) / 1000;
  await batch.cleanup();
  const after = pipeline();

  // The reference: GET /profile-pic for each pubkey in turn, as a client without batch-cache would.
  let ok = 0;
  let singleSeconds = NaN;
  if (only !== 'batch') {
    const single = await mainRelay('single');
    const t1 = performance.now();
    for (const l of singleProfiles) {
      const res = await fetch(`${single.url}/profile-pic/${JSON.parse(l).pubkey}`);
      await res.arrayBuffer();
      ok += res.status === 200;
    }
    singleSeconds = (performance.now() - t1) / 1000;
    await single.cleanup();
  }

  const [, pipelined, threads] = before;
  const pipelineRate = (before[0] + after[0]) / 2;
  const batchRate = cached / batchSeconds;

  console.log(`batch pre-caching (${PUBKEYS} pubkeys, profiles on a local upstream relay, a distinct picture each)`);
  console.log(`  POST /batch-cache, until the jobs are done   ${batchSeconds.toFixed(2).padStart(6)} s  ${batchRate.toFixed(0).padStart(5)} pictures/s  (${cached} cached)`);
  if (only !== 'batch') {
    console.log(`  GET /profile-pic, one request at a time     ${singleSeconds.toFixed(2).padStart(6)} s  ${(ok / singleSeconds).toFixed(0).padStart(5)} pictures/s  (${ok} cached)`);
    console.log(`  ratio one-at-a-time/batch (speed-up)        ${(singleSeconds / batchSeconds).toFixed(1).padStart(6)}`);
  }
  console.log(`  image pipeline alone, ${threads} threads, no I/O     ${(pipelined / pipelineRate).toFixed(2).padStart(6)} s  ${pipelineRate.toFixed(0).padStart(5)} pictures/s  (${pipelined} pictures; ${before[0].toFixed(0)} before the batch, ${after[0].toFixed(0)} after)`);
  console.log(`  ratio batch/pipeline                        ${(batchRate / pipelineRate).toFixed(2).padStart(6)}`);
} finally {
  await upstream.cleanup();
  await images.stop();
}

if (only === 'batch') {
  rmSync(dir, { recursive: true, force: true });
  process.exit(0);
}
const lru = join(dir, 'lru');
mkdirSync(lru);
const [evicted, evictSeconds, unlinkSeconds] = execFileSync(join(tools, 'evict_rate'), [lru], {
  encoding: 'utf8',
  stdio: ['ignore', 'pipe', 'ignore'],
}).trim().split(' ').map(Number);
console.log(`LRU eviction (a tenth of a 100,000-entry cache, 2 KB files)`);
console.log(`  evicted ${evicted} files and their index entries   ${(evictSeconds * 1000).toFixed(0).padStart(5)} ms`);
console.log(`  reference: unlinking as many files, no index    ${(unlinkSeconds * 1000).toFixed(0).padStart(5)} ms`);
console.log(`  ratio eviction/unlink                           ${(evictSeconds / unlinkSeconds).toFixed(1).padStart(5)}`);
rmSync(dir, { recursive: true, force: true });
