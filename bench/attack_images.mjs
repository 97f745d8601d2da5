// attack_images.mjs -- what hostile pictures cost the relay when they are only published, never requested:
// kind 0 profiles naming a 2,080-scan arithmetic-coded JPEG (scans.jpg) or a PNG whose data runs on for 2 GiB
// past its last row (trailing.png) are fetched ahead as they are stored. For each attack: the relay's CPU
// seconds until every hostile picture is done with, its peak RSS over what it held before, and the latency of
// an unrelated picture (a MISS) and of /health while the attack runs, each against the same request on the
// same relay before the attack (the reference). PFP_BIN picks the binary, so that the figures before and
// after a change come from the same script.
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';

import { makeFixtures, makeHostile, startImageServer } from '../tests/e2e/lib/images.mjs';
import { newUser, now, publishRaw, rawClient } from '../tests/e2e/lib/nostr.mjs';
import { BIN, startRelay, until } from '../tests/e2e/lib/relay.mjs';
import { benchDir, cpuMicros, median } from './lib.mjs';

const ROUNDS = Number(process.env.ATTACK_ROUNDS ?? 3);
const ATTACKS = [
  ['2 x scans.jpg (2,080 scans, 7071x7071, 33 KB)', ['scans.jpg', 'scans.jpg']],
  ['2 x trailing.png (2 GiB after the last row, 2 MB)', ['trailing.png', 'trailing.png']],
  ['scans.jpg + trailing.png', ['scans.jpg', 'trailing.png']],
];

const dir = benchDir();
const fixtures = makeHostile(makeFixtures(dir));
const images = await startImageServer(fixtures);
let serial = 0;

const rssKiB = (pid, field = 'VmRSS') =>
  Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);

async function timed(url) {
  const t0 = performance.now();
  const res = await fetch(url, { redirect: 'manual' });
  await res.arrayBuffer();
  return { ms: performance.now() - t0, status: res.status };
}

// A new profile naming the fixture `file` under a URL of its own, so that every picture is a new download.
async function publish(client, file) {
  const user = newUser();
  const content = JSON.stringify({ picture: `${images.url}/f/${file}?n=${serial++}` });
  const ok = await publishRaw(client, user.sign({ kind: 0, created_at: now(), content }));
  if (ok[2] !== true) throw new Error(`not stored: ${ok[3]}`);
  return user;
}

// Pictures the relay is done with, decoded or refused.
async function finished(relay) {
  const d = (await relay.stats()).downloads;
  return d.processed + d.failed.bad_image;
}

async function unrelatedMiss(relay, client) {
  const user = await publish(client, 'small.jpg');
  const r = await timed(`${relay.url}/profile-pic/${user.pubkey}`);
  if (r.status !== 200) throw new Error(`unrelated picture: ${r.status}`);
  return r.ms;
}

async function run(files) {
  const relay = await startRelay({
    dir: join(dir, `relay-${serial++}`),
    config: { allowed_source_addresses: ['127.0.0.1'], precache_on_metadata: true, download_timeout_seconds: 30 },
  });
  const client = await rawClient(relay.url);
  try {
    // The reference: the same requests on the same relay, with nothing else to do.
    const refPic = [];
    const refHealth = [];
    for (let i = 0; i < ROUNDS; i++) {
      refPic.push(await unrelatedMiss(relay, client));
      refHealth.push((await timed(`${relay.url}/health`)).ms);
    }
    const pid = relay.proc.pid;
    const done = await finished(relay);
    const rssBefore = rssKiB(pid);
    let peak = rssBefore;
    const sampler = setInterval(() => (peak = Math.max(peak, rssKiB(pid))), 20);
    const cpu0 = cpuMicros(pid);
    const t0 = performance.now();
    for (const f of files) await publish(client, f);
    // The attack is under way once its downloads have started; then a browser asks for someone else's picture.
    await until(async () => (await relay.stats()).downloads.started >= refPic.length + files.length, Boolean, {
      what: 'the hostile downloads started',
    });
    const healths = [];
    for (let i = 0; i < ROUNDS; i++) healths.push((await timed(`${relay.url}/health`)).ms);
    const health = median(healths);
    const pic = await unrelatedMiss(relay, client);
    await until(async () => (await finished(relay)) >= done + files.length + 1, Boolean, {
      what: 'every hostile picture done with',
      timeoutMs: 600000,
      intervalMs: 100,
    });
    const seconds = (performance.now() - t0) / 1000;
    const cpu = (cpuMicros(pid) - cpu0) / 1e6;
    clearInterval(sampler);
    peak = Math.max(peak, rssKiB(pid, 'VmHWM'));
    const m = await relay.metrics();
    const refused = ['scans', 'trailing_data', 'timeout', 'memory']
      .map((reason) => [reason, m.get('pfpcache_image_refused_total', { reason })])
      .filter(([, n]) => n > 0)
      .map(([reason, n]) => `${reason} ${n}`);
    return { refPic: median(refPic), refHealth: median(refHealth), pic, health, cpu, seconds, rssBefore, peak, refused };
  } finally {
    client.close();
    await relay.cleanup();
  }
}

try {
  console.log(`hostile pictures fetched ahead (${BIN}; reference: the same requests before the attack, median of ${ROUNDS})`);
  for (const [name, files] of ATTACKS) {
    const r = await run(files);
    const mb = (kib) => (kib / 1024).toFixed(0);
    console.log(`  ${name}`);
    console.log(`    relay CPU for the attack   ${r.cpu.toFixed(2)} s (all done in ${r.seconds.toFixed(2)} s; refused: ${r.refused.join(', ') || 'none'})`);
    console.log(`    peak RSS                   ${mb(r.peak)} MB (+${mb(r.peak - r.rssBefore)} MB over ${mb(r.rssBefore)} MB before)`);
    console.log(`    unrelated picture (MISS)   ${r.pic.toFixed(1)} ms against ${r.refPic.toFixed(1)} ms: ratio ${(r.pic / r.refPic).toFixed(2)}`);
    console.log(`    /health                    ${r.health.toFixed(2)} ms against ${r.refHealth.toFixed(2)} ms: ratio ${(r.health / r.refHealth).toFixed(2)}`);
  }
} finally {
  await images.close();
  rmSync(dir, { recursive: true, force: true });
}
