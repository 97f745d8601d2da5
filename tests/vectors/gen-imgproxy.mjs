// gen-imgproxy.mjs -- writes imgproxy.json: paths built by the official imgproxy URL builder
// (@imgproxy/imgproxy-node), signed and not, with what each asks for, for the C unit tests of
// src/imgproxy.c. Run `node tests/vectors/gen-imgproxy.mjs` to regenerate.
import { writeFileSync } from 'node:fs';
import { generateImageUrl } from '@imgproxy/imgproxy-node';

const ENDPOINT = 'http://relay.example/imgproxy';
const keys = [
  { key: '943b421c9eb07c830af81030552c86009268de4e532ba2ee2eab8247c6da0881', salt: '520f986b998545b4785e0defbc4f3c1203f22de2374a3d53cb7a7fe9fea309c5' },
  { key: 'aa11bb22', salt: 'cc33' },
];
const SOURCE = 'https://images.example.com/avatars/alice.jpg?v=2&size=full';

// [name, url, options, key index or null, what the path asks for]
const cases = [
  ['fit with enlarge and gravity', SOURCE, { resizing_type: 'fit', width: 300, gravity: { type: 'no' }, enlarge: 1 }, 0,
    { resize: 'fit', width: 300, height: 0, enlarge: true, gravity: 'no' }],
  ['fill, dpr, format and quality', SOURCE, { resize: { resizing_type: 'fill', width: 100, height: 50 }, dpr: 2, format: 'webp', quality: 80 }, 0,
    { resize: 'fill', width: 100, height: 50, dpr: 2, format: 'webp', quality: 80 }],
  ['size, unsigned, a source beyond ASCII', 'https://images.example.com/a b/ü.png', { size: { width: 64, height: 64 } }, null,
    { width: 64, height: 64, source: 'https://images.example.com/a b/ü.png' }],
  ['no options', SOURCE, {}, null, {}],
  ['the second key, fill-down and a height', SOURCE, { resizing_type: 'fill-down', height: 200, gravity: { type: 'sm' } }, 1,
    { resize: 'fill-down', height: 200, gravity: 'sm' }],
  ['force with a fractional dpr', SOURCE, { resize: { resizing_type: 'force', width: 48, height: 48 }, dpr: 2.625 }, 0,
    { resize: 'force', width: 48, height: 48, dpr: 2.625 }],
];

const vectors = cases.map(([name, url, options, k, expect]) => {
  const full = generateImageUrl({ endpoint: ENDPOINT, url, options, ...(k === null ? {} : keys[k]) });
  return { name, path: full.slice(ENDPOINT.length), key: k, expect: { source: SOURCE, ...expect } };
});
writeFileSync(new URL('./imgproxy.json', import.meta.url), JSON.stringify({ keys, vectors }, null, 1) + '\n');
