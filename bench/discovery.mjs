// discovery.mjs -- outbox-model lookups (issue 13): 1,000 pubkeys whose kind 0 sits only on
// two of 20 local write relays and whose kind 10002 sits only on one upstream relay, asked
// of pfpcache-relay as GET /profile/{hex}, 50 at a time. The reference, in the same run, is a
// naive client at the same concurrency: for each pubkey a new connection to the upstream for
// its kind 10002, then a new connection to each write relay named there for its kind 0.
// Connections and REQs are read from each relay's own /metrics, before and after each side
// (pfpcache-relay's one connection to the upstream opens at start-up, before the first reading).
// A side that finds fewer profiles than the other is said to, since its ratios then compare unequal work.
import { rm } from 'node:fs/promises';

import { initNostrWasm } from 'nostr-wasm';
import { finalizeEvent, generateSecretKey, getPublicKey, setNostrWasm } from 'nostr-tools/wasm';
import WebSocket from 'ws';

import { startRelay, until } from '../tests/e2e/lib/relay.mjs';
import { openSocket, publishAll } from './lib.mjs';

const N = 1000;
const WRITE_RELAYS = 20;
const RELAYS_PER_PUBKEY = 2;
const CONCURRENCY = 50;
const PHASE_MS = 40000; // each side stops asking after this, so that a hung lookup cannot stall the run
const REQUEST_TIMEOUT_MS = 10000; // one GET /profile, or one naive REQ, at most
const DEADLINE_MS = 170000; // the whole benchmark, start-up and clean-up included

const hex = (bytes) => Buffer.from(bytes).toString('hex');
const ws = (url) => url.replace(/^http/, 'ws');

// Every instance started, so that the watchdog can stop them whatever else has gone wrong.
const started = [];
const start = async (config) => {
  const r = await startRelay({ config: { precache_on_metadata: false, ...config } });
  started.push(r);
  return r;
};
const watchdog = setTimeout(async () => {
  console.error(`discovery: not finished within ${DEADLINE_MS / 1000} s; stopping`);
  for (const r of started) r.proc.kill('SIGKILL');
  await Promise.allSettled(started.map((r) => rm(r.dir, { recursive: true, force: true })));
  process.exit(1);
}, DEADLINE_MS);
watchdog.unref();

// The nearest-rank percentile `p` (0 to 100) of `values`, in their unit; NaN when there are none.
function percentile(values, p) {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

// Runs `task(i)` for i in 0..n-1, `concurrency` at a time, taking no new work after `phaseMs`.
// Resolves with the number of tasks started.
async function pool(n, concurrency, phaseMs, task) {
  const stop = Date.now() + phaseMs;
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n && Date.now() < stop) await task(next++);
    }),
  );
  return next;
}

// The connections accepted and REQs received so far by each of `relays`, from its /metrics.
const counters = (relays) =>
  Promise.all(
    relays.map(async (r) => {
      const m = await r.metrics();
      return { conns: m.get('pfpcache_relay_connections_total'), reqs: m.get('pfpcache_relay_subscriptions_total') };
    }),
  );

// Per-relay differences between two counters() readings: totals, mean and max per relay.
function traffic(before, after) {
  const conns = after.map((a, i) => a.conns - before[i].conns);
  const reqs = after.map((a, i) => a.reqs - before[i].reqs);
  const sum = (v) => v.reduce((s, x) => s + x, 0);
  return {
    conns: sum(conns),
    reqs: sum(reqs),
    meanConns: sum(conns) / conns.length,
    meanReqs: sum(reqs) / reqs.length,
    maxConns: Math.max(...conns),
    maxReqs: Math.max(...reqs),
  };
}

