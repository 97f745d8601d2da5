// cdn.test.mjs -- a CDN in front (issue 16): Debian's Varnish runs the shipped deploy/varnish/pfpcache.vcl in
// front of the relay. Varnish caches a picture; when the pubkey's kind 0 changes its picture, the relay bans the
// pubkey's answers (BAN with Surrogate-Key) and the next request through Varnish gets the new bytes; an admin
// purge of the pubkey bans it too.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { serveFixtures, stopFixtures } from './lib/images.mjs';
import { newUser, now, publishRaw, rawClient } from './lib/nostr.mjs';
import { REPO, freePort, startRelay, tempDir, until } from './lib/relay.mjs';
import { worldConfig } from './lib/world.mjs';

const VCL = join(REPO, 'deploy/varnish/pfpcache.vcl');
let world, upstream, upClient, relay, varnish, varnishUrl, dir;

// Starts varnishd in the foreground on a free port, with the shipped VCL pointed at the relay.
async function startVarnish(backendPort) {
  const port = await freePort();
  let vcl = await readFile(VCL, 'utf8');
  assert.match(vcl, /\.port = "8080";/, 'the shipped VCL has the line the test replaces');
  vcl = vcl.replace('.port = "8080";', `.port = "${backendPort}";`);
  await mkdir(join(dir, 'varnish'), { recursive: true });
  await chmod(dir, 0o755);
  await writeFile(join(dir, 'pfpcache.vcl'), vcl);
  const proc = spawn(
    '/usr/sbin/varnishd',
    ['-F', '-j', 'none', '-a', `127.0.0.1:${port}`, '-f', join(dir, 'pfpcache.vcl'), '-n', join(dir, 'varnish'), '-s', 'malloc,32m'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let log = '';
  proc.stdout.on('data', (c) => (log += c));
  proc.stderr.on('data', (c) => (log += c));
  const exited = new Promise((resolve) => proc.on('exit', resolve));
  const url = `http://127.0.0.1:${port}`;
  // Any answer will do: its backend, the relay, starts after it.
  await until(
    () => fetch(`${url}/health`).then(() => true, () => proc.exitCode !== null),
    Boolean,
    { what: `varnish answering on ${url}`, timeoutMs: 20000, intervalMs: 100 },
  );
  if (proc.exitCode !== null) throw new Error(`varnishd exited:\n${log}`);
  return {
    url,
    async stop() {
      if (proc.exitCode === null) proc.kill('SIGTERM');
      await exited;
    },
  };
}

before(async () => {
  dir = await tempDir();
  world = await serveFixtures();
  upstream = await startRelay();
  upClient = await rawClient(upstream.url);
  // Varnish needs the relay's port, and the relay Varnish's: the relay's is chosen first.
  const port = await freePort();
  varnish = await startVarnish(port);
  varnishUrl = varnish.url;
  relay = await startRelay({
    config: worldConfig(upstream, { listen_addr: `127.0.0.1:${port}`, precache_on_metadata: true, cdn_purge_url: `${varnishUrl}/` }),
  });
  await relay.waitUpstreamConnected();
  // Varnish holds a backend off for a moment after a refused connection, as while the relay was starting.
  await until(() => fetch(`${varnishUrl}/health`).then((r) => r.status), (s) => s === 200, { what: 'Varnish reaching the relay' });
});

after(async () => {
  await varnish?.stop();
  await relay?.cleanup();
  upClient?.close();
  await upstream?.cleanup();
  if (world) await stopFixtures(world);
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function viaVarnish(pubkey) {
  const res = await fetch(`${varnishUrl}/profile-pic/${pubkey}`);
  return { status: res.status, body: Buffer.from(await res.arrayBuffer()), age: Number(res.headers.get('age')), key: res.headers.get('surrogate-key') };
}

test('after a kind 0 changes the picture, the next request through Varnish gets the new bytes', async () => {
  const u = newUser();
  const first = u.sign({ kind: 0, created_at: now() - 60, content: JSON.stringify({ picture: `${world.images.url}/f/small.jpg?cdn` }) });
  assert.equal((await publishRaw(upClient, first))[2], true);
  const a = await viaVarnish(u.pubkey);
  assert.equal(a.status, 200);
  assert.equal(a.key, u.pubkey);
  // Cached by Varnish: the second answer is its own, the relay not asked.
  const hits = (await relay.stats()).cache.hits;
  const cached = await viaVarnish(u.pubkey);
  assert.deepEqual(cached.body, a.body);
  assert.equal((await relay.stats()).cache.hits, hits, 'Varnish answered from its cache');

  const c = await rawClient(relay.url);
  try {
    const second = u.sign({ kind: 0, created_at: now(), content: JSON.stringify({ picture: `${world.images.url}/f/image.webp?cdn` }) });
    assert.equal((await publishRaw(c, second))[2], true);
  } finally {
    c.close();
  }
  await until(async () => (await relay.stats()).cdn.purges_sent, (n) => n >= 1, { what: 'the relay told Varnish', timeoutMs: 20000 });
  const b = await viaVarnish(u.pubkey);
  assert.equal(b.status, 200);
  assert.notDeepEqual(b.body, a.body, 'the new picture, not the one Varnish held');
  const direct = Buffer.from(await (await fetch(`${relay.url}/profile-pic/${u.pubkey}`)).arrayBuffer());
  assert.deepEqual(b.body, direct);
  assert.equal((await relay.stats()).cdn.purges_failed, 0);
  assert.equal(await relay.metric('pfpcache_cdn_purges_total', { outcome: 'sent' }), 1);
});

test('an admin purge of a pubkey bans its answers in Varnish', async () => {
  const u = newUser();
  assert.equal((await publishRaw(upClient, u.sign({ kind: 0, content: JSON.stringify({ picture: `${world.images.url}/f/small.jpg?purged` }) })))[2], true);
  assert.equal((await viaVarnish(u.pubkey)).status, 200);
  const sent = (await relay.stats()).cdn.purges_sent;
  const res = await fetch(`${relay.url}/purge-profile-pic/${u.pubkey}`, { method: 'DELETE' });
  assert.equal(res.status, 200);
  await until(async () => (await relay.stats()).cdn.purges_sent, (n) => n === sent + 1, { what: 'the purge reached Varnish' });
  // Varnish asks the relay again, which has nothing cached now and fetches the picture anew.
  const misses = (await relay.stats()).cache.misses;
  assert.equal((await viaVarnish(u.pubkey)).status, 200);
  assert.equal((await relay.stats()).cache.misses, misses + 1);
});
