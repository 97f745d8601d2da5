// relay.test.mjs -- the Nostr relay (NIP-01, NIP-11) against the real binary, with
// nostr-tools and raw WebSocket clients.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';

import { SimplePool } from 'nostr-tools/pool';
import { Relay } from 'nostr-tools/relay';

import { newUser, now, plain, publishRaw, query, rawClient, wsUrl } from './lib/nostr.mjs';
import { startRelay } from './lib/relay.mjs';

let relay;

before(async () => {
  relay = await startRelay({
    config: { max_subscriptions: 5, max_filters: 3, max_limit: 5, max_message_length: 65536 },
  });
});

after(async () => {
  await relay.cleanup();
});

test('an event published with nostr-tools is read back by Relay and SimplePool', async () => {
  const alice = newUser();
  const profile = alice.sign({ kind: 0, content: JSON.stringify({ name: 'alice', picture: 'https://a.example/a.png' }) });
  const r = await Relay.connect(wsUrl(relay.url));
  try {
    assert.equal(await r.publish(profile), '');
    const got = [];
    await new Promise((resolve) => {
      r.subscribe([{ authors: [alice.pubkey], kinds: [0] }], { onevent: (e) => got.push(plain(e)), oneose: resolve });
    });
    assert.deepEqual(got, [profile]);
  } finally {
    r.close();
  }

  const pool = new SimplePool();
  try {
    const found = await pool.querySync([wsUrl(relay.url)], { authors: [alice.pubkey] });
    assert.deepEqual(found.map(plain), [profile]);
  } finally {
    pool.close([wsUrl(relay.url)]);
  }
});

test('a live subscription receives an event stored after its EOSE', async () => {
  const bob = newUser();
  const watcher = await rawClient(relay.url);
  const publisher = await rawClient(relay.url);
  try {
    assert.deepEqual(await query(watcher, 'live', { authors: [bob.pubkey] }), []);
    const ev = bob.sign({ kind: 3, tags: [['p', newUser().pubkey]] });
    assert.equal((await publishRaw(publisher, ev))[2], true);
    const live = await watcher.next((m) => m[0] === 'EVENT' && m[1] === 'live');
    assert.deepEqual(live[2], ev);

    // After CLOSE, nothing more arrives for that subscription.
    watcher.send(['CLOSE', 'live']);
    const later = bob.sign({ kind: 3, created_at: ev.created_at + 1 });
    assert.equal((await publishRaw(publisher, later))[2], true);
    assert.deepEqual(await query(watcher, 'check', { ids: [later.id] }), [later]);
    assert.equal(watcher.messages.filter((m) => m[0] === 'EVENT' && m[1] === 'live').length, 1);
  } finally {
    watcher.close();
    publisher.close();
  }
});

test('replaceable events: newer wins, equal time keeps the lower id, an older one is refused as replaced', async () => {
  const carol = newUser();
  const c = await rawClient(relay.url);
  try {
    const t = now() - 100;
    const v1 = carol.sign({ kind: 0, created_at: t, content: '{"name":"v1"}' });
    const v2 = carol.sign({ kind: 0, created_at: t + 10, content: '{"name":"v2"}' });
    assert.deepEqual(await publishRaw(c, v1), ['OK', v1.id, true, '']);
    assert.deepEqual(await publishRaw(c, v2), ['OK', v2.id, true, '']);
    assert.deepEqual(await query(c, 'q1', { authors: [carol.pubkey], kinds: [0] }), [v2]);
    assert.deepEqual(await query(c, 'q2', { ids: [v1.id] }), [], 'the replaced version is gone');

    // Neither stored nor served, so not OK true (as strfry answers).
    const older = carol.sign({ kind: 0, created_at: t + 5, content: '{"name":"older"}' });
    assert.deepEqual(await publishRaw(c, older), ['OK', older.id, false, 'replaced: have newer event']);
    // The stored version itself again is a duplicate.
    assert.deepEqual(await publishRaw(c, v2), ['OK', v2.id, true, 'duplicate: already have this event']);
    assert.deepEqual(await query(c, 'q3', { authors: [carol.pubkey], kinds: [0] }), [v2]);

    // Two versions with the same created_at: the one with the lower id stays, whichever came first.
    const same = [1, 2, 3, 4].map((i) => carol.sign({ kind: 10002, created_at: t + 20, tags: [['r', `wss://r${i}.example`]] }));
    const [low, high] = same.sort((a, b) => (a.id < b.id ? -1 : 1)).slice(0, 2);
    assert.equal((await publishRaw(c, high))[2], true);
    assert.deepEqual(await publishRaw(c, low), ['OK', low.id, true, '']);
    assert.deepEqual(await publishRaw(c, high), ['OK', high.id, false, 'replaced: have newer event']);
    assert.deepEqual(await query(c, 'q4', { authors: [carol.pubkey], kinds: [10002] }), [low]);
  } finally {
    c.close();
  }
});

