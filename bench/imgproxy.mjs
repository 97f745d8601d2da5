// imgproxy.mjs -- the imgproxy-compatible endpoint:
//   a hit on `rs:fit:128:128/f:webp` of a cached source, wrk against nginx (one worker) serving the same bytes, in one run;
//   new sources made into `rs:fit:256:256` (each a download, a master and a variant, one request at a time, the clock
//   stopped once every master is stored) against
//   sharp doing the same work on the same bytes (master WebP within 1024, then 256 px JPEG at image_quality 85),
//   one thread each, rounds alternating. sharp comes from loadSharp() (bench/lib.mjs).
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';

import { startImageServer } from '../tests/e2e/lib/images.mjs';
import { startRelay } from '../tests/e2e/lib/relay.mjs';
import { SHARP_VERSION, WRK, benchDir, fmt, here, loadSharp, median, startNginx, wrk } from './lib.mjs';

const PICTURES = Number(process.env.IMGPROXY_PICTURES ?? 100);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const tools = process.env.BENCH_TOOLS ?? here('../build/release/bench');
const header = readFileSync(here('../src/image.h'), 'utf8');
const MASTER_QUALITY = Number(header.match(/#define IMAGE_MASTER_QUALITY\s+(\d+)/)[1]);
const dir = benchDir();
// A connection per request: sharp's rounds in between outlast the relay's keep-alive timeout.
const agent = false;

const sharp = loadSharp();

function get(url, headers = { accept: '*/*' }) {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent, headers }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      })
      .on('error', reject);
  });
}

const b64url = (s) => Buffer.from(s).toString('base64url');
const spread = (values) => `${Math.min(...values).toFixed(2)}-${Math.max(...values).toFixed(2)}`;

const sources = join(dir, 'sources');
mkdirSync(sources);
// Sources larger than the masters, so that every master is 1024 px, as most avatars' are once downloaded.
// A picture of its own for every request of every round: the same bytes again would make the same master, whose
// variant is then already made.
execFileSync(join(tools, 'corpus'), ['distinct', sources, String(PICTURES * ROUNDS + 1), '1200']);
const images = await startImageServer(sources);
const relay = await startRelay({
  dir: join(dir, 'relay'),
  config: { allowed_source_addresses: ['127.0.0.1'], precache_on_metadata: false, imgproxy_allow_unsigned: true },
});
const imgproxy = (options, source) => `${relay.url}/imgproxy/insecure/${options}/${b64url(source)}`;

