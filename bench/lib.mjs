// lib.mjs -- helpers shared by the Node benchmarks.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { initNostrWasm } from 'nostr-wasm';
import { finalizeEvent, generateSecretKey, setNostrWasm } from 'nostr-tools/wasm';
import WebSocket from 'ws';

export const here = (p) => fileURLToPath(new URL(p, import.meta.url));

// `n` distinct signed kind 0 events as JSON lines, made once (signing takes a while)
// and kept in bench/out.
export async function signedProfiles(n) {
  const path = here(`out/kind0-${n}.jsonl`);
  if (!existsSync(path)) {
    setNostrWasm(await initNostrWasm());
    mkdirSync(here('out'), { recursive: true });
    const lines = [];
    const base = Math.floor(Date.now() / 1000) - 86400;
    for (let i = 0; i < n; i++) {
      const content = JSON.stringify({ name: `user${i}`, picture: `http://127.0.0.1/pics/${i}.jpg` });
      lines.push(JSON.stringify(finalizeEvent({ kind: 0, created_at: base + (i % 3600), tags: [], content }, generateSecretKey())));
    }
    writeFileSync(path, lines.join('\n') + '\n');
  }
  return { path, lines: readFileSync(path, 'utf8').trim().split('\n') };
}

export function openSocket(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url.replace(/^http/, 'ws'));
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

// Publishes serialized events over one connection, `window` at a time; resolves when all are answered.
export function publishAll(ws, lines, window = 256) {
  return new Promise((resolve, reject) => {
    let next = 0;
    let answered = 0;
    const onMessage = (data) => {
      const msg = JSON.parse(data);
      if (msg[0] !== 'OK') return;
      if (msg[2] !== true) return reject(new Error(`refused: ${msg[3]}`));
      if (next < lines.length) ws.send(`["EVENT",${lines[next++]}]`);
      if (++answered === lines.length) {
        ws.off('message', onMessage);
        resolve();
      }
    };
    ws.on('message', onMessage);
    while (next < Math.min(window, lines.length)) ws.send(`["EVENT",${lines[next++]}]`);
  });
}
