// gen-blurhash.mjs -- writes blurhash.json: pictures (RGBA pixels, base64) and the hashes
// the npm blurhash encoder gives them, for the C unit tests of src/blurhash.c.
// Run `node tests/vectors/gen-blurhash.mjs` to regenerate.
import { writeFileSync } from 'node:fs';
import { encode } from 'blurhash';

// A small deterministic generator, so that the pictures are the same on every run.
function lcg(seed) {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}

function picture(width, height, pixel) {
  const p = new Uint8ClampedArray(width * height * 4);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const [r, g, b, a = 255] = pixel(x, y);
      p.set([r, g, b, a], (y * width + x) * 4);
    }
  }
  return p;
}

const noise = lcg(7);
const cases = [
  ['one flat colour, one component', 8, 8, 1, 1, () => [200, 40, 90]],
  ['one flat colour, 4x3', 32, 32, 4, 3, () => [12, 150, 230]],
  ['horizontal gradient', 32, 20, 4, 3, (x) => [x * 8, 255 - x * 8, 128]],
  ['vertical gradient, 3x4', 20, 32, 3, 4, (x, y) => [y * 8, 64, 255 - y * 8]],
  ['diagonal with alpha ignored', 24, 24, 4, 3, (x, y) => [(x + y) * 5, x * 10, y * 10, (x * y) % 256]],
  ['noise, 9x9', 32, 32, 9, 9, () => [noise() * 256, noise() * 256, noise() * 256].map(Math.floor)],
  ['noise, 4x3, odd size', 17, 13, 4, 3, () => [noise() * 256, noise() * 256, noise() * 256].map(Math.floor)],
  ['black and white halves', 32, 32, 4, 3, (x) => (x < 16 ? [0, 0, 0] : [255, 255, 255])],
  ['a disc on a background', 32, 32, 5, 5, (x, y) => ((x - 16) ** 2 + (y - 16) ** 2 < 100 ? [250, 200, 20] : [30, 30, 60])],
  ['one pixel', 1, 1, 1, 1, () => [1, 2, 3]],
  ['dark with every AC negative', 32, 32, 2, 1, (x) => (x < 16 ? [40, 40, 40] : [0, 0, 0])],
];

const vectors = cases.map(([name, width, height, cx, cy, pixel]) => {
  const pixels = picture(width, height, pixel);
  return { name, width, height, cx, cy, rgba: Buffer.from(pixels).toString('base64'), hash: encode(pixels, width, height, cx, cy) };
});
writeFileSync(new URL('./blurhash.json', import.meta.url), JSON.stringify(vectors, null, 1) + '\n');
