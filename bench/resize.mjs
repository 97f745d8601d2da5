// resize.mjs -- pfpcache-relay's download-time picture work against sharp, one thread each, over the same
// corpus (JPEG, PNG with alpha, animated GIF, WebP, several sizes): the master (WebP within 1024 x 1024 at the
// master's quality, alpha and up to 100 frames kept), then the default variant made from it (JPEG, 200 x 200,
// on white, quality 85). sharp comes from loadSharp() (bench/lib.mjs), installed apart from the project's
// dependencies.
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

import { SHARP_VERSION, benchDir, here, loadSharp } from './lib.mjs';

const ROUNDS = Number(process.env.RESIZE_ROUNDS ?? 5);
const tools = process.env.BENCH_TOOLS ?? here('../build/release/bench');
const header = readFileSync(here('../src/image.h'), 'utf8');
const define = (name) => Number(header.match(new RegExp(`#define ${name}\\s+(\\d+)`))[1]);
const MASTER_QUALITY = define('IMAGE_MASTER_QUALITY');
const ANIMATED_MAX_SIZE = define('IMAGE_MASTER_ANIMATED_MAX_SIZE');
const ANIMATED_EFFORT = define('IMAGE_MASTER_ANIMATED_EFFORT');

const sharp = loadSharp();

const dir = benchDir();
try {
  execFileSync(join(tools, 'corpus'), ['resize', dir]);
  const files = readdirSync(dir).sort();
  const sources = files.map((f) => readFileSync(join(dir, f)));

  const [oursRate, oursMasterBytes, oursBytes] = execFileSync(join(tools, 'resize_rate'), [dir, String(ROUNDS)], { encoding: 'utf8' })
    .trim()
    .split(' ')
    .map(Number);

  // The same work: the master upright, within 1024 x 1024 without enlarging (an animation within
  // IMAGE_MASTER_ANIMATED_MAX_SIZE, at WebP effort IMAGE_MASTER_ANIMATED_EFFORT), alpha and frames kept, WebP at
  // the master's quality (effort 4 otherwise, in both); then from it 200 x 200 on white, JPEG at quality 85.
  const master = async (buf) => {
    const animated = ((await sharp(buf).metadata()).pages ?? 1) > 1;
    const size = animated ? ANIMATED_MAX_SIZE : 1024;
    return sharp(buf, { animated })
      .rotate()
      .resize(size, size, { fit: 'inside', withoutEnlargement: true })
      .webp({ quality: MASTER_QUALITY, effort: animated ? ANIMATED_EFFORT : 4 })
      .toBuffer();
  };
  const variant = (buf) =>
    sharp(buf)
      .resize(200, 200, { fit: 'inside', withoutEnlargement: true })
      .flatten({ background: '#ffffff' })
      .jpeg({ quality: 85, optimizeCoding: true })
      .toBuffer();
  let sharpMasterBytes = 0;
  let sharpBytes = 0;
  const t0 = performance.now();
  for (let r = 0; r < ROUNDS; r++) {
    for (const src of sources) {
      const m = await master(src);
      const out = await variant(m);
      if (r === 0) {
        sharpMasterBytes += m.length;
        sharpBytes += out.length;
      }
    }
  }
  const sharpRate = (sources.length * ROUNDS) / ((performance.now() - t0) / 1000);

  console.log(
    `resize (${files.length} sources: ${files.join(', ')}; master WebP q${MASTER_QUALITY} within 1024, then 200x200 JPEG Q85 from it, ${ROUNDS} rounds, one thread each)`,
  );
  console.log(`  pfpcache-relay (libvips ${execFileSync('pkg-config', ['--modversion', 'vips'], { encoding: 'utf8' }).trim()})   ${oursRate.toFixed(1).padStart(7)} images/s  ${String(oursMasterBytes).padStart(8)} master bytes  ${String(oursBytes).padStart(7)} bytes out`);
  console.log(`  sharp ${SHARP_VERSION} (libvips ${sharp.versions.vips})   ${sharpRate.toFixed(1).padStart(7)} images/s  ${String(sharpMasterBytes).padStart(8)} master bytes  ${String(sharpBytes).padStart(7)} bytes out`);
  console.log(
    `  ratio relay/sharp: throughput ${(oursRate / sharpRate).toFixed(2)}, bytes ${(oursBytes / sharpBytes).toFixed(3)}, master bytes ${(oursMasterBytes / sharpMasterBytes).toFixed(3)}`,
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
