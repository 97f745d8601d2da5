// quality.mjs -- which WebP and AVIF qualities look like JPEG's, by SSIM: over the resize corpus (plus the
// fractal textures quality_scan adds), variants at 128 and 256 px are compared with the same variants resized
// without loss. For each JPEG quality the WebP and AVIF qualities of equal mean SSIM are interpolated, with
// their bytes relative to JPEG's; then how much a master at each WebP quality costs the JPEG-85 variants made
// from it. The reference is JPEG, measured in the same run.
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';

import { benchDir, here } from './lib.mjs';

const tools = process.env.BENCH_TOOLS ?? here('../build/release/bench');

// "FORMAT Q SSIM BYTES" lines into { format: [{ q, ssim, bytes }] }, by rising quality.
function table(text) {
  const t = {};
  for (const line of text.trim().split('\n')) {
    const [format, q, ssim, bytes] = line.split(' ');
    (t[format] ??= []).push({ q: Number(q), ssim: Number(ssim), bytes: Number(bytes) });
  }
  return t;
}

// The quality of `rows` whose SSIM is `ssim`, and its bytes, linearly between the two measured around it.
function match(rows, ssim) {
  for (let i = 1; i < rows.length; i++) {
    const a = rows[i - 1];
    const b = rows[i];
    if (b.ssim >= ssim) {
      const f = Math.max(0, (ssim - a.ssim) / (b.ssim - a.ssim));
      return { q: a.q + f * (b.q - a.q), bytes: a.bytes + f * (b.bytes - a.bytes) };
    }
  }
  return { q: Infinity, bytes: NaN };
}

const dir = benchDir();
try {
  execFileSync(join(tools, 'corpus'), ['resize', dir]);
  const run = (mode) => table(execFileSync(join(tools, 'quality_scan'), [mode, dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }));
  const map = run('map');

  console.log('quality (SSIM of luma against the lossless variant; 128 and 256 px; resize corpus + 3 textures)');
  console.log('  JPEG q  SSIM     WebP q  bytes/JPEG   AVIF q  bytes/JPEG');
  for (const j of map.jpeg.filter((r) => r.q >= 50 && r.q <= 95)) {
    const w = match(map.webp, j.ssim);
    const a = match(map.avif, j.ssim);
    console.log(
      `  ${String(j.q).padStart(6)}  ${j.ssim.toFixed(4)}  ${w.q.toFixed(1).padStart(6)}  ${(w.bytes / j.bytes).toFixed(2).padStart(10)}   ${a.q.toFixed(1).padStart(6)}  ${(a.bytes / j.bytes).toFixed(2).padStart(10)}`,
    );
  }

  const m = run('master');
  const direct = m.source[0].ssim;
  const best = m.master[m.master.length - 1].ssim;
  console.log('master quality (JPEG-85 variants at 128 and 256 px made from the master rather than the source)');
  console.log(`  from the source: SSIM ${direct.toFixed(5)} (loss ${(1 - direct).toFixed(5)})`);
  for (const r of m.master) {
    console.log(
      `  master WebP q${String(r.q).padStart(3)}: SSIM ${r.ssim.toFixed(5)}, loss beyond a q100 master ${(best - r.ssim).toFixed(5)} (${(((best - r.ssim) / (1 - direct)) * 100).toFixed(1)}% of the variant's own), masters ${r.bytes} bytes`,
    );
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
