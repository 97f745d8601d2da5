// cluster.test.mjs -- nodes behind nginx's `hash $key consistent` (issue 16): a real nginx running the shipped
// deploy/nginx/pfpcache-cluster.conf in front of three instances, with a local upstream relay and image server.
// nginx picks, for every key, the node the instances name in X-Pfp-Owner; each picture is downloaded and resized
// once in the cluster, by its owner, even when another node is asked for it; keys spelled other than in lowercase
// hex are sent to their canonical URL and end at the owner; a node stopped moves only its own keys; an event a
// client gives one node is on the others at once, its picture fetched ahead by the owner alone, and a node that was
// away catches up on what it missed; the cluster's configuration is checked.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:https';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { nip19 } from 'nostr-tools';

import { serveFixtures, stopFixtures } from './lib/images.mjs';
import { SHIPPED, startNginx } from './lib/nginx.mjs';
import { newUser, publishRaw, query, rawClient } from './lib/nostr.mjs';
import { freePort, runBinary, startRelay, tempDir, testConfig, until } from './lib/relay.mjs';
import { makeCertificates } from './lib/tls.mjs';
import { worldConfig } from './lib/world.mjs';

const NODES = 3;
let nodes = [];
let names = [];
let dirs = [];
let nginx, world, upstream, upClient, certs, nip05Server, nip05Domain;
// The NIP-05 names the test's domain has: name -> pubkey.
const nip05Names = {};

const nodeConfig = (self) =>
  worldConfig(upstream, {
    listen_addr: self,
    cluster_nodes: names,
    cluster_self: self,
    max_connections_per_ip: 0,
    precache_on_metadata: true,
    upstream_ca_file: certs.ca,
  });
const startNode = (i) => startRelay({ dir: dirs[i], config: nodeConfig(names[i]) });

before(async () => {
  world = await serveFixtures();
  certs = makeCertificates(await tempDir());
  nip05Server = createServer({ cert: readFileSync(certs.cert), key: readFileSync(certs.key) }, (req, res) =>
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ names: nip05Names })),
  );
  await new Promise((r) => nip05Server.listen(0, '127.0.0.1', r));
  nip05Domain = `127.0.0.1:${nip05Server.address().port}`;
  upstream = await startRelay();
  upClient = await rawClient(upstream.url);
  const ports = [];
  while (ports.length < NODES) {
    const p = await freePort();
    if (!ports.includes(p)) ports.push(p);
  }
  names = ports.map((p) => `127.0.0.1:${p}`);
  dirs = await Promise.all(names.map(() => tempDir()));
  nodes = await Promise.all(names.map((_, i) => startNode(i)));
  nginx = await startNginx(await tempDir(), names);
});

after(async () => {
  await nginx?.stop();
  upClient?.close();
  // Every process is stopped even when one exited badly, so that the test ends; then the first failure is reported.
  const stopped = await Promise.allSettled([...nodes, upstream].filter(Boolean).map((r) => r.cleanup()));
  if (world) await stopFixtures(world);
  nip05Server?.close();
  const failed = stopped.find((r) => r.status === 'rejected');
  if (failed) throw failed.reason;
});

// A user whose kind 0, on the upstream relay, names a picture of its own URL on the image server.
async function profileWithPicture(tag) {
  const user = newUser();
  const content = JSON.stringify({ name: tag, picture: `${world.images.url}/f/small.jpg?${tag}` });
  assert.equal((await publishRaw(upClient, user.sign({ kind: 0, content })))[2], true);
  return user;
}

async function picture(base, pubkey, init) {
  const res = await fetch(`${base}/profile-pic/${pubkey}`, init);
  const body = Buffer.from(await res.arrayBuffer());
  return { status: res.status, body, h: (n) => res.headers.get(n) };
}

// Runs `fn` over `items`, `width` at a time.
async function pool(items, width, fn) {
  const out = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i], i);
      }
    }),
  );
  return out;
}

