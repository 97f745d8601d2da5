// variants.mjs -- pfpcache-relay's variants against sharp's, one thread each, from the same masters (those
// resize_rate makes of the resize corpus): 64, 128, 256 and 512 px as JPEG, WebP and AVIF at JPEG's quality 85,
// WebP's and AVIF's mapped by image_encode_quality(). sharp gets the same encoder qualities and settings (effort
// 4 for WebP and AVIF, 4:2:0 chroma, metadata stripped) so that bytes compare fairly; it comes from
// loadSharp() (bench/lib.mjs). Prints per format the ratios ours/sharp, then "bytes saved": the median size of
// WebP and AVIF variants relative to the JPEG variant of the same master and size.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

import { benchDir, here, loadSharp, median } from './lib.mjs';

const ROUNDS = Number(process.env.VARIANT_ROUNDS ?? 3);
const SIZES = [64, 128, 256, 512];
const tools = process.env.BENCH_TOOLS ?? here('../build/release/bench');

const sharp = loadSharp();

const dir = benchDir();
try {
  const sources = join(dir, 'sources');
  const masters = join(dir, 'masters');
  mkdirSync(sources);
  mkdirSync(masters);
  execFileSync(join(tools, 'corpus'), ['resize', sources]);
  execFileSync(join(tools, 'resize_rate'), [sources, '1', masters]);
  const files = readdirSync(masters).sort();
  const data = files.map((f) => readFileSync(join(masters, f)));

  const lines = execFileSync(join(tools, 'variant_rate'), [masters, String(ROUNDS)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
    .trim()
    .split('\n');
  const [, qJpeg, qWebp, qAvif] = lines[0].split(' ').map(Number);
  const ours = {};
  for (const line of lines.slice(1)) {
    const [format, rate, bytes, sizes] = line.split(' ');
    ours[format] = { rate: Number(rate), bytes: Number(bytes), sizes: sizes.split(',').map(Number) };
  }

  const encode = {
    jpeg: (s) => s.flatten({ background: '#ffffff' }).jpeg({ quality: qJpeg, optimizeCoding: true }),
    webp: (s) => s.webp({ quality: qWebp, effort: 4 }),
    avif: (s) => s.avif({ quality: qAvif, effort: 4, chromaSubsampling: '4:2:0' }),
  };
  const theirs = {};
  for (const format of Object.keys(encode)) {
    const sizes = [];
    const t0 = performance.now();
    for (let r = 0; r < ROUNDS; r++) {
      for (const m of data) {
        for (const size of SIZES) {
          const out = await encode[format](sharp(m).resize(size, size, { fit: 'inside', withoutEnlargement: true })).toBuffer();
          if (r === 0) sizes.push(out.length);
        }
      }
    }
    const rate = (data.length * SIZES.length * ROUNDS) / ((performance.now() - t0) / 1000);
    theirs[format] = { rate, bytes: sizes.reduce((a, b) => a + b, 0), sizes };
  }

  console.log(
    `variants (${files.length} masters of the resize corpus; ${SIZES.join(', ')} px; JPEG q${qJpeg}, WebP q${qWebp}, AVIF q${qAvif}; ${ROUNDS} rounds, one thread each)`,
  );
  console.log(`  pfpcache-relay (libvips ${execFileSync('pkg-config', ['--modversion', 'vips'], { encoding: 'utf8' }).trim()}) against sharp (libvips ${sharp.versions.vips})`);
  for (const format of Object.keys(encode)) {
    const o = ours[format];
    const t = theirs[format];
    console.log(
      `  ${format}: ${o.rate.toFixed(1).padStart(6)} vs ${t.rate.toFixed(1).padStart(6)} variants/s, ${String(o.bytes).padStart(7)} vs ${String(t.bytes).padStart(7)} bytes; ratio relay/sharp: throughput ${(o.rate / t.rate).toFixed(2)}, bytes ${(o.bytes / t.bytes).toFixed(3)}`,
    );
  }
  const saved = (format) => median(ours[format].sizes.map((s, i) => s / ours.jpeg.sizes[i]));
  console.log(`  bytes saved: median size relative to JPEG: WebP ${saved('webp').toFixed(2)}, AVIF ${saved('avif').toFixed(2)}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
