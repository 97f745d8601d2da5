// pictures.mjs -- GET /profile-pic benchmarks:
//   hit path: wrk on one cached picture, against nginx (one worker) serving the same bytes, in one run;
//   scale: 100,000 cached pubkeys requested at random (wrk Lua script), against nginx serving a file per pubkey;
//   coalescing: 500 concurrent requests for one uncached pubkey: upstream queries and downloads;
//   memory: the relay's heap through a burst of 200 misses for distinct pictures.
import { execFileSync } from 'node:child_process';
import { linkSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';

import { startImageServer } from '../tests/e2e/lib/images.mjs';
import { startRelay } from '../tests/e2e/lib/relay.mjs';
import { NGINX_OPEN_FILES, WRK, benchDir, fmt, here, openSocket, publishAll, startNginx, wrkRounds } from './lib.mjs';

const PUBKEYS = Number(process.env.PICTURE_PUBKEYS ?? 100000);
const DISTINCT = 1000;
const tools = process.env.BENCH_TOOLS ?? here('../build/release/bench');
const dir = benchDir();
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

function get(url) {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      })
      .on('error', reject);
  });
}

async function inParallel(items, limit, fn) {
  let next = 0;
  await Promise.all(Array.from({ length: limit }, async () => {
    while (next < items.length) await fn(items[next++]);
  }));
}