test('for 10,000 keys, the node nginx picks is the owner every node names in X-Pfp-Owner', async () => {
  const keys = Array.from({ length: 10000 }, () => randomBytes(32).toString('hex'));
  const answers = await pool(keys, 16, async (k) => {
    const res = await fetch(`${nginx.url}/profile/${k}`);
    await res.arrayBuffer();
    return { status: res.status, owner: res.headers.get('x-pfp-owner'), servedBy: res.headers.get('x-served-by') };
  });
  const byKey = new Map((await nginx.log()).map((l) => [l.key, l]));
  const share = new Map(names.map((n) => [n, 0]));
  for (const [i, k] of keys.entries()) {
    const a = answers[i];
    assert.equal(a.status, 404, k);
    assert.ok(names.includes(a.owner), `${k}: X-Pfp-Owner ${a.owner}`);
    assert.equal(byKey.get(k)?.upstream, a.owner, `${k}: nginx chose ${byKey.get(k)?.upstream}, the nodes say ${a.owner}`);
    assert.equal(a.servedBy, a.owner, k);
    share.set(a.owner, share.get(a.owner) + 1);
  }
  // Each node has its share, roughly a third, as the ring each node reports says.
  const ring = (await nodes[0].stats()).cluster;
  assert.equal(ring.self, names[0]);
  assert.deepEqual(ring.nodes.map((n) => n.node), names);
  assert.ok(Math.abs(ring.nodes.reduce((t, n) => t + n.share, 0) - 1) < 1e-9);
  for (const [i, [n, count]] of [...share].entries()) {
    assert.ok(count > 2500 && count < 4200, `${n}: ${count} of 10,000`);
    assert.ok(Math.abs(count / 10000 - ring.nodes[i].share) < 0.03, `${n}: ${count} of 10,000, share ${ring.nodes[i].share}`);
    assert.equal((await nodes[i].stats()).cluster.answers_owned, count);
    assert.equal(await nodes[i].metric('pfpcache_cluster_answers_total', { owner: 'self' }), count);
  }

  // A node asked directly for a key it does not own says whose it is.
  const k = keys[0];
  const other = nodes[names.findIndex((n) => n !== answers[0].owner)];
  const res = await fetch(`${other.url}/profile-pic/${k}`);
  assert.equal(res.headers.get('x-pfp-owner'), answers[0].owner);
  assert.equal(res.headers.get('x-served-by'), names[nodes.indexOf(other)]);
});

test('a key in npub, nprofile or uppercase hex is sent to its lowercase hex URL, the query kept, and ends at its owner', async () => {
  const hex = randomBytes(32).toString('hex');
  const npub = nip19.npubEncode(hex);
  const nprofile = nip19.nprofileEncode({ pubkey: hex, relays: ['wss://relay.example.com'] });
  for (const [path, canonical] of [
    [`/profile-pic/${npub}?size=64`, `/profile-pic/${hex}?size=64`],
    [`/profile-banner/${nprofile}`, `/profile-banner/${hex}`],
    [`/profile/${hex.toUpperCase()}`, `/profile/${hex}`],
  ]) {
    const res = await fetch(`${nginx.url}${path}`, { redirect: 'manual' });
    assert.equal(res.status, 307, path);
    assert.equal(res.headers.get('location'), canonical, path);
    assert.match((await res.json()).error, /canonical URL/);
    const followed = await fetch(`${nginx.url}${path}`);
    assert.equal(followed.url, `${nginx.url}${canonical}`);
    assert.equal(followed.headers.get('x-served-by'), followed.headers.get('x-pfp-owner'), path);
  }
  const redirected = nodes.map((n) => n.stats());
  let total = 0;
  for (const s of await Promise.all(redirected)) total += s.cluster.redirected;
  assert.equal(total, 6);
});