try {
  // 1. Hits: a cached 128 px WebP of one source, against nginx serving its bytes.
  const url = imgproxy('rs:fit:128:128/f:webp', `${images.url}/f/p${PICTURES * ROUNDS}.jpg`);
  const variant = await get(url);
  const again = await get(url);
  if (variant.status !== 200 || again.headers['x-cache'] !== 'HIT') throw new Error(`${url}: ${variant.status} ${again.headers['x-cache']} ${variant.body}`);
  const www = join(dir, 'www');
  mkdirSync(www);
  writeFileSync(join(www, 'pic.webp'), variant.body);
  const nginx = await startNginx(www, join(dir, 'nginx'));
  const ours = [];
  const theirs = [];
  try {
    for (let r = 0; r < WRK.rounds; r++) {
      ours.push(wrk(url));
      theirs.push(wrk(`${nginx.url}/pic.webp`));
    }
  } finally {
    await nginx.stop();
  }
  const hitRatios = ours.map((o, i) => o / theirs[i]);

  // 2. New sources: ROUNDS rounds of PICTURES distinct pictures (each a new download, master and variant),
  // and variant each time), one request at a time, alternating with sharp over the same bytes.
  const bytes = Array.from({ length: PICTURES * ROUNDS }, (_, i) => readFileSync(join(sources, `p${i}.jpg`)));
  const sharpOne = async (buf) => {
    const master = await sharp(buf)
      .rotate()
      .resize(1024, 1024, { fit: 'inside', withoutEnlargement: true })
      .webp({ quality: MASTER_QUALITY, effort: 4 })
      .toBuffer();
    return sharp(master).resize(256, 256, { fit: 'inside', withoutEnlargement: true }).flatten({ background: '#ffffff' }).jpeg({ quality: 85 }).toBuffer();
  };
  const settled = async () => {
    const until = Date.now() + 60_000;
    while ((await relay.stats()).imgproxy.running > 0) {
      if (Date.now() > until) throw new Error('the relay was still making masters a minute after its last answer');
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
  };
  const latencies = [];
  const oursRates = [];
  const sharpRates = [];
  let oursBytes = 0;
  let sharpBytes = 0;
  for (let r = 0; r < ROUNDS; r++) {
    let t0 = performance.now();
    for (let i = 0; i < PICTURES; i++) {
      const u = imgproxy('rs:fit:256:256', `${images.url}/f/p${r * PICTURES + i}.jpg`);
      const t1 = performance.now();
      const a = await get(u);
      latencies.push(performance.now() - t1);
      if (a.status !== 200 || a.headers['x-cache'] !== 'MISS') throw new Error(`${u}: ${a.status} ${a.headers['x-cache']} ${a.body}`);
      if (r === 0) oursBytes += a.body.length;
    }
    // Answers may come before their masters are encoded: the round ends once every master is stored.
    await settled();
    oursRates.push(PICTURES / ((performance.now() - t0) / 1000));
    t0 = performance.now();
    for (const buf of bytes.slice(r * PICTURES, (r + 1) * PICTURES)) {
      const out = await sharpOne(buf);
      if (r === 0) sharpBytes += out.length;
    }
    sharpRates.push(PICTURES / ((performance.now() - t0) / 1000));
  }
  const newRatios = oursRates.map((o, i) => o / sharpRates[i]);
  const { imgproxy: stats } = await relay.stats();
  if (stats.early_answers < PICTURES * ROUNDS) throw new Error(`only ${stats.early_answers} answers before their masters`);
  if (stats.sources_fetched < PICTURES * ROUNDS + 1) throw new Error(`only ${stats.sources_fetched} sources fetched`);

  console.log(
    `imgproxy hits (${variant.body.length}-byte rs:fit:128:128/f:webp; wrk -t${WRK.threads} -c${WRK.connections} -d${WRK.seconds}s, median of ${WRK.rounds} rounds)`,
  );
  console.log(`  pfpcache-relay, /imgproxy/insecure/rs:fit:128:128/f:webp ${fmt(median(ours)).padStart(10)} req/s`);
  console.log(`  nginx, the same bytes as a file                       ${fmt(median(theirs)).padStart(10)} req/s`);
  console.log(`  ratio relay/nginx                                     ${median(hitRatios).toFixed(2).padStart(10)}   (rounds ${spread(hitRatios)})`);
  console.log(
    `imgproxy new sources (${PICTURES} distinct 1200 px JPEGs into rs:fit:256:256, JPEG Q85 from a 1024 px master; one at a time, median of ${ROUNDS} rounds)`,
  );
  console.log(`  pfpcache-relay (download + master + variant) ${median(oursRates).toFixed(1).padStart(8)} images/s  ${String(oursBytes).padStart(8)} bytes out`);
  console.log(`  pfpcache-relay, each answer's latency (median)   ${median(latencies).toFixed(1).padStart(8)} ms`);
  console.log(`  sharp ${SHARP_VERSION} (libvips ${sharp.versions.vips}), same bytes   ${median(sharpRates).toFixed(1).padStart(8)} images/s  ${String(sharpBytes).padStart(8)} bytes out`);
  console.log(
    `  ratio relay/sharp: throughput ${median(newRatios).toFixed(2)} (rounds ${spread(newRatios)}), bytes ${(oursBytes / sharpBytes).toFixed(3)}`,
  );
} finally {
  await relay.cleanup();
  await images.close();
  rmSync(dir, { recursive: true, force: true });
}
