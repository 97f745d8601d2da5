// hit_cpu.mjs -- the server's own CPU time per cached picture served, for pfpcache-relay and for nginx
// (one worker) serving the same bytes as a file, at 8, 50 and 200 client connections. CPU time (user and
// system, all threads, from /proc) per request holds steady on a shared machine where requests per second
// do not, and shows what each request costs at the concurrency clients bring.
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { startImageServer } from '../tests/e2e/lib/images.mjs';
import { startRelay } from '../tests/e2e/lib/relay.mjs';
import { WRK, benchDir, cpuMicros, here, median, openSocket, publishAll, startNginx, wrkRun } from './lib.mjs';

const CONNECTIONS = (process.env.HIT_CONNECTIONS ?? '8,50,200').split(',').map(Number);
const tools = process.env.BENCH_TOOLS ?? here('../build/release/bench');
const dir = benchDir();

// Microseconds of the server's CPU per request over one wrk run.
function cpuPerRequest(url, pid, connections) {
  const before = cpuMicros(pid);
  const { requests } = wrkRun(url, { connections });
  return (cpuMicros(pid) - before) / requests;
}

const sources = join(dir, 'sources');
mkdirSync(sources);
execFileSync(join(tools, 'corpus'), ['distinct', sources, '1']);
const images = await startImageServer(sources);
const relay = await startRelay({
  dir: join(dir, 'relay'),
  config: { allowed_source_addresses: ['127.0.0.1'], precache_on_metadata: false },
});
let nginx;
try {
  const [profile] = execFileSync(join(tools, 'sign_profiles'), ['1', `${images.url}/f/p%d.jpg`, '1'], { encoding: 'utf8' })
    .trim()
    .split('\n');
  const ws = await openSocket(relay.url);
  await publishAll(ws, [profile]);
  ws.close();
  const picture = `${relay.url}/profile-pic/${JSON.parse(profile).pubkey}`;
  const res = await fetch(picture);
  if (res.status !== 200) throw new Error(`${picture}: ${res.status}`);
  const body = Buffer.from(await res.arrayBuffer());
  const www = join(dir, 'www');
  mkdirSync(www);
  writeFileSync(join(www, 'pic.jpg'), body);
  nginx = await startNginx(www, join(dir, 'nginx'));

  console.log(`server CPU per cached picture (${body.length}-byte JPEG; wrk -t${WRK.threads} -d${WRK.seconds}s, median of ${WRK.rounds} rounds)`);
  console.log('  connections   pfpcache-relay      nginx   ratio relay/nginx');
  for (const c of CONNECTIONS) {
    const ours = [];
    const theirs = [];
    for (let r = 0; r < WRK.rounds; r++) {
      ours.push(cpuPerRequest(picture, relay.proc.pid, c));
      theirs.push(cpuPerRequest(`${nginx.url}/pic.jpg`, nginx.pid, c));
    }
    const [o, t] = [median(ours), median(theirs)];
    console.log(`  ${String(c).padStart(11)} ${o.toFixed(1).padStart(11)} µs ${t.toFixed(1).padStart(7)} µs ${(o / t).toFixed(2).padStart(11)}`);
  }
} finally {
  await nginx?.stop();
  await relay.cleanup();
  await images.close();
  rmSync(dir, { recursive: true, force: true });
}