test('1,000 pictures through nginx: each downloaded and resized once, by its owner, which alone holds it', async () => {
  const users = [];
  for (let i = 0; i < 1000; i++) users.push(await profileWithPicture(`through-nginx-${i}`));
  const downloadsBefore = world.images.total();
  const before = await Promise.all(nodes.map((n) => n.stats()));
  const answers = await pool(users, 16, async (u) => {
    const a = await picture(nginx.url, u.pubkey);
    return { status: a.status, owner: a.h('x-pfp-owner'), servedBy: a.h('x-served-by'), cache: a.h('x-cache') };
  });
  for (const [i, a] of answers.entries()) {
    assert.equal(a.status, 200, users[i].pubkey);
    assert.equal(a.servedBy, a.owner);
    assert.equal(a.cache, 'MISS');
  }
  assert.equal(world.images.total() - downloadsBefore, 1000, 'one download per picture in the whole cluster');
  console.log(`# 1,000 pictures through nginx: ${world.images.total() - downloadsBefore} downloads`);
  const owned = names.map((n) => answers.filter((a) => a.owner === n).length);
  for (const [i, n] of nodes.entries()) {
    const s = await n.stats();
    assert.equal(s.downloads.processed - before[i].downloads.processed, owned[i], `${names[i]} resized its own share and nothing else`);
    assert.equal(s.cluster.from_owner, before[i].cluster.from_owner);
  }
  // Asked again, through nginx: every one a hit at its owner.
  const again = await pool(users.slice(0, 100), 16, async (u) => (await picture(nginx.url, u.pubkey)).h('x-cache'));
  assert.deepEqual(new Set(again), new Set(['HIT']));
  assert.equal(world.images.total() - downloadsBefore, 1000);
});

test("a node asked directly for another's key answers with its owner's picture, downloaded once", async () => {
  const u = await profileWithPicture('asked-directly');
  const downloads = world.images.total();
  // Its banner (it has none) says whose the key is; the owner, having looked the profile up, fetches its picture.
  const owner = (await fetch(`${nodes[0].url}/profile-banner/${u.pubkey}`)).headers.get('x-pfp-owner');
  const i = names.indexOf(owner);
  const other = nodes[(i + 1) % NODES];
  const fromOwner = (await other.stats()).cluster.from_owner;
  const first = await picture(other.url, u.pubkey, { headers: { accept: 'image/webp' } });
  assert.equal(first.status, 200);
  assert.equal(first.h('x-pfp-owner'), owner);
  assert.equal(first.h('x-served-by'), names[nodes.indexOf(other)]);
  assert.equal(first.h('content-type'), 'image/webp', "the request's Accept went to the owner");
  assert.match(first.h('x-cache'), /^(MISS|HIT)$/);
  assert.equal(first.h('surrogate-key'), u.pubkey);
  assert.equal(world.images.total() - downloads, 1);
  // The owner has it now; a node asked again relays the owner's hit, and its ETag answers If-None-Match.
  const direct = await picture(nodes[i].url, u.pubkey, { headers: { accept: 'image/webp' } });
  assert.equal(direct.h('x-cache'), 'HIT');
  assert.deepEqual(direct.body, first.body);
  const relayed = await picture(other.url, u.pubkey, { headers: { accept: 'image/webp', 'if-none-match': first.h('etag') } });
  assert.equal(relayed.status, 304);
  const head = await fetch(`${other.url}/profile-pic/${u.pubkey}`, { method: 'HEAD', headers: { accept: 'image/webp' } });
  assert.equal(head.status, 200);
  assert.equal(Number(head.headers.get('content-length')), first.body.length);
  assert.equal(world.images.total() - downloads, 1);
  const s = (await other.stats()).cluster;
  assert.equal(s.from_owner, fromOwner + 3);
  assert.equal(s.owner_failures, 0);
});

test('a node stopped: every request still answers, only its keys move, and they return with it', async () => {
  const users = [];
  for (let i = 0; i < 150; i++) users.push(await profileWithPicture(`node-down-${i}`));
  const owners = await pool(users, 16, async (u) => (await picture(nginx.url, u.pubkey)).h('x-pfp-owner'));
  const down = 2;
  await nodes[down].stop();
  const during = await pool(users, 16, async (u) => {
    const a = await picture(nginx.url, u.pubkey);
    return { status: a.status, servedBy: a.h('x-served-by') };
  });
  let moved = 0;
  for (const [k, a] of during.entries()) {
    assert.equal(a.status, 200, users[k].pubkey);
    if (owners[k] === names[down]) {
      assert.notEqual(a.servedBy, names[down]);
      moved++;
    } else {
      assert.equal(a.servedBy, owners[k], "another node's key stays where it was");
    }
  }
  assert.ok(moved > 20 && moved < 90, `${moved} of 150 keys moved`);
  console.log(`# node stopped: ${moved} of 150 keys moved (its share), 0 of the others'`);
  const failures = (await Promise.all(nodes.filter((_, k) => k !== down).map((n) => n.stats()))).reduce((t, s) => t + s.cluster.owner_failures, 0);
  assert.ok(failures >= 1, 'the stopped owner was tried, then its keys answered where they landed');

  nodes[down] = await startNode(down);
  // nginx leaves a node that failed alone for its fail_timeout (10 s) before it tries it again.
  const probe = users[owners.indexOf(names[down])].pubkey;
  await until(() => picture(nginx.url, probe).then((a) => a.h('x-served-by')), (s) => s === names[down], {
    what: 'nginx sends the restarted node its keys again',
    timeoutMs: 20000,
    intervalMs: 500,
  });
  const back = await pool(users, 16, async (u) => (await picture(nginx.url, u.pubkey)).h('x-served-by'));
  for (const [k, servedBy] of back.entries()) assert.equal(servedBy, owners[k], 'every key is back at its owner');
});

