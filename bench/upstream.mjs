// upstream.mjs -- resolving 2,000 pubkeys seeded on two local upstream relays:
// through pfpcache-relay's batched lookups (one client REQ), against the seed
// program's approach measured in the same run: a new connection per pubkey per
// relay, relays tried one after another, 20 pubkeys at a time.
import { startRelay } from '../tests/e2e/lib/relay.mjs';
import { openSocket, publishAll, signedProfiles } from './lib.mjs';

const N = 2000;
const SEED_CONCURRENCY = 20; // the seed's max_concurrent

const reqs = (relay) => (relay.stderr.match(/relay: REQ "/g) ?? []).length;

// The seed's way: for one pubkey, ask each relay in turn on a fresh connection until one has it.
async function seedLookup(urls, pubkey) {
  for (const url of urls) {
    const ws = await openSocket(url);
    const found = await new Promise((resolve) => {
      let got = false;
      ws.on('message', (data) => {
        const msg = JSON.parse(data);
        if (msg[0] === 'EVENT') got = true;
        if (msg[0] === 'EOSE') resolve(got);
      });
      ws.send(JSON.stringify(['REQ', 'p', { authors: [pubkey], kinds: [0], limit: 1 }]));
    });
    ws.close();
    if (found) return true;
  }
  return false;
}

const { lines } = await signedProfiles(50000);
const events = lines.slice(0, N);
const pubkeys = events.map((l) => JSON.parse(l).pubkey);
const a = await startRelay({ config: { log_level: 'debug' } });
const b = await startRelay({ config: { log_level: 'debug' } });

try {
  const wa = await openSocket(a.url);
  const wb = await openSocket(b.url);
  await publishAll(wa, events.filter((_, i) => i % 2 === 0 || i % 4 === 1));
  await publishAll(wb, events.filter((_, i) => i % 2 === 1 || i % 4 === 0));
  wa.close();
  wb.close();

  // pfpcache-relay: one REQ for every author; it batches and asks both relays at once.
  const main = await startRelay({
    config: {
      upstream_relays: [a.url, b.url].map((u) => u.replace(/^http/, 'ws')),
      max_message_length: 262144,
      max_limit: N,
    },
  });
  let ours, oursFound, aReqs, bReqs;
  try {
    await main.waitForLog(/connected[\s\S]*connected/, 10000);
    const [a0, b0] = [reqs(a), reqs(b)];
    const ws = await openSocket(main.url);
    const t0 = performance.now();
    oursFound = await new Promise((resolve) => {
      let count = 0;
      ws.on('message', (data) => {
        const msg = JSON.parse(data);
        if (msg[0] === 'EVENT') count++;
        if (msg[0] === 'EOSE') resolve(count);
      });
      ws.send(JSON.stringify(['REQ', 'all', { authors: pubkeys, kinds: [0] }]));
    });
    ours = (performance.now() - t0) / 1000;
    ws.close();
    [aReqs, bReqs] = [reqs(a) - a0, reqs(b) - b0];
  } finally {
    await main.cleanup();
  }

  // The seed's approach, straight to the same relays.
  const [a1, b1] = [reqs(a), reqs(b)];
  const t1 = performance.now();
  let next = 0;
  let seedFound = 0;
  await Promise.all(
    Array.from({ length: SEED_CONCURRENCY }, async () => {
      while (next < N) {
        const found = await seedLookup([a.url, b.url], pubkeys[next++]);
        if (found) seedFound++;
      }
    }),
  );
  const seed = (performance.now() - t1) / 1000;

  console.log(`upstream lookups (${N} pubkeys on two local relays)`);
  console.log(`  pfpcache-relay, one client REQ       ${ours.toFixed(2).padStart(7)} s  found ${oursFound}, REQs sent: ${aReqs} and ${bReqs}`);
  console.log(`  seed approach, a REQ per pubkey      ${seed.toFixed(2).padStart(7)} s  found ${seedFound}, REQs sent: ${reqs(a) - a1} and ${reqs(b) - b1}`);
  console.log(`  ratio seed/pfpcache-relay (speed-up) ${(seed / ours).toFixed(1).padStart(7)}`);
} finally {
  await a.cleanup();
  await b.cleanup();
}