test('a tag filter finds contact lists that name a pubkey', async () => {
  const target = newUser();
  const followers = [newUser(), newUser()];
  const c = await rawClient(relay.url);
  try {
    const lists = followers.map((f) => f.sign({ kind: 3, tags: [['p', target.pubkey], ['p', newUser().pubkey]] }));
    for (const l of lists) assert.equal((await publishRaw(c, l))[2], true);
    const found = await query(c, 'tags', { kinds: [3], '#p': [target.pubkey] });
    assert.deepEqual(found.map((e) => e.id).sort(), lists.map((e) => e.id).sort());
  } finally {
    c.close();
  }
});

test('limit is clamped to max_limit and results come newest first', async () => {
  const c = await rawClient(relay.url);
  try {
    const t = now() - 1000;
    const users = Array.from({ length: 7 }, () => newUser());
    for (const [i, u] of users.entries()) {
      assert.equal((await publishRaw(c, u.sign({ kind: 0, created_at: t + i })))[2], true);
    }
    const got = await query(c, 'lim', { authors: users.map((u) => u.pubkey), limit: 100 });
    assert.equal(got.length, 5);
    assert.deepEqual(got.map((e) => e.created_at), [t + 6, t + 5, t + 4, t + 3, t + 2]);
    const since = await query(c, 'since', { authors: users.map((u) => u.pubkey), since: t + 5, until: t + 6 });
    assert.deepEqual(since.map((e) => e.created_at), [t + 6, t + 5]);
  } finally {
    c.close();
  }
});

test('invalid events are answered with OK false and a NIP-01 prefix', async () => {
  const dave = newUser();
  const c = await rawClient(relay.url);
  try {
    const good = dave.sign({ kind: 0, content: '{"name":"dave"}' });

    const badId = { ...good, id: good.id.replace(/^./, good.id[0] === '0' ? '1' : '0') };
    let ok = await publishRaw(c, badId);
    assert.equal(ok[2], false);
    assert.match(ok[3], /^invalid: /);

    const badSig = { ...good, sig: good.sig.replace(/.$/, good.sig.endsWith('0') ? '1' : '0') };
    ok = await publishRaw(c, badSig);
    assert.deepEqual(ok, ['OK', good.id, false, 'invalid: bad signature']);

    const note = dave.sign({ kind: 1, content: 'hello' });
    ok = await publishRaw(c, note);
    assert.equal(ok[2], false);
    assert.match(ok[3], /^blocked: kind 1/);

    const future = dave.sign({ kind: 0, created_at: now() + 3600 });
    ok = await publishRaw(c, future);
    assert.equal(ok[2], false);
    assert.match(ok[3], /^invalid: created_at is more than 900 seconds in the future/);

    const upper = { ...good, pubkey: good.pubkey.toUpperCase() };
    ok = await publishRaw(c, upper);
    assert.equal(ok[2], false);
    assert.match(ok[3], /^invalid: pubkey must be 64 lowercase hex/);

    // Nothing invalid was stored, and the connection still works.
    assert.deepEqual(await query(c, 'none', { authors: [dave.pubkey] }), []);
    assert.equal((await publishRaw(c, good))[2], true);
  } finally {
    c.close();
  }
});

test('unparsable and unknown messages get a NOTICE and the connection stays usable', async () => {
  const c = await rawClient(relay.url);
  try {
    for (const [msg, expect] of [
      ['["REQ", "x", {', /^error: could not parse the message as JSON/],
      ['{"type": "REQ"}', /must be a JSON array/],
      ['"REQ"', /must be a JSON array/],
      ['[]', /must be a JSON array/],
      ['["BREW", "coffee"]', /^error: unknown message type "BREW"/],
      ['["REQ", 7, {}]', /^invalid: REQ needs a subscription id string/],
      ['["CLOSE"]', /^invalid: CLOSE must be/],
    ]) {
      const from = c.messages.length;
      c.send(msg);
      const notice = await c.next((m) => m[0] === 'NOTICE', { from });
      assert.match(notice[1], expect, msg);
    }
    assert.deepEqual(await query(c, 'still-works', { kinds: [0], limit: 0 }), []);
  } finally {
    c.close();
  }
});