// Whether `node` has the event `id` stored (a REQ by id, which looks nothing up).
async function has(node, id) {
  const c = await rawClient(node.url);
  try {
    return (await query(c, 'has', { ids: [id] })).length === 1;
  } finally {
    c.close();
  }
}

test('an event given to one node is on every node at once, and its picture is fetched ahead by the owner alone', async () => {
  await until(async () => (await nodes[0].stats()).cluster.peers.every((p) => p.connected), Boolean, { what: 'the nodes connected' });
  const c = await rawClient(nodes[0].url);
  const latencies = [];
  try {
    const before = await Promise.all(nodes.map((n) => n.stats()));
    const downloads = world.images.total();
    const users = Array.from({ length: 20 }, () => newUser());
    for (const [k, u] of users.entries()) {
      const ev = u.sign({ kind: 0, content: JSON.stringify({ name: `replicated-${k}`, picture: `${world.images.url}/f/small.jpg?replicated-${k}` }) });
      const t0 = performance.now();
      assert.equal((await publishRaw(c, ev))[2], true);
      await until(async () => (await has(nodes[1], ev.id)) && (await has(nodes[2], ev.id)), Boolean, { what: `${ev.id} on every node`, timeoutMs: 5000, intervalMs: 10 });
      latencies.push(performance.now() - t0);
    }
    latencies.sort((x, y) => x - y);
    console.log(`# replication latency over ${latencies.length} events: median ${latencies[10].toFixed(1)} ms, max ${latencies.at(-1).toFixed(1)} ms`);
    assert.ok(latencies.at(-1) < 1000, `every event on the other nodes within a second: ${latencies.at(-1)} ms`);
    // Each picture is fetched ahead once, by its owner.
    await until(() => world.images.total() - downloads, (n) => n >= 20, { what: 'the pictures fetched ahead', timeoutMs: 20000 });
    const owners = await Promise.all(users.map(async (u) => (await fetch(`${nodes[0].url}/profile-banner/${u.pubkey}`)).headers.get('x-pfp-owner')));
    for (const [i, n] of nodes.entries()) {
      const s = await n.stats();
      const mine = owners.filter((o) => o === names[i]).length;
      await until(async () => (await n.stats()).downloads.processed - before[i].downloads.processed, (x) => x === mine, { what: `${names[i]} fetched its ${mine}`, timeoutMs: 20000 });
      assert.equal(s.cluster.events_unsent, before[i].cluster.events_unsent);
    }
    assert.equal((await nodes[0].stats()).cluster.events_forwarded - before[0].cluster.events_forwarded, 40);
    // A picture resized is answered from its download until its write commits; from the cache after.
    for (const n of nodes) await until(async () => (await n.stats()).cache.writes_pending, (w) => w === 0, { what: 'the pictures written' });
    for (const u of users) assert.equal((await picture(nginx.url, u.pubkey)).h('x-cache'), 'HIT');
    assert.equal(world.images.total() - downloads, 20);
  } finally {
    c.close();
  }
});

