// attack_downloads.mjs -- how long an unrelated uncached picture takes while origins that accept and never
// answer hold downloads, against the same picture with no attack, in the same run:
//   one host: 20 such origins on 127.0.0.1 (ports of one host), a request for each picture;
//   twenty hosts: the same with max_downloads_per_host at 20, as if each origin were a host of its own.
// ROUNDS (3) rounds each, median. PFP_BIN picks the binary, so that the one before the fix can be measured too.
import { mkdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';

import { makeFixtures, startImageServer } from '../tests/e2e/lib/images.mjs';
import { newUser, now, publishRaw, rawClient } from '../tests/e2e/lib/nostr.mjs';
import { startRelay } from '../tests/e2e/lib/relay.mjs';
import { benchDir, median } from './lib.mjs';

const ROUNDS = Number(process.env.ROUNDS ?? 3);
const STALLS = 20;
const dir = benchDir();

// Origins on 127.0.0.1 that accept and never answer; close() cuts what they hold and refuses what comes after.
async function startStalls(n) {
  const sockets = new Set();
  const servers = await Promise.all(
    Array.from({ length: n }, () => new Promise((resolve) => {
      const server = createServer((socket) => {
        sockets.add(socket);
        socket.on('error', () => {});
        socket.on('close', () => sockets.delete(socket));
      });
      server.listen(0, '127.0.0.1', () => resolve(server));
    })),
  );
  return {
    ports: servers.map((s) => s.address().port),
    close: () => {
      for (const s of sockets) s.destroy();
      return Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    },
  };
}

async function profile(client, picture) {
  const user = newUser();
  const ok = await publishRaw(client, user.sign({ kind: 0, created_at: now(), content: JSON.stringify({ picture }) }));
  if (ok[2] !== true) throw new Error(`refused: ${ok[3]}`);
  return user.pubkey;
}

async function get(relay, pubkey) {
  const res = await fetch(`${relay.url}/profile-pic/${pubkey}`, { redirect: 'manual' });
  await res.arrayBuffer();
  return res.status;
}

// Milliseconds to GET the picture of `pubkey`, which must be served.
async function timed(relay, pubkey) {
  const t0 = performance.now();
  const status = await get(relay, pubkey);
  if (status !== 200) throw new Error(`the unrelated picture got ${status}`);
  return performance.now() - t0;
}

async function scenario(name, config, images) {
  const relay = await startRelay({ dir: join(dir, name.replace(/ /g, '-')), config });
  const client = await rawClient(relay.url);
  const during = [];
  const without = [];
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const stalls = await startStalls(STALLS);
      const victims = [];
      for (const port of stalls.ports) victims.push(await profile(client, `http://127.0.0.1:${port}/r${round}.jpg`));
      const attacked = await profile(client, `http://localhost:${images.port}/f/big.jpg?during=${round}`);
      const quiet = await profile(client, `http://localhost:${images.port}/f/big.jpg?without=${round}`);
      const misses = async () => (await relay.metrics()).get('pfpcache_picture_requests_total', { result: 'miss' });
      const before = await misses();
      const answers = victims.map((pk) => get(relay, pk).catch(() => 0));
      await relay.waitFor(async () => (await misses()) - before === STALLS, 'the attack taken up', 10000);
      during.push(await timed(relay, attacked));
      await stalls.close();
      await Promise.all(answers);
      without.push(await timed(relay, quiet));
    }
  } finally {
    client.close();
    await relay.cleanup();
  }
  const d = median(during);
  const w = median(without);
  console.log(`${name}: ${STALLS} origins that accept and never answer, a request for each of their pictures`);
  console.log(`  an unrelated uncached picture: ${d.toFixed(0)} ms during the attack, ${w.toFixed(0)} ms without ` +
    `(${(d / w).toFixed(1)} times as long), median of ${ROUNDS}`);
}

mkdirSync(join(dir, 'fixtures'));
const fixtures = makeFixtures(join(dir, 'fixtures'));
const images = await startImageServer(fixtures);
const shared = { allowed_source_addresses: ['127.0.0.1'], precache_on_metadata: false };
try {
  await scenario('one host', shared, images);
  await scenario('twenty hosts', { ...shared, max_downloads_per_host: STALLS }, images);
} finally {
  await images.close();
  rmSync(dir, { recursive: true, force: true });
}
