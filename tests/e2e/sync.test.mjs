// sync.test.mjs -- NIP-77 syncs with other relays (issue 15): two instances with 5,000 shared profiles and 100
// of their own reconcile and end identical, moving only the 200; POST /sync is a job with its progress, refused
// precisely when malformed; sync_relays are synced at start-up; a relay without NIP-77, or silent, fails the sync
// with a clear reason.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';

import { WebSocket, WebSocketServer } from 'ws';

import { newUser, rawClient, wsUrl } from './lib/nostr.mjs';
import { runBinary, startRelay, tempDir, testConfig, until } from './lib/relay.mjs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';

const SHARED = 5000;
const OWN = 100;
const BIG = { max_limit: 100000 };
const shared = [];
let a, b;

// Publishes every event over one connection, pipelined, and resolves once each has its OK true.
async function publishAll(url, events) {
  const c = await rawClient(url);
  const refused = [];
  let oks = 0;
  const all = new Promise((resolve) =>
    c.ws.on('message', (data) => {
      const m = JSON.parse(String(data));
      if (m[0] !== 'OK') return;
      if (m[2] !== true) refused.push(m);
      if (++oks === events.length) resolve();
    }),
  );
  for (const ev of events) c.send(['EVENT', ev]);
  await all;
  c.close();
  assert.deepEqual(refused, []);
}

// The ids of the relay's kind 0 events, sorted.
async function kind0Ids(url) {
  const c = await rawClient(url);
  c.send(['REQ', 'all', { kinds: [0], limit: 100000 }]);
  await c.next((m) => m[0] === 'EOSE' && m[1] === 'all', { timeoutMs: 30000 });
  const ids = c.messages.filter((m) => m[0] === 'EVENT').map((m) => m[2].id);
  c.close();
  return ids.sort();
}

async function post(base, body, headers = {}) {
  const res = await fetch(`${base}/sync`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, json: await res.json() };
}

async function job(base, id) {
  const res = await fetch(`${base}/jobs/${id}`);
  assert.equal(res.status, 200);
  return res.json();
}

const finished = (base, id, timeoutMs = 60000) =>
  until(() => job(base, id), (j) => j.state === 'done' || j.state === 'failed', { what: `sync job ${id} ended`, timeoutMs });

const profiles = (n, base) =>
  Array.from({ length: n }, (_, i) => newUser().sign({ kind: 0, created_at: base + (i % 500), content: `{"name":"p${i}"}` }));

before(async () => {
  shared.push(...profiles(SHARED, 1700000000));
  [a, b] = await Promise.all([startRelay({ config: { ...BIG, sync_push: true } }), startRelay({ config: BIG })]);
  await Promise.all([publishAll(a.url, [...shared, ...profiles(OWN, 1700100000)]), publishAll(b.url, [...shared, ...profiles(OWN, 1700200000)])]);
});

after(async () => {
  await a?.cleanup();
  await b?.cleanup();
});

