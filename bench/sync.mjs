// sync.mjs -- preloading a fresh instance with every profile another instance holds. The sync is POST /sync
// with {"kinds":[0]}: NIP-77 finds the ids the fresh instance lacks, then they are fetched with batched REQ ids,
// verified and stored. The reference, in the same run, is what an operator does without NIP-77: a client that
// already knows every pubkey asks the seeded instance for their kind 0 with REQ by authors, 500 a batch, one
// batch at a time, and publishes what comes back to the fresh instance, which verifies and stores it as usual.
// Both end with the same 50,000 events stored. Then the seeded instance gains TOPUP new profiles and each way
// brings the preloaded instance up to date again: the sync moves only the difference, the reference asks for
// every author again (and learns nothing of pubkeys it was not told).
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

import { startRelay } from '../tests/e2e/lib/relay.mjs';
import { benchDir, fmt, here, median, openSocket, publishAll } from './lib.mjs';

const PROFILES = Number(process.env.SYNC_PROFILES ?? 50000);
const TOPUP = 500;
const BATCH = 500;
const RUNS = Number(process.env.BENCH_ROUNDS ?? 3);
const tools = process.env.BENCH_TOOLS ?? here('../build/release/bench');
const dir = benchDir();
const CONFIG = { max_limit: 100000, precache_on_metadata: false, max_client_queue_bytes: 1 << 30 };

const sign = (n) =>
  execFileSync(join(tools, 'sign_profiles'), [String(n), 'http://127.0.0.1/p%d.jpg', '1'], { encoding: 'utf8', maxBuffer: 1 << 30 })
    .trim()
    .split('\n');

async function until(probe, done) {
  for (;;) {
    const v = await probe();
    if (done(v)) return v;
    await new Promise((r) => setTimeout(r, 20));
  }
}

// POST /sync and wait for the job: its time, bytes and ids.
async function syncFrom(target, source) {
  const t0 = performance.now();
  const res = await fetch(`${target.url}/sync`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ relay: source.url.replace(/^http/, 'ws'), filter: { kinds: [0] } }),
  });
  const { job_id: id } = await res.json();
  const j = await until(
    async () => (await fetch(`${target.url}/jobs/${id}`)).json(),
    (x) => x.state === 'done' || x.state === 'failed',
  );
  if (j.state !== 'done') throw new Error(`sync failed: ${j.error}`);
  return { ms: performance.now() - t0, bytes: j.bytes_sent + j.bytes_received, stored: j.ids_stored, trips: j.round_trips };
}

// The reference: REQ by authors, BATCH at a time, from `source`; what comes back is published to `target`.
async function byAuthors(target, source, pubkeys) {
  const from = await openSocket(source.url);
  const to = await openSocket(target.url);
  let bytes = 0;
  let received = 0;
  const t0 = performance.now();
  for (let i = 0; i < pubkeys.length; i += BATCH) {
    const sub = `a${i}`;
    const req = JSON.stringify(['REQ', sub, { kinds: [0], authors: pubkeys.slice(i, i + BATCH), limit: BATCH }]);
    const lines = await new Promise((resolve) => {
      const got = [];
      const on = (data) => {
        const text = String(data);
        bytes += Buffer.byteLength(text);
        if (text.startsWith('["EVENT"')) got.push(JSON.stringify(JSON.parse(text)[2]));
        else if (text.startsWith('["EOSE"')) {
          from.off('message', on);
          resolve(got);
        }
      };
      from.on('message', on);
      from.send(req);
      bytes += Buffer.byteLength(req);
    });
    from.send(JSON.stringify(['CLOSE', sub]));
    received += lines.length;
    await publishAll(to, lines);
  }
  const ms = performance.now() - t0;
  from.close();
  to.close();
  return { ms, bytes, received };
}

const source = await startRelay({ dir: join(dir, 'source'), config: CONFIG });
const targets = [];
try {
  const lines = sign(PROFILES);
  const pubkeys = lines.map((l) => JSON.parse(l).pubkey);
  const seed = await openSocket(source.url);
  await publishAll(seed, lines);

  console.log(`sync: preloading a fresh instance with the ${fmt(PROFILES)} profiles another holds (median of ${RUNS} runs)`);
  const syncs = [];
  const refs = [];
  for (let r = 0; r < RUNS; r++) {
    const a = await startRelay({ dir: join(dir, `sync${r}`), config: CONFIG });
    const b = await startRelay({ dir: join(dir, `ref${r}`), config: CONFIG });
    targets.push(a, b);
    const s = await syncFrom(a, source);
    if (s.stored !== PROFILES) throw new Error(`the sync stored ${s.stored}`);
    syncs.push(s);
    const ref = await byAuthors(b, source, pubkeys);
    if (ref.received !== PROFILES) throw new Error(`REQ by authors gave ${ref.received}`);
    refs.push(ref);
  }
  const s = median(syncs.map((x) => x.ms));
  const ref = median(refs.map((x) => x.ms));
  console.log(
    `  POST /sync: ${s.toFixed(0)} ms (${syncs.map((x) => x.ms.toFixed(0)).join(', ')}), ${fmt(syncs[0].bytes)} bytes, ${syncs[0].trips} round trip(s)`,
  );
  console.log(`  REQ by authors, ${BATCH} a batch, republished: ${ref.toFixed(0)} ms (${refs.map((x) => x.ms.toFixed(0)).join(', ')}), ${fmt(refs[0].bytes)} bytes`);
  console.log(`    preload time against the reference: ${(s / ref).toFixed(3)} (lower is better), bytes ${(syncs[0].bytes / refs[0].bytes).toFixed(3)}`);

  // The source gains TOPUP profiles; the first preloaded pair catches up, each its own way.
  const more = sign(TOPUP);
  await publishAll(seed, more);
  seed.close();
  const again = await syncFrom(targets[0], source);
  if (again.stored !== TOPUP) throw new Error(`the top-up sync stored ${again.stored}`);
  const refAgain = await byAuthors(targets[1], source, [...pubkeys, ...more.map((l) => JSON.parse(l).pubkey)]);
  console.log(
    `  catching up on ${TOPUP} new profiles: POST /sync ${again.ms.toFixed(0)} ms and ${fmt(again.bytes)} bytes; ` +
      `REQ by every author again ${refAgain.ms.toFixed(0)} ms and ${fmt(refAgain.bytes)} bytes`,
  );
  console.log(`    against the reference: time ${(again.ms / refAgain.ms).toFixed(3)}, bytes ${(again.bytes / refAgain.bytes).toFixed(4)}`);
} finally {
  for (const t of targets) await t.cleanup();
  await source.cleanup();
}
