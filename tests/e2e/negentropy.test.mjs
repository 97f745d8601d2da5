// negentropy.test.mjs -- NIP-77 served by the relay (issue 15): nostr-tools' NegentropySync as a client finds
// exactly the ids each side lacks; NIP-11 says 77; sessions are bounded in number, records and idle time, and
// malformed messages get NEG-ERR while the relay goes on answering.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';

import { Relay } from 'nostr-tools/relay';

import { newUser, publishRaw, query, rawClient, wsUrl } from './lib/nostr.mjs';
import { startRelay, until } from './lib/relay.mjs';

// nostr-tools does not export nip77 by name: it is loaded by its path.
const { Negentropy, NegentropyStorageVector, NegentropySync } = await import(
  new URL('../../node_modules/nostr-tools/lib/esm/nip77.js', import.meta.url)
);

const N = 300;
let relay; // defaults: 4 sessions, a million records, 60 s idle
let tight; // 1 session, 30 records, 1 s idle
let held; // 1 session, 30 records: all connections together hold at most 4 sessions' worth (120)
const events = [];

before(async () => {
  [relay, tight, held] = await Promise.all([
    startRelay(),
    startRelay({ config: { max_negentropy_sessions: 1, max_negentropy_records: 30, negentropy_idle_seconds: 1 } }),
    startRelay({ config: { max_negentropy_sessions: 1, max_negentropy_records: 30 } }),
  ]);
  for (let i = 0; i < N; i++) events.push(newUser().sign({ kind: 0, created_at: 1700000000 + (i % 40), content: `{"name":"u${i}"}` }));
  for (const r of [relay, tight]) {
    const c = await rawClient(r.url);
    for (const ev of events) {
      const ok = await publishRaw(c, ev);
      assert.equal(ok[2], true, ok[3]);
    }
    c.close();
  }
  const c = await rawClient(held.url);
  for (const ev of events.slice(0, 30)) await publishRaw(c, ev);
  c.close();
});

after(async () => {
  await relay?.cleanup();
  await tight?.cleanup();
  await held?.cleanup();
});

// The first message of a side holding nothing, as nostr-tools makes it.
const emptyFirst = () => {
  const s = new NegentropyStorageVector();
  s.seal();
  return new Negentropy(s).initiate();
};

test('NIP-11 lists 77 among the supported NIPs', async () => {
  const res = await fetch(relay.url, { headers: { accept: 'application/nostr+json' } });
  assert.ok((await res.json()).supported_nips.includes(77));
});

test("nostr-tools' NegentropySync finds exactly the ids each side lacks", async () => {
  // The client holds the first 250 events and 20 of its own; the relay holds all 300.
  const storage = new NegentropyStorageVector();
  const mine = Array.from({ length: 20 }, (_, i) => ({ created_at: 1700000000 + i, id: randomBytes(32).toString('hex') }));
  for (const ev of [...events.slice(0, 250), ...mine]) storage.insert(ev.created_at, ev.id);
  storage.seal();
  const before = (await relay.stats()).negentropy;
  const client = await Relay.connect(wsUrl(relay.url));
  const have = [];
  const need = [];
  const reason = await new Promise((resolve) => {
    const sync = new NegentropySync(client, storage, { kinds: [0] }, {
      onhave: (id) => have.push(id),
      onneed: (id) => need.push(id),
      onclose: resolve,
    });
    sync.start();
  });
  client.close();
  assert.equal(reason, undefined, 'ended by reconciling, not by an error');
  assert.deepEqual(need.sort(), events.slice(250).map((e) => e.id).sort(), 'the 50 only the relay has');
  assert.deepEqual(have.sort(), mine.map((e) => e.id).sort(), 'the 20 only the client has');
  const s = (await relay.stats()).negentropy;
  assert.equal(s.sessions, before.sessions + 1);
  assert.ok(s.round_trips >= before.round_trips + 1);
  assert.equal(s.records, before.records + N);
  assert.ok(s.bytes_in > before.bytes_in && s.bytes_out > before.bytes_out);
  const m = await relay.metrics();
  assert.equal(m.get('pfpcache_negentropy_sessions_total'), s.sessions);
  assert.equal(m.get('pfpcache_negentropy_round_trips_total'), s.round_trips);
  await until(() => relay.stats(), (x) => x.negentropy.open === 0, { what: 'the session closed' });
});

test('identical sets reconcile in one round trip; a filter narrows the set', async () => {
  const author = events[7].pubkey;
  const storage = new NegentropyStorageVector();
  storage.insert(events[7].created_at, events[7].id);
  storage.seal();
  const neg = new Negentropy(storage);
  const c = await rawClient(relay.url);
  c.send(['NEG-OPEN', 'one', { kinds: [0], authors: [author] }, neg.initiate()]);
  const reply = await c.next((m) => m[1] === 'one');
  assert.equal(reply[0], 'NEG-MSG');
  const have = [];
  const need = [];
  assert.equal(neg.reconcile(reply[2], (id) => have.push(id), (id) => need.push(id)), null, 'nothing more to say');
  assert.deepEqual([have, need], [[], []]);
  c.send(['NEG-CLOSE', 'one']);
  c.close();
});