test('every EVENT gets an OK, naming the event as it was sent even when it cannot be parsed', async () => {
  const c = await rawClient(relay.url);
  try {
    const good = newUser().sign({ kind: 0 });
    for (const [msg, id, reason] of [
      ['["EVENT", "not an object"]', '', /^invalid: EVENT must be \["EVENT", <event object>\]$/],
      ['["EVENT"]', '', /^invalid: EVENT must be/],
      [JSON.stringify(['EVENT', good, 'extra']), good.id, /^invalid: EVENT must be/],
      ['["EVENT", {"id": 5}]', '5', /^invalid: id must be 64 lowercase hex/],
      ['["EVENT", {"kind": 0}]', '', /^invalid: /],
      ['["EVENT", {"id": "not hex \\u0001 \\"quoted\\""}]', 'not hex \u0001 "quoted"', /^invalid: id must be 64 lowercase hex/],
      [JSON.stringify(['EVENT', { ...good, id: good.id.toUpperCase() }]), good.id.toUpperCase(), /^invalid: id must be 64 lowercase hex/],
      [JSON.stringify(['EVENT', { ...good, tags: 'none' }]), good.id, /^invalid: tags/],
    ]) {
      const from = c.messages.length;
      c.send(msg);
      const ok = await c.next((m) => m[0] === 'OK' || m[0] === 'NOTICE', { from });
      assert.equal(ok[0], 'OK', msg);
      assert.equal(ok[1], id, msg);
      assert.equal(ok[2], false, msg);
      assert.match(ok[3], reason, msg);
    }
  } finally {
    c.close();
  }
});

test('nostr-tools hears that an older replaceable event was not saved', async () => {
  const frank = newUser();
  const current = frank.sign({ kind: 0, created_at: now() - 10, content: '{"name":"current"}' });
  const stale = frank.sign({ kind: 0, created_at: now() - 3600, content: '{"name":"from a clock behind"}' });
  const r = await Relay.connect(wsUrl(relay.url));
  try {
    assert.equal(await r.publish(current), '');
    await assert.rejects(r.publish(stale), /replaced: have newer event/);
  } finally {
    r.close();
  }
});

test('refused subscriptions are answered with CLOSED and a reason', async () => {
  const c = await rawClient(relay.url);
  try {
    const closedFor = async (subId, ...filters) => {
      const from = c.messages.length;
      c.send(['REQ', subId, ...filters]);
      return c.next((m) => (m[0] === 'CLOSED' || m[0] === 'EOSE') && m[1] === subId, { from });
    };
    let m = await closedFor('x'.repeat(65), {});
    assert.equal(m[0], 'CLOSED');
    assert.match(m[2], /^invalid: subscription id must be 1 to 64 characters/);

    m = await closedFor('', {});
    assert.match(m[2], /^invalid: subscription id/);

    m = await closedFor('many', {}, {}, {}, {});
    assert.match(m[2], /^invalid: too many filters \(at most 3\)/);

    m = await closedFor('badfilter', { authors: ['nothex'] });
    assert.match(m[2], /^invalid: filter 0: authors\[0\]/);

    m = await closedFor('search', { search: 'x' });
    assert.match(m[2], /^invalid: filter 0: unsupported filter field "search"/);

    m = await closedFor('nofilter');
    assert.match(m[2], /^invalid: REQ needs at least one filter/);

    for (let i = 0; i < 5; i++) assert.equal((await closedFor(`s${i}`, { limit: 0 }))[0], 'EOSE');
    m = await closedFor('s5', { limit: 0 });
    assert.equal(m[0], 'CLOSED');
    assert.match(m[2], /^rate-limited: too many subscriptions \(at most 5/);

    // A REQ reusing an open subscription's id replaces it instead of counting as another.
    assert.equal((await closedFor('s0', { kinds: [0], limit: 0 }))[0], 'EOSE');
  } finally {
    c.close();
  }
});

test('pings are answered with pongs carrying their payload, between messages and inside a fragmented one', async () => {
  const c = await rawClient(relay.url);
  try {
    for (const payload of ['', 'one', 'x'.repeat(125)]) {
      const pong = new Promise((resolve) => c.ws.once('pong', (data) => resolve(String(data))));
      c.ws.ping(payload);
      assert.equal(await pong, payload);
    }
    // A ping between the fragments of a message is answered, and the message arrives whole.
    const from = c.messages.length;
    const pong = new Promise((resolve) => c.ws.once('pong', (data) => resolve(String(data))));
    c.ws.send('["REQ","frag",', { fin: false });
    c.ws.ping('between');
    c.ws.send('{"limit":0}]', { fin: true });
    assert.equal(await pong, 'between');
    assert.deepEqual(await c.next((m) => m[0] === 'EOSE', { from }), ['EOSE', 'frag']);
  } finally {
    c.close();
  }
});

test('a message over max_message_length closes that connection with 1009, not the relay', async () => {
  const c = await rawClient(relay.url);
  c.send(JSON.stringify(['REQ', 'big', { '#t': ['x'.repeat(70000)] }]));
  const { code } = await c.waitClose();
  assert.equal(code, 1009);
  const d = await rawClient(relay.url);
  try {
    assert.deepEqual(await query(d, 'after', { kinds: [0], limit: 0 }), []);
  } finally {
    d.close();
  }
});

test('NIP-11 describes the relay and its limits, with CORS', async () => {
  const res = await fetch(relay.url, { headers: { Accept: 'application/nostr+json' } });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'application/nostr+json');
  assert.equal(res.headers.get('access-control-allow-origin'), '*');
  const info = await res.json();
  assert.equal(info.name, 'pfpcache-relay');
  assert.deepEqual(info.supported_nips, [1, 11, 77]);
  assert.equal(info.software, 'pfpcache-relay');
  assert.match(info.version, /^\d+\.\d+\.\d+$/);
  assert.equal(info.limitation.max_message_length, 65536);
  assert.equal(info.limitation.max_subscriptions, 5);
  assert.equal(info.limitation.max_filters, 3);
  assert.equal(info.limitation.max_limit, 5);
  assert.equal(info.limitation.max_subid_length, 64);
  assert.equal(info.limitation.created_at_upper_limit, 900);

  const pre = await fetch(relay.url, {
    method: 'OPTIONS',
    headers: { Origin: 'https://client.example', 'Access-Control-Request-Method': 'GET', 'Access-Control-Request-Headers': 'Accept' },
  });
  assert.equal(pre.status, 204);
  assert.equal(pre.headers.get('access-control-allow-origin'), '*');
  assert.match(pre.headers.get('access-control-allow-headers'), /Accept/);

  const page = await fetch(relay.url);
  assert.equal(page.status, 200);
  assert.match(await page.text(), /pfpcache-relay/);
});

