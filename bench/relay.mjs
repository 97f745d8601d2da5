// relay.mjs -- Nostr relay benchmarks.
//   Ingest: distinct pre-signed kind 0 events over 8 connections, each waited on
//   for its OK; the reference is libsecp256k1 verifying the same signatures on one
//   core (bench/tools/verify_rate), measured in the same run.
//   Query: REQ by 500 authors, events returned per second.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

import { startRelay } from '../tests/e2e/lib/relay.mjs';
import { here, openSocket, signedProfiles } from './lib.mjs';

const N = Number(process.env.INGEST_EVENTS ?? 50000);
const CONNECTIONS = 8;
const WINDOW = 256; // events awaiting their OK per connection
const QUERY_ROUNDS = 20;
const verifyRate = process.env.VERIFY_RATE_BIN ?? here('../build/release/bench/verify_rate');

function memory(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
  return { anon: kb('RssAnon'), file: kb('RssFile') };
}

let answeredTotal = 0;

// Sends `lines` (serialized events) keeping WINDOW in flight; resolves with the OKs that were true.
function ingest(ws, lines) {
  return new Promise((resolve, reject) => {
    let next = 0;
    let answered = 0;
    let accepted = 0;
    const send = () => ws.send(`["EVENT",${lines[next++]}]`);
    ws.on('message', (data) => {
      const msg = JSON.parse(data);
      if (msg[0] !== 'OK') return;
      answered++;
      answeredTotal++;
      if (msg[2] === true && msg[3] === '') accepted++;
      if (next < lines.length) send();
      if (answered === lines.length) resolve(accepted);
    });
    ws.once('close', () => reject(new Error('connection closed during ingest')));
    while (next < Math.min(WINDOW, lines.length)) send();
  });
}

function query(ws, subId, authors) {
  return new Promise((resolve) => {
    let count = 0;
    const onMessage = (data) => {
      const msg = JSON.parse(data);
      if (msg[1] !== subId) return;
      if (msg[0] === 'EVENT') count++;
      if (msg[0] === 'EOSE') {
        ws.off('message', onMessage);
        ws.send(JSON.stringify(['CLOSE', subId]));
        resolve(count);
      }
    };
    ws.on('message', onMessage);
    ws.send(JSON.stringify(['REQ', subId, { authors, kinds: [0], limit: 500 }]));
  });
}

const { path, lines: events } = await signedProfiles(N);
// The relay alone: fetching the pictures these profiles name is measured by pictures.mjs.
const relay = await startRelay({ config: { precache_on_metadata: false } });
const { url } = relay;
const pid = relay.proc.pid;

try {
  const sockets = await Promise.all(Array.from({ length: CONNECTIONS }, () => openSocket(url)));
  const shares = sockets.map((_, c) => events.filter((_, i) => i % CONNECTIONS === c));
  const before = memory(pid);
  // The heap at each quarter of the run: if the second half adds nothing, memory is flat.
  const quarters = [];
  const sampler = setInterval(() => {
    while (quarters.length < 4 && answeredTotal >= ((quarters.length + 1) * N) / 4) quarters.push(memory(pid).anon);
  }, 20);
  const t0 = performance.now();
  const accepted = (await Promise.all(sockets.map((ws, c) => ingest(ws, shares[c])))).reduce((a, b) => a + b, 0);
  const seconds = (performance.now() - t0) / 1000;
  clearInterval(sampler);
  const after = memory(pid);
  while (quarters.length < 4) quarters.push(after.anon);
  if (accepted !== N) throw new Error(`only ${accepted} of ${N} events were accepted`);

  const [refRate] = execFileSync(verifyRate, [path], { encoding: 'utf8' }).trim().split(' ').map(Number);
  const rate = N / seconds;
  console.log(`ingest (${N} distinct kind 0 events, ${CONNECTIONS} connections, each OK awaited; precache_on_metadata off)`);
  console.log(`  stored, every signature verified   ${rate.toFixed(0).padStart(8)} events/s  (${seconds.toFixed(2)} s)`);
  console.log(`  reference: id + signature checks,   ${refRate.toFixed(0).padStart(8)} events/s`);
  console.log(`    one core, same events`);
  console.log(`  ratio relay/reference               ${(rate / refRate).toFixed(2).padStart(8)}`);
  const mib = (kb) => (kb / 1024).toFixed(1);
  console.log(`  relay heap (RssAnon) at start, 25/50/75/100%: ${mib(before.anon)}, ${quarters.map(mib).join(', ')} MiB`);
  console.log(`  database pages mapped (RssFile) after    ${(after.file / 1024).toFixed(0)} MiB`);

  const pubkeys = events.map((l) => JSON.parse(l).pubkey);
  let returned = 0;
  const q0 = performance.now();
  for (let round = 0; round < QUERY_ROUNDS; round++) {
    const authors = Array.from({ length: 500 }, (_, i) => pubkeys[(round * 2477 + i * 97) % pubkeys.length]);
    returned += await query(sockets[0], `q${round}`, authors);
  }
  const qs = (performance.now() - q0) / 1000;
  console.log(`query (REQ by 500 authors, kind 0, ${QUERY_ROUNDS} rounds)`);
  console.log(`  events returned                     ${(returned / qs).toFixed(0).padStart(8)} events/s  (${returned} events in ${qs.toFixed(2)} s)`);
  for (const ws of sockets) ws.close();
  // What the connections held (events in flight, buffers) goes with them; stored data never sits on the heap.
  await new Promise((r) => setTimeout(r, 500));
  console.log(`  relay heap after the ${CONNECTIONS} clients disconnect: ${(memory(pid).anon / 1024).toFixed(1)} MiB`);
} finally {
  await relay.cleanup();
}
