// cluster.test.mjs -- nodes behind nginx's `hash $key consistent` (issue 16): a real nginx running the shipped
// deploy/nginx/pfpcache-cluster.conf in front of three instances picks, for every key, the node the instances
// name in X-Pfp-Owner; keys spelled other than in lowercase hex are sent to their canonical URL and end at the
// owner; the cluster's configuration is checked.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { nip19 } from 'nostr-tools';

import { startNginx } from './lib/nginx.mjs';
import { freePort, runBinary, startRelay, tempDir, testConfig } from './lib/relay.mjs';

const NODES = 3;
let nodes = [];
let names = [];
let nginx;

before(async () => {
  const ports = [];
  while (ports.length < NODES) {
    const p = await freePort();
    if (!ports.includes(p)) ports.push(p);
  }
  names = ports.map((p) => `127.0.0.1:${p}`);
  nodes = await Promise.all(
    names.map((self) => startRelay({ config: { listen_addr: self, cluster_nodes: names, cluster_self: self, max_connections_per_ip: 0 } })),
  );
  nginx = await startNginx(await tempDir(), names);
});

after(async () => {
  await nginx?.stop();
  for (const n of nodes) await n.cleanup();
});

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