// One naive query: a new connection to `url`, one REQ of `filter`, the events until EOSE, closed.
// Resolves with the events; an error or `REQUEST_TIMEOUT_MS` without EOSE resolves with null.
function queryOnce(url, filter) {
  return new Promise((resolve) => {
    const sock = new WebSocket(url);
    const events = [];
    const done = (result) => {
      clearTimeout(timer);
      sock.removeAllListeners('message');
      sock.on('error', () => {});
      if (sock.readyState === WebSocket.CONNECTING) sock.terminate();
      else sock.close();
      resolve(result);
    };
    const timer = setTimeout(() => done(null), REQUEST_TIMEOUT_MS);
    sock.once('error', () => done(null));
    sock.once('open', () => sock.send(JSON.stringify(['REQ', 'q', filter])));
    sock.on('message', (data) => {
      const msg = JSON.parse(data);
      if (msg[0] === 'EVENT' && msg[1] === 'q') events.push(msg[2]);
      else if (msg[0] === 'EOSE' || msg[0] === 'CLOSED') done(events);
    });
  });
}

const newest = (events) => events.reduce((a, e) => (a === null || e.created_at > a.created_at ? e : a), null);

// The naive client's lookup of one pubkey: its kind 10002 from the upstream, then its kind 0 from
// every write relay named there at once, the newest kept. Resolves with the kind 0's name or null.
async function naiveLookup(upstreamUrl, pubkey) {
  const lists = await queryOnce(upstreamUrl, { authors: [pubkey], kinds: [10002], limit: 1 });
  const list = lists && newest(lists);
  if (list === null) return null;
  const relays = list.tags.filter((t) => t[0] === 'r' && (t[2] === undefined || t[2] === 'write')).map((t) => t[1]);
  const answers = await Promise.all(relays.map((url) => queryOnce(url, { authors: [pubkey], kinds: [0], limit: 1 })));
  const kind0 = newest(answers.flatMap((a) => a ?? []));
  if (kind0 === null) return null;
  try {
    return JSON.parse(kind0.content).name ?? null;
  } catch {
    return null;
  }
}

setNostrWasm(await initNostrWasm());

