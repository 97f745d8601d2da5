// nostr.mjs -- Nostr helpers for the end-to-end tests: signed events from
// nostr-tools, and a raw WebSocket client for answers nostr-tools hides.
import { finalizeEvent, generateSecretKey, getPublicKey } from 'nostr-tools/pure';
import { useWebSocketImplementation as usePoolWebSocket } from 'nostr-tools/pool';
import { useWebSocketImplementation as useRelayWebSocket } from 'nostr-tools/relay';
import WebSocket from 'ws';

// Node has no global WebSocket before version 22; nostr-tools' Relay and SimplePool each need one.
useRelayWebSocket(WebSocket);
usePoolWebSocket(WebSocket);

export const now = () => Math.floor(Date.now() / 1000);

export const plain = (event) => JSON.parse(JSON.stringify(event));

// A key pair and a signer of events for it.
export function newUser() {
  const sk = generateSecretKey();
  const pubkey = getPublicKey(sk);
  return {
    sk,
    pubkey,
    // A plain object, as a relay sends it back (nostr-tools marks its own with a symbol).
    sign: ({ kind = 0, created_at = now(), tags = [], content = '' } = {}) =>
      plain(finalizeEvent({ kind, created_at, tags, content }, sk)),
  };
}

export function wsUrl(httpUrl) {
  return httpUrl.replace(/^http/, 'ws');
}

// A WebSocket client that records every message, for tests that check exact answers.
export async function rawClient(url, options = {}) {
  const ws = new WebSocket(wsUrl(url), options);
  const messages = [];
  const waiters = [];
  let closed = null;
  ws.on('message', (data) => {
    let msg;
    try {
      msg = JSON.parse(String(data));
    } catch {
      msg = ['UNPARSABLE', String(data)];
    }
    messages.push(msg);
    for (const w of [...waiters]) w.check();
  });
  ws.on('close', (code, reason) => {
    closed = { code, reason: String(reason) };
    for (const w of [...waiters]) w.check();
  });
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  return {
    ws,
    messages,
    get closed() {
      return closed;
    },
    send(msg) {
      ws.send(typeof msg === 'string' ? msg : JSON.stringify(msg));
    },
    // Resolves with the first message (from `from` on) that satisfies `pred`.
    next(pred, { timeoutMs = 5000, from = 0 } = {}) {
      return new Promise((resolve, reject) => {
        const w = {
          check() {
            const i = messages.findIndex((m, idx) => idx >= from && pred(m));
            if (i !== -1) {
              done();
              resolve(messages[i]);
            } else if (closed) {
              done();
              reject(new Error(`connection closed (${closed.code} ${closed.reason}) while waiting`));
            }
          },
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`no matching message within ${timeoutMs} ms; got ${JSON.stringify(messages).slice(0, 500)}`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          waiters.splice(waiters.indexOf(w), 1);
        };
        waiters.push(w);
        w.check();
      });
    },
    // Resolves with {code, reason} once the server closes the connection.
    waitClose(timeoutMs = 5000) {
      return new Promise((resolve, reject) => {
        if (closed) return resolve(closed);
        const timer = setTimeout(() => reject(new Error('the connection stayed open')), timeoutMs);
        ws.once('close', (code, reason) => {
          clearTimeout(timer);
          resolve({ code, reason: String(reason) });
        });
      });
    },
    close() {
      ws.close();
    },
  };
}

// Publishes over a raw client and resolves with the OK message for the event.
export async function publishRaw(client, event) {
  const from = client.messages.length;
  client.send(['EVENT', event]);
  return client.next((m) => m[0] === 'OK' && m[1] === event.id, { from });
}

// Sends a REQ and resolves with the events received before its EOSE.
export async function query(client, subId, ...filters) {
  const from = client.messages.length;
  client.send(['REQ', subId, ...filters]);
  await client.next((m) => (m[0] === 'EOSE' || m[0] === 'CLOSED') && m[1] === subId, { from });
  const closed = client.messages.slice(from).find((m) => m[0] === 'CLOSED' && m[1] === subId);
  if (closed) throw new Error(`CLOSED: ${closed[2]}`);
  return client.messages.slice(from).filter((m) => m[0] === 'EVENT' && m[1] === subId).map((m) => m[2]);
}