test('too many records, too many sessions and idle sessions get NEG-ERR; the relay goes on', async () => {
  const c = await rawClient(tight.url);
  const first = emptyFirst();

  c.send(['NEG-OPEN', 'all', { kinds: [0] }, first]);
  const big = await c.next((m) => m[1] === 'all');
  assert.deepEqual(big, ['NEG-ERR', 'all', 'blocked: too many records']);

  const from = c.messages.length;
  c.send(['NEG-OPEN', 'a', { kinds: [0], authors: [events[0].pubkey] }, first]);
  assert.equal((await c.next((m) => m[1] === 'a', { from }))[0], 'NEG-MSG');
  c.send(['NEG-OPEN', 'b', { kinds: [0], authors: [events[1].pubkey] }, first]);
  const refused = await c.next((m) => m[1] === 'b', { from });
  assert.equal(refused[0], 'NEG-ERR');
  assert.match(refused[2], /^blocked: too many negentropy sessions \(at most 1 per connection\)$/);
  // Closing one makes room.
  c.send(['NEG-CLOSE', 'a']);
  const again = c.messages.length;
  c.send(['NEG-OPEN', 'b', { kinds: [0], authors: [events[1].pubkey] }, first]);
  assert.equal((await c.next((m) => m[1] === 'b', { from: again }))[0], 'NEG-MSG');
  // Silent past negentropy_idle_seconds, it is closed.
  const idle = await c.next((m) => m[0] === 'NEG-ERR' && m[1] === 'b', { from: again, timeoutMs: 5000 });
  assert.equal(idle[2], 'closed: no message for 1 s');
  await until(() => tight.stats(), (x) => x.negentropy.open === 0, { what: 'the idle session gone' });
  assert.equal((await query(c, 'still', { kinds: [0], limit: 1 })).length, 1, 'REQ still answered');
  c.close();
});

test('malformed NEG messages get NEG-ERR or NOTICE naming the problem', async () => {
  const c = await rawClient(relay.url);
  const cases = [
    [['NEG-OPEN', 'x', { kinds: [0] }, 'zz'], /^invalid: the negentropy message must be/],
    [['NEG-OPEN', 'x', { kinds: [0] }, ''], /^invalid: the negentropy message must be a non-empty string/],
    [['NEG-OPEN', 'x', { kinds: 'zero' }, emptyFirst()], /^invalid: filter: /],
    [['NEG-OPEN', 'x', { kinds: [0] }], /^invalid: NEG-OPEN takes 4 elements$/],
    [['NEG-MSG', 'nope', emptyFirst()], /^closed: no such negentropy session/],
    [['NEG-OPEN', 'y'.repeat(65), { kinds: [0] }, emptyFirst()], /^invalid: subscription id must be 1 to 64 characters$/],
  ];
  for (const [msg, pattern] of cases) {
    const from = c.messages.length;
    c.send(msg);
    const got = await c.next((m) => m[0] === 'NEG-ERR' || m[0] === 'NOTICE', { from });
    assert.equal(got[0], 'NEG-ERR', JSON.stringify(msg));
    assert.match(got[2], pattern, JSON.stringify(msg));
  }
  const from = c.messages.length;
  c.send(['NEG-OPEN', 42, {}, emptyFirst()]);
  const notice = await c.next((m) => m[0] === 'NOTICE', { from });
  assert.match(notice[1], /NEG-OPEN needs a subscription id string/);
  // A first message asking for another protocol version is answered with the version this side speaks.
  const v = c.messages.length;
  c.send(['NEG-OPEN', 'v2', { kinds: [0] }, '62']);
  const version = await c.next((m) => m[1] === 'v2', { from: v });
  assert.deepEqual(version, ['NEG-MSG', 'v2', '61']);
  assert.equal((await query(c, 'after', { kinds: [0], limit: 2 })).length, 2, 'REQ still answered');
  c.close();
});

test("many connections' sessions together hold at most four sessions' worth of records", async () => {
  const open = async (c, id) => {
    const from = c.messages.length;
    c.send(['NEG-OPEN', id, { kinds: [0] }, emptyFirst()]);
    return c.next((m) => m[1] === id, { from });
  };
  const clients = [];
  for (let i = 0; i < 4; i++) {
    clients.push(await rawClient(held.url));
    assert.equal((await open(clients[i], `s${i}`))[0], 'NEG-MSG', `session ${i} holds 30 records`);
  }
  const fifth = await rawClient(held.url);
  const refused = await open(fifth, 'five');
  assert.deepEqual(refused, ['NEG-ERR', 'five', 'blocked: the relay holds too many records for other sessions; try again later']);
  // One connection gone, its records are let go.
  clients.pop().close();
  await until(() => held.stats(), (x) => x.negentropy.open === 3, { what: 'the closed connection\'s session gone' });
  assert.equal((await open(fifth, 'five'))[0], 'NEG-MSG');
  for (const c of [...clients, fifth]) c.close();
});