test('two instances with 5,000 shared profiles and 100 of their own each end identical, having moved only the 200', async () => {
  const before = { a: await kind0Ids(a.url), b: await kind0Ids(b.url) };
  assert.equal(before.a.length, SHARED + OWN);
  assert.notDeepEqual(before.a, before.b);
  const served = (await b.stats()).negentropy;

  const { status, json } = await post(a.url, { relay: wsUrl(b.url), filter: { kinds: [0] } });
  assert.equal(status, 202, JSON.stringify(json));
  assert.match(json.job_id, /^[0-9a-f]{16}$/);
  const j = await finished(a.url, json.job_id);
  assert.equal(j.state, 'done', j.error);
  assert.equal(j.type, 'sync');
  assert.equal(j.relay, wsUrl(b.url));
  assert.deepEqual(j.filter, { kinds: [0] });
  assert.equal(j.error, null);
  assert.equal(j.records_compared, SHARED + OWN);
  assert.equal(j.ids_needed, OWN);
  assert.equal(j.ids_fetched, OWN);
  assert.equal(j.ids_stored, OWN);
  assert.equal(j.ids_have, OWN);
  assert.equal(j.ids_sent, OWN);
  assert.equal(j.ids_accepted, OWN);
  assert.ok(j.round_trips >= 1 && j.round_trips <= 4, `round trips: ${j.round_trips}`);

  const after = { a: await kind0Ids(a.url), b: await kind0Ids(b.url) };
  assert.equal(after.a.length, SHARED + 2 * OWN);
  assert.deepEqual(after.a, after.b);
  // Fingerprints and the 200 events, not the 5,000 shared: well under a tenth of what a full copy would move.
  const full = shared.reduce((n, ev) => n + JSON.stringify(ev).length, 0);
  assert.ok(j.bytes_received + j.bytes_sent < full / 10, `${j.bytes_received} + ${j.bytes_sent} bytes against ${full}`);

  const sa = (await a.stats()).sync;
  assert.equal(sa.done, 1);
  assert.equal(sa.failed, 0);
  assert.equal(sa.ids_stored, OWN);
  assert.equal(sa.ids_sent, OWN);
  assert.equal(sa.running, 0);
  assert.equal((await b.stats()).negentropy.sessions, served.sessions + 1);
  assert.equal(await a.metric('pfpcache_sync_ids_stored_total'), OWN);

  // Nothing differs any more: a second sync moves nothing.
  const again = await finished(a.url, (await post(a.url, { relay: wsUrl(b.url), filter: { kinds: [0] } })).json.job_id);
  assert.equal(again.state, 'done', again.error);
  assert.equal(again.ids_needed + again.ids_have, 0);
  const listed = await (await fetch(`${a.url}/jobs`)).json();
  assert.ok(listed.jobs.some((x) => x.id === json.job_id && x.type === 'sync' && x.state === 'done'));
});

test('POST /sync refuses what is not a sync, naming the problem', async () => {
  const cases = [
    ['{"relay":', 400, /not valid JSON/],
    ['[]', 400, /must be a JSON object/],
    [{}, 400, /"relay" is required/],
    [{ relay: 'http://127.0.0.1:1' }, 400, /"relay" must be a ws:\/\/ or wss:\/\/ URL/],
    [{ relay: 'ws://127.0.0.1:1', filter: [] }, 400, /"filter" must be a NIP-01 filter object/],
    [{ relay: 'ws://127.0.0.1:1', filter: { kinds: 'x' } }, 400, /"filter": .*kinds/],
    [{ relay: 'ws://127.0.0.1:1', since: 5 }, 400, /unknown key "since"/],
  ];
  for (const [body, status, message] of cases) {
    const res = await post(a.url, body);
    assert.equal(res.status, status, JSON.stringify(body));
    assert.match(res.json.error, message, JSON.stringify(body));
  }
  const form = await post(a.url, 'relay=ws://x', { 'Content-Type': 'application/x-www-form-urlencoded' });
  assert.equal(form.status, 415);
  assert.equal((await a.stats()).sync.runs, 2);
});

test('a relay that is unreachable, lacks NIP-77 or stays silent fails the sync with a clear reason', async () => {
  const notice = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  notice.on('connection', (ws) => ws.on('message', () => ws.send(JSON.stringify(['NOTICE', 'ERROR: unknown cmd']))));
  const silent = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await Promise.all([notice, silent].map((s) => new Promise((r) => s.on('listening', r))));
  const quick = await startRelay({ config: { sync_timeout_seconds: 1 } });
  try {
    const start = async (relay) => (await post(quick.url, { relay })).json.job_id;
    const unsupported = await finished(quick.url, await start(`ws://127.0.0.1:${notice.address().port}`));
    assert.equal(unsupported.state, 'failed');
    assert.match(unsupported.error, /does not support NIP-77: it answered NEG-OPEN with NOTICE "ERROR: unknown cmd"/);
    const mute = await finished(quick.url, await start(`ws://127.0.0.1:${silent.address().port}`));
    assert.equal(mute.state, 'failed');
    assert.match(mute.error, /no answer to NEG-OPEN in 1 s: the relay may not support NIP-77/);
    const closedPort = await new Promise((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const port = s.address().port;
        s.close(() => resolve(port));
      });
    });
    const down = await finished(quick.url, await start(`ws://127.0.0.1:${closedPort}`));
    assert.equal(down.state, 'failed');
    assert.match(down.error, /^cannot connect: /);
    const s = (await quick.stats()).sync;
    assert.equal(s.failed, 3);
    assert.equal(s.running, 0);
    // The relay itself goes on serving.
    assert.equal((await fetch(`${quick.url}/health`)).status, 200);
  } finally {
    await quick.cleanup();
    notice.close();
    silent.close();
  }
});