test('stored events survive a restart', async () => {
  const own = await startRelay();
  const erin = newUser();
  const ev = erin.sign({ kind: 0, content: '{"name":"erin"}' });
  let c = await rawClient(own.url);
  assert.equal((await publishRaw(c, ev))[2], true);
  c.close();
  assert.equal((await own.stop()).code, 0);

  const again = await startRelay({ dir: own.dir });
  try {
    c = await rawClient(again.url);
    assert.deepEqual(await query(c, 'back', { authors: [erin.pubkey] }), [ev]);
    c.close();
  } finally {
    await again.cleanup();
  }
});

test('a client that stops reading is disconnected before its backlog passes max_client_queue_bytes', async () => {
  const own = await startRelay({ config: { max_client_queue_bytes: 1048576, accepted_kinds: [3] } });
  const slow = await rawClient(own.url);
  const fast = await rawClient(own.url);
  try {
    await query(slow, 'all', { kinds: [3] });
    slow.ws._socket.pause();
    // Large contact lists, until the relay gives up on the client that does not read.
    const filler = Array.from({ length: 900 }, () => ['p', randomBytes(32).toString('hex')]);
    const closed = () => own.metric('pfpcache_relay_slow_clients_closed_total');
    for (let i = 0; i < 400 && (await closed()) === 0; i++) {
      assert.equal((await publishRaw(fast, newUser().sign({ kind: 3, tags: filler })))[2], true);
    }
    assert.equal(await closed(), 1, 'the client that does not read was closed');
    slow.ws._socket.resume();
    assert.equal((await slow.waitClose()).code, 1008);
    assert.deepEqual(await query(fast, 'alive', { kinds: [3], limit: 1 }).then((r) => r.length), 1);
  } finally {
    slow.close();
    fast.close();
    await own.cleanup();
  }
});

test('closing or replacing a subscription while its stored results still stream is safe', async () => {
  const own = await startRelay({ config: { accepted_kinds: [3] } });
  const c = await rawClient(own.url);
  try {
    // More stored results than the relay sends before waiting for the client to read.
    const filler = Array.from({ length: 900 }, () => ['p', randomBytes(32).toString('hex')]);
    for (let i = 0; i < 12; i++) assert.equal((await publishRaw(c, newUser().sign({ kind: 3, tags: filler })))[2], true);

    c.send(JSON.stringify(['REQ', 'big', { kinds: [3] }]));
    c.send(JSON.stringify(['CLOSE', 'big']));
    c.send(JSON.stringify(['REQ', 'again', { kinds: [3] }]));
    c.send(JSON.stringify(['REQ', 'again', { kinds: [3], limit: 2 }]));
    const eose = await c.next((m) => m[0] === 'EOSE' && m[1] === 'again');
    assert.deepEqual(eose, ['EOSE', 'again']);
    // Messages are handled in order, so once a later query is answered the CLOSE has been too.
    assert.equal((await query(c, 'after', { kinds: [3], limit: 1 })).length, 1);
    const big = () => c.messages.filter((m) => m[0] === 'EVENT' && m[1] === 'big').length;
    const seen = big();
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(big(), seen, 'nothing more arrives for a closed subscription');
  } finally {
    c.close();
    await own.cleanup();
  }
});
