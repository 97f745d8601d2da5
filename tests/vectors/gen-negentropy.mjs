// gen-negentropy.mjs -- writes negentropy.json: messages of nostr-tools' Negentropy (nip77) for the C unit
// tests of src/negentropy.c: fingerprints, first messages, and the initiator's answer to the other side's
// first reply, with the ids it learns each side lacks.
// Run `node tests/vectors/gen-negentropy.mjs` to regenerate. nostr-tools does not export nip77 by name, so it
// is loaded by its path.
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';

const { Negentropy, NegentropyStorageVector } = await import(
  new URL('../../node_modules/nostr-tools/lib/esm/nip77.js', import.meta.url)
);

const idOf = (label) => createHash('sha256').update(label).digest('hex');

// Records made from a spec [label, n, spread, base]: the SHA-256 of "label:i" for i below n, with the timestamp
// base + 7 * floor(i / spread), so that `spread` records share each timestamp. The C test makes the same.
const spec = (label, n, spread, base = 1700000000) => [label, n, spread, base];

function records(specs) {
  return specs.flatMap(([label, n, spread, base]) =>
    Array.from({ length: n }, (_, i) => [base + Math.floor(i / spread) * 7, idOf(`${label}:${i}`)]),
  );
}

function storage(specs) {
  const s = new NegentropyStorageVector();
  for (const [ts, id] of records(specs)) s.insert(ts, id);
  s.seal();
  return s;
}

const fingerprints = [0, 1, 2, 31, 1000].map((n) => {
  const specs = [spec('fp', n, 3)];
  return { records: specs, fingerprint: Buffer.from(storage(specs).fingerprint(0, n)).toString('hex') };
});

// Only ranges of 32 records and more are split by fingerprints, which is where nostr-tools answers as any
// responder does; the initiator's answer to that reply is then the same for every implementation.
const rounds = [
  ['identical sets', [spec('same', 200, 2)], [spec('same', 200, 2)]],
  ['one record apart', [spec('a', 300, 1)], [spec('a', 301, 1)]],
  ['ten different on each side, shared timestamps', [spec('c', 500, 5), spec('x', 10, 5, 1700000003)],
    [spec('c', 500, 5), spec('y', 10, 5, 1700000003)]],
  ['disjoint', [spec('left', 64, 1)], [spec('right', 64, 1)]],
  ['many on one side', [spec('m', 40, 4)], [spec('m', 4000, 4)]],
].map(([name, a, b]) => {
  const na = new Negentropy(storage(a), 60000);
  const nb = new Negentropy(storage(b), 60000);
  const first = na.initiate();
  const reply = nb.reconcile(first) ?? '';
  const have = [];
  const need = [];
  const answer = reply === '' ? null : na.reconcile(reply, (id) => have.push(id), (id) => need.push(id));
  return { name, a, b, first, reply, answer: answer ?? '', have: have.sort(), need: need.sort() };
});

writeFileSync(
  new URL('./negentropy.json', import.meta.url),
  JSON.stringify({ frame_limit: 60000, fingerprints, rounds }, null, 1) + '\n',
);
