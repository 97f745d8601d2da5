// negentropy.mjs -- NIP-77 served by the relay: a client holding RECORDS kind 0 records reconciles with a relay
// holding RECORDS, the two sets differing by 0, 10 and 1,000 records each way (the client lacks that many of the
// relay's and holds that many of its own). Each round trip, and the bytes each way (as sent: hex and JSON), are
// counted; the reference, in the same run, is a REQ of the same filter fetching every event, which is what a
// client without NIP-77 does to learn the same. nostr-tools' Negentropy is the client's side; its own time (in
// JavaScript) is reported apart, since a C client's would be far less.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';

import { startRelay } from '../tests/e2e/lib/relay.mjs';
import { benchDir, fmt, here, openSocket, publishAll } from './lib.mjs';

const { Negentropy, NegentropyStorageVector } = await import(here('../node_modules/nostr-tools/lib/esm/nip77.js'));

const RECORDS = Number(process.env.NEG_RECORDS ?? 100000);
const RUNS = Number(process.env.BENCH_ROUNDS ?? 3);
const tools = process.env.BENCH_TOOLS ?? here('../build/release/bench');
const dir = benchDir();

// Resolves with the first message for which `pred` holds.
function next(ws, pred) {
  return new Promise((resolve) => {
    const on = (data) => {
      const text = String(data);
      const msg = JSON.parse(text);
      if (pred(msg)) {
        ws.off('message', on);
        resolve({ msg, bytes: Buffer.byteLength(text) });
      }
    };
    ws.on('message', on);
  });
}

// One reconciliation of `storage` against the relay's kind 0s: round trips, bytes each way, ids each side lacks.
async function reconcile(ws, storage, id) {
  const neg = new Negentropy(storage);
  const have = [];
  const need = [];
  let sent = 0;
  let received = 0;
  let trips = 0;
  let clientMs = 0; // nostr-tools' own work, in JavaScript
  let out = JSON.stringify(['NEG-OPEN', id, { kinds: [0] }, neg.initiate()]);
  const t0 = performance.now();
  for (;;) {
    const reply = next(ws, (m) => m[1] === id);
    ws.send(out);
    sent += Buffer.byteLength(out);
    const { msg, bytes } = await reply;
    received += bytes;
    trips++;
    if (msg[0] !== 'NEG-MSG') throw new Error(`${msg[0]}: ${msg[2]}`);
    const c0 = performance.now();
    const answer = neg.reconcile(msg[2], (x) => have.push(x), (x) => need.push(x));
    clientMs += performance.now() - c0;
    if (!answer) break;
    out = JSON.stringify(['NEG-MSG', id, answer]);
  }
  ws.send(JSON.stringify(['NEG-CLOSE', id]));
  return { ms: performance.now() - t0, clientMs, trips, sent, received, have: have.length, need: need.length };
}

// The reference: every event of the filter, by REQ, until EOSE.
async function fetchAll(ws, id) {
  let received = 0;
  let events = 0;
  const t0 = performance.now();
  const done = new Promise((resolve) => {
    const on = (data) => {
      const text = String(data);
      received += Buffer.byteLength(text);
      if (text.startsWith('["EVENT"')) events++;
      else if (text.startsWith('["EOSE"')) {
        ws.off('message', on);
        resolve();
      }
    };
    ws.on('message', on);
  });
  const req = JSON.stringify(['REQ', id, { kinds: [0], limit: RECORDS }]);
  ws.send(req);
  await done;
  ws.send(JSON.stringify(['CLOSE', id]));
  return { ms: performance.now() - t0, sent: Buffer.byteLength(req), received, events };
}

const relay = await startRelay({
  dir: join(dir, 'relay'),
  config: { max_limit: 100000, precache_on_metadata: false, max_client_queue_bytes: 1 << 30 },
});
try {
  const lines = execFileSync(join(tools, 'sign_profiles'), [String(RECORDS), 'http://127.0.0.1/p%d.jpg', '1'], {
    encoding: 'utf8',
    maxBuffer: 1 << 30,
  })
    .trim()
    .split('\n');
  const events = lines.map((l) => JSON.parse(l));
  const ws = await openSocket(relay.url);
  await publishAll(ws, lines);

  console.log(`negentropy: a client reconciling its ${fmt(RECORDS)} kind 0 records with the relay's ${fmt(RECORDS)} (median of ${RUNS} runs)`);
  const reference = [];
  for (let r = 0; r < RUNS; r++) reference.push(await fetchAll(ws, `all${r}`));
  const ref = reference.sort((a, b) => a.ms - b.ms)[Math.floor(RUNS / 2)];
  if (ref.events !== RECORDS) throw new Error(`the REQ gave ${ref.events} events`);
  for (const diff of [0, 10, 1000]) {
    const storage = new NegentropyStorageVector();
    for (const e of events.slice(diff)) storage.insert(e.created_at, e.id);
    for (let i = 0; i < diff; i++) storage.insert(events[0].created_at, randomBytes(32).toString('hex'));
    storage.seal();
    const runs = [];
    for (let r = 0; r < RUNS; r++) runs.push(await reconcile(ws, storage, `d${diff}-${r}`));
    const m = runs.sort((a, b) => a.ms - b.ms)[Math.floor(RUNS / 2)];
    if (m.need !== diff || m.have !== diff) throw new Error(`differing by ${diff}: found ${m.need} needed and ${m.have} had`);
    console.log(
      `  differing by ${String(diff).padStart(5)} each way: ${m.trips} round trip(s), ${fmt(m.sent)} bytes sent and ${fmt(m.received)} received, ` +
        `${m.ms.toFixed(0)} ms (${runs.map((x) => x.ms.toFixed(0)).join(', ')}), of which ${m.clientMs.toFixed(0)} ms in nostr-tools' reconcile`,
    );
    console.log(
      `    against a REQ of every event: bytes received ${(m.received / ref.received).toFixed(5)}, time ${(m.ms / ref.ms).toFixed(3)}, ` +
        `time without the client's reconcile ${((m.ms - m.clientMs) / ref.ms).toFixed(3)}`,
    );
  }
  console.log(`  reference, REQ {kinds:[0]}: ${fmt(ref.events)} events, ${fmt(ref.received)} bytes, ${ref.ms.toFixed(0)} ms (median of ${reference.map((x) => x.ms.toFixed(0)).join(', ')})`);
  ws.close();
} finally {
  await relay.cleanup();
}