const heap = (pid) => Number(/^RssAnon:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;

const sources = join(dir, 'sources');
mkdirSync(sources);
execFileSync(join(tools, 'corpus'), ['distinct', sources, String(DISTINCT)]);
const images = await startImageServer(sources);
const shared = { allowed_source_addresses: ['127.0.0.1'], precache_on_metadata: false };
const relay = await startRelay({ dir: join(dir, 'relay'), config: shared });

try {
  // Fill the cache: PUBKEYS profiles over DISTINCT pictures, each requested once.
  const profiles = execFileSync(join(tools, 'sign_profiles'), [String(PUBKEYS), `${images.url}/f/p%d.jpg`, String(DISTINCT)], {
    encoding: 'utf8',
    maxBuffer: 1 << 30,
  }).trim().split('\n');
  const pubkeys = profiles.map((l) => JSON.parse(l).pubkey);
  const sockets = await Promise.all([0, 1, 2, 3].map(() => openSocket(relay.url)));
  await Promise.all(sockets.map((ws, c) => publishAll(ws, profiles.filter((_, i) => i % 4 === c))));
  for (const ws of sockets) ws.close();
  const t0 = performance.now();
  await inParallel(pubkeys, 64, async (pk) => {
    const r = await get(`${relay.url}/profile-pic/${pk}`);
    if (r.status !== 200) throw new Error(`${pk}: ${r.status} ${r.body}`);
  });
  const fill = (performance.now() - t0) / 1000;

  // nginx serves the same bytes the relay serves: the first pubkey's picture, and each pubkey's picture
  // as a file named by the pubkey (hard links to one file per distinct picture).
  const first = await get(`${relay.url}/profile-pic/${pubkeys[0]}`);
  const www = join(dir, 'www');
  mkdirSync(join(www, 'p'), { recursive: true });
  mkdirSync(join(www, 'k'));
  writeFileSync(join(www, 'pic.jpg'), first.body);
  for (let i = 0; i < DISTINCT; i++) {
    const r = await get(`${relay.url}/profile-pic/${pubkeys[i]}`);
    writeFileSync(join(www, 'p', `${i}.jpg`), r.body);
  }
  pubkeys.forEach((pk, i) => linkSync(join(www, 'p', `${i % DISTINCT}.jpg`), join(www, 'k', pk)));
  const keysFile = join(dir, 'pubkeys.txt');
  writeFileSync(keysFile, pubkeys.join('\n') + '\n');
  // The reference for the random run: the same script, so wrk does the same work per request, over one pubkey.
  const oneKeyFile = join(dir, 'pubkey.txt');
  writeFileSync(oneKeyFile, pubkeys[0] + '\n');
  const lua = join(dir, 'random.lua');
  writeFileSync(lua, `local keys = {}
for line in io.lines(os.getenv("PFP_KEYS")) do keys[#keys + 1] = line end
math.randomseed(os.time())
local prefix = os.getenv("PFP_PREFIX")
request = function() return wrk.format("GET", prefix .. keys[math.random(#keys)]) end
`);
  const nginx = await startNginx(www, join(dir, 'nginx'));
  let single, theirs, random, theirsRandom, scripted;
  try {
    [single, theirs, random, theirsRandom, scripted] = wrkRounds([
      { url: `${relay.url}/profile-pic/${pubkeys[0]}` },
      { url: `${nginx.url}/pic.jpg` },
      { url: relay.url, script: lua, env: { PFP_KEYS: keysFile, PFP_PREFIX: '/profile-pic/' } },
      { url: nginx.url, script: lua, env: { PFP_KEYS: keysFile, PFP_PREFIX: '/k/' } },
      { url: relay.url, script: lua, env: { PFP_KEYS: oneKeyFile, PFP_PREFIX: '/profile-pic/' } },
    ]);
  } finally {
    await nginx.stop();
  }
  console.log(`picture hits (${first.body.length}-byte JPEG; wrk -t${WRK.threads} -c${WRK.connections} -d${WRK.seconds}s, median of ${WRK.rounds} rounds)`);
  console.log(`  pfpcache-relay, one pubkey            ${fmt(single).padStart(10)} req/s`);
  console.log(`  nginx, the same bytes as a file       ${fmt(theirs).padStart(10)} req/s`);
  console.log(`  ratio relay/nginx                     ${(single / theirs).toFixed(2).padStart(10)}`);
  console.log(`  ${fmt(PUBKEYS)} pubkeys at random (wrk Lua script), ${DISTINCT} distinct pictures:`);
  console.log(`  pfpcache-relay                        ${fmt(random).padStart(10)} req/s`);
  console.log(`  nginx, a file per pubkey              ${fmt(theirsRandom).padStart(10)} req/s  (open_file_cache ${fmt(NGINX_OPEN_FILES)})`);
  console.log(`  ratio relay/nginx                     ${(random / theirsRandom).toFixed(2).padStart(10)}`);
  console.log(`  ratio to one pubkey through the script ${(random / scripted).toFixed(2).padStart(9)}`);
  console.log(`  (filling the cache: ${fmt(PUBKEYS)} misses over ${DISTINCT} pictures took ${fill.toFixed(1)} s)`);
} finally {
  await relay.cleanup();
}

// Coalescing: the profile lives on an upstream relay only, the picture on the image server.
const upstream = await startRelay({ dir: join(dir, 'upstream'), config: { log_level: 'debug' } });
const main = await startRelay({
  dir: join(dir, 'main'),
  config: { ...shared, upstream_relays: [upstream.url.replace(/^http/, 'ws')] },
});
try {
  await main.waitForLog(/connected/);
  const [profile] = execFileSync(join(tools, 'sign_profiles'), ['1', `${images.url}/f/p7.jpg?coalesce`, '1'], { encoding: 'utf8' }).trim().split('\n');
  const ws = await openSocket(upstream.url);
  await publishAll(ws, [profile]);
  ws.close();
  const pk = JSON.parse(profile).pubkey;
  const reqs = () => (upstream.stderr.match(/relay: REQ "pfp/g) ?? []).length;
  const downloads = () => images.hits.get('/f/p7.jpg') ?? 0;
  const [r0, d0] = [reqs(), downloads()];
  const answers = await Promise.all(Array.from({ length: 500 }, () => get(`${main.url}/profile-pic/${pk}`)));
  const ok = answers.filter((a) => a.status === 200).length;
  console.log(`coalescing (500 concurrent requests for one uncached pubkey whose profile is upstream)`);
  console.log(`  answered 200: ${ok}; upstream queries: ${reqs() - r0}; downloads: ${downloads() - d0}`);

  // Memory: 200 misses at once, each a different picture.
  const burst = execFileSync(join(tools, 'sign_profiles'), ['200', `${images.url}/f/p%d.jpg?burst`, '200'], { encoding: 'utf8' }).trim().split('\n');
  const bws = await openSocket(main.url);
  await publishAll(bws, burst);
  bws.close();
  const before = heap(main.proc.pid);
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, heap(main.proc.pid))), 20);
  await Promise.all(burst.map((l) => get(`${main.url}/profile-pic/${JSON.parse(l).pubkey}`)));
  clearInterval(sampler);
  console.log(`memory (200 concurrent misses for distinct pictures)`);
  console.log(`  relay heap before ${before.toFixed(1)} MiB, peak ${peak.toFixed(1)} MiB`);
} finally {
  await main.cleanup();
  await upstream.cleanup();
  await images.close();
  agent.destroy();
  rmSync(dir, { recursive: true, force: true });
}