test('a node that was away catches up on the events published meanwhile, and /health names the node away', async () => {
  const away = 1;
  await nodes[away].stop();
  await until(async () => (await (await fetch(`${nodes[0].url}/health`)).json()).peers_unreachable, (p) => p?.length === 1, { what: '/health names the node away' });
  assert.deepEqual((await (await fetch(`${nodes[0].url}/health`)).json()).peers_unreachable, [names[away]]);
  const c = await rawClient(nodes[0].url);
  const missed = [];
  try {
    for (let k = 0; k < 30; k++) {
      const ev = newUser().sign({ kind: 0, content: JSON.stringify({ name: `missed-${k}` }) });
      assert.equal((await publishRaw(c, ev))[2], true);
      missed.push(ev.id);
    }
  } finally {
    c.close();
  }
  assert.ok((await nodes[0].stats()).cluster.events_unsent >= 30);
  nodes[away] = await startNode(away);
  await until(async () => (await Promise.all(missed.map((id) => has(nodes[away], id)))).every(Boolean), Boolean, {
    what: 'the restarted node has every event it missed',
    timeoutMs: 20000,
    intervalMs: 200,
  });
  const jobs = (await (await fetch(`${nodes[away].url}/jobs`)).json()).jobs.filter((j) => j.type === 'sync');
  assert.ok(jobs.some((j) => j.state === 'done' && j.ids_stored >= 30), JSON.stringify(jobs));
  const s = (await nodes[away].stats()).cluster;
  assert.ok(s.peers.every((p) => p.catchups >= 1), JSON.stringify(s.peers));
  await until(async () => (await (await fetch(`${nodes[0].url}/health`)).json()).peers_unreachable, (p) => p?.length === 0, { what: '/health: every node back' });
});

test('/p/{sha256}.{ext}: the profile API lists each cached file by its hash, immutable, served by any node', async () => {
  const u = await profileWithPicture('immutable');
  const pic = await picture(nginx.url, u.pubkey);
  assert.equal(pic.status, 200);
  const profile = await (await fetch(`${nginx.url}/profile/${u.pubkey}`)).json();
  const fileUrl = profile.picture.file_url;
  assert.match(fileUrl, /\/p\/[0-9a-f]{64}\.(webp|jpg|png|gif|avif)$/);
  const path = new URL(fileUrl).pathname;
  const hash = path.slice(3, 67);
  const ext = path.slice(68);
  // Every node answers it: the owner from its disk, the others by asking the others.
  for (const n of nodes) {
    const res = await fetch(`${n.url}${path}`);
    const body = Buffer.from(await res.arrayBuffer());
    assert.equal(res.status, 200, n.url);
    assert.equal(res.headers.get('cache-control'), 'public, max-age=31536000, immutable');
    assert.equal(res.headers.get('content-type'), `image/${ext === 'jpg' ? 'jpeg' : ext}`);
    assert.equal(res.headers.get('etag'), `"${hash}"`);
    assert.equal(createHash('sha256').update(body).digest('hex'), hash, 'the bytes are the ones the name says');
    assert.equal((await fetch(`${n.url}${path}`, { headers: { 'if-none-match': `"${hash}"` } })).status, 304);
  }
  const other = ext === 'jpg' ? 'png' : 'jpg';
  const cases = [
    [`/p/${hash}.${other}`, 404, /not of the type/],
    [`/p/${'0'.repeat(64)}.webp`, 404, /no cached file has this hash/],
    [`/p/${hash.toUpperCase()}.${ext}`, 400, /64 lowercase hex digits/],
    [`/p/${hash}.bmp`, 400, /jpg, jpeg, png, gif, webp or avif/],
    ['/p/abc', 400, /not \/p\/\{sha256\}\.\{ext\}/],
  ];
  for (const [target, status, message] of cases) {
    const res = await fetch(`${nginx.url}${target}`);
    assert.equal(res.status, status, target);
    assert.match((await res.json()).error, message, target);
  }
});

test("npub and NIP-05 requests through nginx end at the owner, with no download but the owner's one", async () => {
  const u = await profileWithPicture('named');
  nip05Names.named = u.pubkey;
  const downloads = world.images.total();
  for (const id of [nip19.npubEncode(u.pubkey), `named@${nip05Domain}`]) {
    const redirect = await fetch(`${nginx.url}/profile-pic/${id}`, { redirect: 'manual' });
    assert.equal(redirect.status, 307, id);
    assert.equal(redirect.headers.get('location'), `/profile-pic/${u.pubkey}`, id);
    const followed = await picture(nginx.url, id);
    assert.equal(followed.status, 200, id);
    assert.equal(followed.h('x-served-by'), followed.h('x-pfp-owner'), id);
  }
  assert.equal(world.images.total() - downloads, 1);
});

