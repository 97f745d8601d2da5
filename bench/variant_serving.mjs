// variant_serving.mjs -- serving variants of cached pictures:
//   a hit on a cached 128 px WebP variant, wrk against nginx (one worker) serving the same bytes, in one run;
//   the first request of a new variant of a cached master (made on the image threads), p50 and p99 latency,
//   next to a hit's on the same URLs.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';

import { startImageServer } from '../tests/e2e/lib/images.mjs';
import { startRelay } from '../tests/e2e/lib/relay.mjs';
import { WRK, benchDir, fmt, here, openSocket, publishAll, startNginx, wrkRounds } from './lib.mjs';

const PICTURES = Number(process.env.VARIANT_PICTURES ?? 200);
const tools = process.env.BENCH_TOOLS ?? here('../build/release/bench');
const dir = benchDir();
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function get(url) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    http
      .get(url, { agent }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks), ms: Number(process.hrtime.bigint() - t0) / 1e6 }),
        );
      })
      .on('error', reject);
  });
}

const quantile = (values, q) => {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};

const sources = join(dir, 'sources');
mkdirSync(sources);
// Sources larger than the masters, so that every master is 1024 px, as most avatars' are once downloaded.
execFileSync(join(tools, 'corpus'), ['distinct', sources, String(PICTURES), '1200']);
const images = await startImageServer(sources);
const relay = await startRelay({ dir: join(dir, 'relay'), config: { allowed_source_addresses: ['127.0.0.1'], precache_on_metadata: false } });

try {
  const profiles = execFileSync(join(tools, 'sign_profiles'), [String(PICTURES), `${images.url}/f/p%d.jpg`, String(PICTURES)], {
    encoding: 'utf8',
  }).trim().split('\n');
  const pubkeys = profiles.map((l) => JSON.parse(l).pubkey);
  const ws = await openSocket(relay.url);
  await publishAll(ws, profiles);
  ws.close();
  for (const pk of pubkeys) {
    const r = await get(`${relay.url}/profile-pic/${pk}`);
    if (r.status !== 200) throw new Error(`${pk}: ${r.status} ${r.body}`);
  }

  // One at a time, so that each latency is the request's own: the first request of a variant, then the same again.
  const first = [];
  const hit = [];
  for (const pk of pubkeys) {
    const url = `${relay.url}/profile-pic/${pk}?size=256&format=webp`;
    const a = await get(url);
    const b = await get(url);
    if (a.status !== 200 || a.headers['x-cache'] !== 'MISS' || b.headers['x-cache'] !== 'HIT') throw new Error(`${url}: ${a.status} ${a.headers['x-cache']} ${b.headers['x-cache']}`);
    first.push(a.ms);
    hit.push(b.ms);
  }

  const url = `${relay.url}/profile-pic/${pubkeys[0]}?size=128&format=webp`;
  const variant = await get(url);
  const www = join(dir, 'www');
  mkdirSync(www);
  writeFileSync(join(www, 'pic.webp'), variant.body);
  const nginx = await startNginx(www, join(dir, 'nginx'));
  let ours, theirs;
  try {
    [ours, theirs] = wrkRounds([{ url }, { url: `${nginx.url}/pic.webp` }]);
  } finally {
    await nginx.stop();
  }
  console.log(`variant hits (${variant.body.length}-byte 128 px WebP; wrk -t${WRK.threads} -c${WRK.connections} -d${WRK.seconds}s, median of ${WRK.rounds} rounds)`);
  console.log(`  pfpcache-relay, ?size=128&format=webp ${fmt(ours).padStart(10)} req/s`);
  console.log(`  nginx, the same bytes as a file       ${fmt(theirs).padStart(10)} req/s`);
  console.log(`  ratio relay/nginx                     ${(ours / theirs).toFixed(2).padStart(10)}`);
  console.log(`first request of a new variant (256 px WebP of ${PICTURES} cached 1024 px masters, one at a time)`);
  console.log(`  new variant   p50 ${quantile(first, 0.5).toFixed(2).padStart(7)} ms   p99 ${quantile(first, 0.99).toFixed(2).padStart(7)} ms`);
  console.log(`  then a hit    p50 ${quantile(hit, 0.5).toFixed(2).padStart(7)} ms   p99 ${quantile(hit, 0.99).toFixed(2).padStart(7)} ms`);
  console.log(`  ratio new/hit at p50                  ${(quantile(first, 0.5) / quantile(hit, 0.5)).toFixed(1).padStart(10)}`);
} finally {
  await relay.cleanup();
  await images.close();
}