try {
  const [upstream, ...writers] = await Promise.all(Array.from({ length: WRITE_RELAYS + 1 }, () => start({})));
  const writerUrls = writers.map((w) => ws(w.url));

  // Pubkey i writes to relay i mod 20 and to one offset from it by 1 + (i / 20 mod 19): every relay
  // holds 100 kind 0s, and the pairs vary, so that no two relays always serve the same pubkeys.
  const base = Math.floor(Date.now() / 1000) - 3600;
  const users = Array.from({ length: N }, (_, i) => {
    const sk = generateSecretKey();
    const a = i % WRITE_RELAYS;
    const b = (a + 1 + (Math.floor(i / WRITE_RELAYS) % (WRITE_RELAYS - 1))) % WRITE_RELAYS;
    const name = `user${i}`;
    const kind0 = finalizeEvent({ kind: 0, created_at: base, tags: [], content: JSON.stringify({ name }) }, sk);
    const tags = [a, b].map((j) => ['r', writerUrls[j]]);
    const kind10002 = finalizeEvent({ kind: 10002, created_at: base, tags, content: '' }, sk);
    return { pubkey: getPublicKey(sk), name, relays: [a, b], kind0: JSON.stringify(kind0), kind10002: JSON.stringify(kind10002) };
  });

  const publish = async (relay, lines) => {
    const sock = await openSocket(relay.url);
    await publishAll(sock, lines);
    sock.close();
  };
  await Promise.all([
    publish(upstream, users.map((u) => u.kind10002)),
    ...writers.map((w, j) => publish(w, users.filter((u) => u.relays.includes(j)).map((u) => u.kind0))),
  ]);
  const storedOn = async (relay, kind) => (await relay.stats()).relay.events_stored[kind] ?? 0;
  await until(() => storedOn(upstream, '10002'), (n) => n === N, { what: 'the upstream storing every kind 10002' });
  await Promise.all(
    writers.map((w) =>
      until(() => storedOn(w, '0'), (n) => n === (N * RELAYS_PER_PUBKEY) / WRITE_RELAYS, {
        what: `${w.url} storing its kind 0s`,
      }),
    ),
  );

  // pfpcache-relay: GET /profile for every pubkey, 50 at a time, on keep-alive connections.
  const sut = await start({
    upstream_relays: [ws(upstream.url)],
    allow_private_sources: true,
    max_discovery_connections: 50,
    max_outbox_relays: 4,
    discovery_idle_seconds: 60,
  });
  const ours = { latencies: [], found: 0, errors: 0 };
  let oursUp, oursOut;
  try {
    await sut.waitUpstreamConnected(10000);
    const [w0, u0] = await Promise.all([counters(writers), counters([upstream])]);
    const t0 = performance.now();
    ours.asked = await pool(N, CONCURRENCY, PHASE_MS, async (i) => {
      const t = performance.now();
      try {
        const res = await fetch(`${sut.url}/profile/${users[i].pubkey}`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
        const body = await res.text();
        if (res.status === 200 && JSON.parse(body).name === users[i].name) ours.found++;
        else if (res.status !== 404) ours.errors++;
      } catch {
        ours.errors++;
      }
      ours.latencies.push(performance.now() - t);
    });
    ours.wall = (performance.now() - t0) / 1000;
    const [w1, u1] = await Promise.all([counters(writers), counters([upstream])]);
    oursOut = traffic(w0, w1);
    oursUp = traffic(u0, u1);
  } finally {
    started.splice(started.indexOf(sut), 1);
    await sut.cleanup();
  }

  // The naive client, straight to the same relays.
  const naive = { latencies: [], found: 0 };
  const [w2, u2] = await Promise.all([counters(writers), counters([upstream])]);
  const t1 = performance.now();
  naive.asked = await pool(N, CONCURRENCY, PHASE_MS, async (i) => {
    const t = performance.now();
    if ((await naiveLookup(ws(upstream.url), users[i].pubkey)) === users[i].name) naive.found++;
    naive.latencies.push(performance.now() - t);
  });
  naive.wall = (performance.now() - t1) / 1000;
  const [w3, u3] = await Promise.all([counters(writers), counters([upstream])]);
  const naiveOut = traffic(w2, w3);
  const naiveUp = traffic(u2, u3);

  const ratio = (a, b) => (b > 0 ? (a / b).toFixed(1) : 'n/a');
  const ms = (v) => `${v.toFixed(1)} ms`;
  const side = (label, r, out, up) => {
    const asked = r.asked < N ? `, asked ${r.asked} (phase bound)` : '';
    const errors = r.errors ? `, ${r.errors} errors or timeouts` : '';
    console.log(
      `  ${label.padEnd(40)} ${r.wall.toFixed(2).padStart(7)} s  found ${r.found}/${N}${asked}${errors}, ` +
        `p50 ${ms(percentile(r.latencies, 50))}, p99 ${ms(percentile(r.latencies, 99))}`,
    );
    console.log(
      `    write relays: ${out.conns} connections (mean ${out.meanConns.toFixed(1)}, max ${out.maxConns} per relay), ` +
        `${out.reqs} REQs (mean ${out.meanReqs.toFixed(1)}, max ${out.maxReqs} per relay); ` +
        `upstream: ${up.conns} connections, ${up.reqs} REQs`,
    );
  };
  console.log(
    `discovery lookups (${N} pubkeys, kind 0 on ${RELAYS_PER_PUBKEY} of ${WRITE_RELAYS} local write relays, ` +
      `kind 10002 on one upstream; ${CONCURRENCY} at a time)`,
  );
  side('pfpcache-relay, GET /profile/{hex}', ours, oursOut, oursUp);
  side('naive, a connection per pubkey per relay', naive, naiveOut, naiveUp);
  console.log(
    `  ratio naive/pfpcache-relay: wall time ${ratio(naive.wall, ours.wall)}, ` +
      `connections to write relays ${ratio(naiveOut.conns, oursOut.conns)}, REQs to write relays ${ratio(naiveOut.reqs, oursOut.reqs)}`,
  );
  if (ours.found < naive.found)
    console.log(`  (pfpcache-relay found ${ours.found} against ${naive.found}: the ratios compare unequal work)`);
} finally {
  const results = await Promise.allSettled(started.map((r) => r.cleanup()));
  for (const r of results) if (r.status === 'rejected') console.error(r.reason.message);
}
