// resize.mjs -- pfpcache-relay's picture pipeline against sharp, one thread each, over the same
// corpus (JPEG, PNG with alpha, animated GIF, WebP, several sizes), at the same size and quality.
// sharp is installed by this benchmark into bench/out/sharp, apart from the project's dependencies.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

import { benchDir, here } from './lib.mjs';

const SHARP_VERSION = '0.33.5';
const ROUNDS = Number(process.env.RESIZE_ROUNDS ?? 5);
const tools = process.env.BENCH_TOOLS ?? here('../build/release/bench');
const sharpDir = here('out/sharp');

if (!existsSync(join(sharpDir, 'node_modules/sharp'))) {
  execFileSync('npm', ['install', '--prefix', sharpDir, '--no-audit', '--no-fund', '--loglevel=error', `sharp@${SHARP_VERSION}`], {
    stdio: 'inherit',
  });
}
const sharp = createRequire(join(sharpDir, 'package.json'))('sharp');
sharp.concurrency(1);
sharp.cache(false);

const dir = benchDir();
try {
  execFileSync(join(tools, 'corpus'), ['resize', dir]);
  const files = readdirSync(dir).sort();
  const sources = files.map((f) => readFileSync(join(dir, f)));

  const [oursRate, oursBytes] = execFileSync(join(tools, 'resize_rate'), [dir, String(ROUNDS)], { encoding: 'utf8' })
    .trim()
    .split(' ')
    .map(Number);

  // The same work: upright, fit within 200x200 without enlarging, on white, JPEG at quality 85.
  const resize = (buf) =>
    sharp(buf)
      .rotate()
      .resize(200, 200, { fit: 'inside', withoutEnlargement: true })
      .flatten({ background: '#ffffff' })
      .jpeg({ quality: 85, optimizeCoding: true })
      .toBuffer();
  let sharpBytes = 0;
  const t0 = performance.now();
  for (let r = 0; r < ROUNDS; r++) {
    for (const src of sources) {
      const out = await resize(src);
      if (r === 0) sharpBytes += out.length;
    }
  }
  const sharpRate = (sources.length * ROUNDS) / ((performance.now() - t0) / 1000);

  console.log(`resize (${files.length} sources: ${files.join(', ')}; to 200x200 JPEG Q85, ${ROUNDS} rounds, one thread each)`);
  console.log(`  pfpcache-relay (libvips ${execFileSync('pkg-config', ['--modversion', 'vips'], { encoding: 'utf8' }).trim()})   ${oursRate.toFixed(1).padStart(7)} images/s  ${String(oursBytes).padStart(7)} bytes out`);
  console.log(`  sharp ${SHARP_VERSION} (libvips ${sharp.versions.vips})   ${sharpRate.toFixed(1).padStart(7)} images/s  ${String(sharpBytes).padStart(7)} bytes out`);
  console.log(`  ratio relay/sharp: throughput ${(oursRate / sharpRate).toFixed(2)}, bytes ${(oursBytes / sharpBytes).toFixed(3)}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