test('lookups ask the other nodes before the upstream relays', async () => {
  // On the upstream relay only; one node looks it up there and stores it (events from lookups are not passed on).
  const u = newUser();
  assert.equal((await publishRaw(upClient, u.sign({ kind: 0, content: JSON.stringify({ name: 'peers-first' }) })))[2], true);
  const first = await fetch(`${nodes[0].url}/profile/${u.pubkey}`);
  assert.equal(first.status, 200);
  await first.arrayBuffer();
  const asked = await upstream.metric('pfpcache_relay_subscriptions_total');
  // Another node finds it on the first: the upstream relay is not asked.
  const second = await fetch(`${nodes[1].url}/profile/${u.pubkey}`);
  assert.equal(second.status, 200);
  assert.equal((await second.json()).name, 'peers-first');
  assert.equal(await upstream.metric('pfpcache_relay_subscriptions_total'), asked);
  // What no node has is asked upstream after them.
  const missing = await fetch(`${nodes[1].url}/profile/${newUser().pubkey}`);
  assert.equal(missing.status, 404);
  assert.equal(await upstream.metric('pfpcache_relay_subscriptions_total'), asked + 1);
});

// A node closes a keep-alive connection idle for 10 s (h2o's HTTP/1 timeout). Were nginx to keep it longer, a
// request it sent as the node closed it would fail, and nginx would skip a healthy node for its fail_timeout.
test('the shipped nginx configuration closes idle connections to the nodes before the nodes do', () => {
  const upstreamBlock = readFileSync(SHIPPED, 'utf8').match(/upstream pfpcache \{([^}]*)\}/)[1];
  assert.match(upstreamBlock, /^\s*keepalive \d+;/m);
  const idle = upstreamBlock.match(/^\s*keepalive_timeout (\d+)s;/m);
  assert.ok(idle, 'keepalive_timeout is set in the upstream block (nginx keeps idle connections 60 s by default)');
  assert.ok(Number(idle[1]) < 10, `keepalive_timeout ${idle[1]}s is shorter than the nodes' 10 s`);
});

test('the cluster configuration is checked: nodes as nginx writes them, each once, and this node among them', async () => {
  const dir = await tempDir();
  const path = join(dir, 'config.json');
  const cases = [
    [{ cluster_nodes: ['127.0.0.1'], cluster_self: '127.0.0.1' }, /"cluster_nodes"\[0\].*"127\.0\.0\.1".*host:port/],
    [{ cluster_nodes: ['127.0.0.1:70000'], cluster_self: '127.0.0.1:70000' }, /"cluster_nodes"\[0\]/],
    [{ cluster_nodes: ['a:1', 'a:1'], cluster_self: 'a:1' }, /"cluster_nodes"\[1\] is "a:1" again; allowed: each node once/],
    [{ cluster_nodes: ['a:1', 'b:1'], cluster_self: 'c:1' }, /"cluster_self" is "c:1"; allowed: one of "cluster_nodes"/],
    [{ cluster_nodes: ['a:1', 'b:1'] }, /"cluster_self" is ""; allowed: one of "cluster_nodes"/],
    [{ cluster_self: 'a:1' }, /"cluster_self" is "a:1"; allowed: "" while "cluster_nodes" is empty/],
  ];
  for (const [config, message] of cases) {
    await writeFile(path, JSON.stringify(testConfig(dir, config)));
    const r = await runBinary(['--config', path, '--check']);
    assert.equal(r.code, 2, JSON.stringify(config));
    assert.match(r.stderr, message, JSON.stringify(config));
  }
  await writeFile(path, JSON.stringify(testConfig(dir, { cluster_nodes: ['[::1]:8081', 'node-b.internal:8082'], cluster_self: '[::1]:8081' })));
  assert.equal((await runBinary(['--config', path, '--check'])).code, 0);
});