test('sync_relays are synced at start-up, with the default filter of profiles, contact lists and relay lists', async () => {
  const c = await startRelay({ config: { ...BIG, sync_relays: [wsUrl(b.url)] } });
  try {
    const j = await until(
      async () => (await (await fetch(`${c.url}/jobs`)).json()).jobs.find((x) => x.type === 'sync'),
      (x) => x && (x.state === 'done' || x.state === 'failed'),
      { what: 'the scheduled sync ended', timeoutMs: 60000 },
    );
    assert.equal(j.state, 'done', j.error);
    assert.deepEqual(j.filter, { kinds: [0, 3, 10002] });
    assert.deepEqual(await kind0Ids(c.url), await kind0Ids(b.url));
    assert.equal(j.ids_stored, (await kind0Ids(b.url)).length);
  } finally {
    await c.cleanup();
  }
  const dir = await tempDir();
  const path = join(dir, 'config.json');
  await writeFile(path, JSON.stringify(testConfig(dir, { sync_relays: ['http://example.com'] })));
  const r = await runBinary(['--config', path, '--check']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /sync_relays/);
  assert.match(r.stderr, /ws:\/\/ or wss:\/\//);
});

// A WebSocket relay between the syncing instance and the relay it syncs with. While `hold` is set, it forwards
// only the first REQ of each connection, so that a sync stops part-way with a known number of events stored.
// It counts the events it passes back on each connection.
function gate(target) {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  const g = { hold: true, events: [], sockets: new Set() };
  wss.on('connection', (down) => {
    const n = g.events.push(0) - 1;
    const up = new WebSocket(target);
    const early = [];
    let reqs = 0;
    g.sockets.add(down).add(up);
    up.on('open', () => early.splice(0).forEach((m) => up.send(m)));
    up.on('message', (data) => {
      if (JSON.parse(String(data))[0] === 'EVENT') g.events[n]++;
      down.send(String(data));
    });
    down.on('message', (data) => {
      const m = String(data);
      if (JSON.parse(m)[0] === 'REQ' && g.hold && reqs++ > 0) return;
      if (up.readyState === WebSocket.OPEN) up.send(m);
      else early.push(m);
    });
    down.on('close', () => up.terminate());
    up.on('close', () => down.terminate());
    up.on('error', () => down.terminate());
  });
  g.url = () => `ws://127.0.0.1:${wss.address().port}`;
  g.ready = new Promise((r) => wss.on('listening', r));
  g.close = () => {
    for (const s of g.sockets) s.terminate();
    wss.close();
  };
  return g;
}

test('a sync interrupted by kill -9 resumes after the restart, fetching only what it had not stored', async () => {
  const TOTAL = 3000;
  const source = await startRelay({ config: BIG });
  const g = gate(wsUrl(source.url));
  const dir = await tempDir();
  let victim;
  try {
    await publishAll(source.url, profiles(TOTAL, 1700300000));
    await g.ready;
    victim = await startRelay({ dir, config: BIG });
    const { json } = await post(victim.url, { relay: g.url(), filter: { kinds: [0] } });
    assert.match(json.job_id, /^[0-9a-f]{16}$/);
    // The first batch of ids arrives and is stored; the other batches are held at the gate.
    const atKill = await until(() => job(victim.url, json.job_id), (j) => j.ids_stored === 500, { what: 'the first batch stored', timeoutMs: 30000 });
    assert.equal(atKill.state, 'running');
    assert.equal(atKill.ids_needed, TOTAL);
    victim.proc.kill('SIGKILL');
    await victim.exited;

    g.hold = false;
    victim = await startRelay({ dir, config: BIG });
    assert.equal(await victim.metric('pfpcache_jobs_resumed_total'), 1);
    const j = await finished(victim.url, json.job_id);
    assert.equal(j.state, 'done', j.error);
    assert.deepEqual(await kind0Ids(victim.url), await kind0Ids(source.url));
    // The restart redid its window's reconciliation and fetched only the 2,500 it lacked.
    assert.deepEqual(g.events, [500, TOTAL - 500]);
    assert.equal(await victim.metric('pfpcache_sync_ids_stored_total'), TOTAL - 500);
  } finally {
    g.close();
    await victim?.cleanup();
    await source.cleanup();
  }
});
