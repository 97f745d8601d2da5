// gen-events.mjs -- writes events.json: events signed by nostr-tools, with the
// serialization nostr-tools hashed, for the C unit tests of the event model.
// Run `node tests/vectors/gen-events.mjs` to regenerate.
import { writeFileSync } from 'node:fs';
import { finalizeEvent, getPublicKey, serializeEvent } from 'nostr-tools/pure';

const hexToBytes = (h) => Uint8Array.from(h.match(/../g), (b) => parseInt(b, 16));
const sk = hexToBytes('5c0c523f52a5b6fad39ed2403092df8cebc36318b39383bca6c00808626fab3a');
const pk = getPublicKey(sk);
const other = '3bf0c63fcb93463407af97a5e5ee64fa883d107ef9e558472c4eb9aaaefa459d';
const at = 1732406400;

const cases = [
  ['plain ASCII', 0, [], '{"name":"alice","picture":"https://example.com/a.png"}'],
  ['unicode', 0, [], 'Grüße, 日本語, Ελληνικά, العربية, עברית'],
  ['emoji', 0, [], '🎉🔥 👩‍👩‍👧 ✨ 🏳️‍🌈'],
  ['the seven NIP-01 escapes', 0, [], 'line1\nline2\ttab "quoted" back\\slash\rret\bback\fform'],
  ['other control characters', 0, [], 'bell\u0007 unit\u001f start\u0001 nul\u0000 del\u007f'],
  ['empty tags and content', 0, [], ''],
  ['empty tag arrays and strings', 3, [[], [''], ['p', other], ['t', 'nostr'], ['e', '0'.repeat(64), 'wss://relay.example', 'reply']], ''],
  ['slashes, separators and markup', 0, [['r', 'wss://relay.example/path']], '</script> \u2028 \u2029 a/b'],
  ['long content', 0, [], 'lorem ipsum dolor sit amet ✓ '.repeat(1200)],
  ['contact list of 1000', 3, Array.from({ length: 1000 }, (_, i) => ['p', i.toString(16).padStart(64, '0')]), ''],
  ['relay list', 10002, [['r', 'wss://relay.damus.io'], ['r', 'wss://nos.lol', 'read'], ['r', 'wss://purplepag.es', 'write']], ''],
  ['quotes and unicode in tags', 3, [['p', other, 'wss://r.example', 'pét "name"\n']], 'x'],
];

const vectors = cases.map(([name, kind, tags, content], i) => {
  const event = finalizeEvent({ kind, created_at: at + i, tags, content }, sk);
  return { name, serialized: serializeEvent(event), event };
});
writeFileSync(new URL('./events.json', import.meta.url), JSON.stringify({ pubkey: pk, vectors }, null, 1) + '\n');
console.log(`wrote ${vectors.length} vectors`);
