// auth.test.mjs -- the admin endpoints behind admin_token (Bearer), admin_pubkeys (NIP-98, signed by
// nostr-tools) and, with neither, loopback only; what is accepted and each refusal.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, test } from 'node:test';

import { nip19 } from 'nostr-tools';
import { getToken } from 'nostr-tools/nip98';
import { finalizeEvent } from 'nostr-tools/pure';

import { newUser, now } from './lib/nostr.mjs';
import { startRelay } from './lib/relay.mjs';

const TOKEN = 'correct-horse-battery-staple-42';
const admin = newUser();
const stranger = newUser();
let withToken, withKeys, open;

before(async () => {
  withToken = await startRelay({ config: { admin_token: TOKEN } });
  withKeys = await startRelay({ config: { admin_pubkeys: [nip19.npubEncode(admin.pubkey)] } });
  open = await startRelay();
});

after(async () => {
  await withToken.cleanup();
  await withKeys.cleanup();
  await open.cleanup();
});

const BODY = JSON.stringify({ pubkeys: [newUser().pubkey] });

async function call(relay, path, { method = 'POST', headers = {}, body = method === 'POST' ? BODY : undefined } = {}) {
  const res = await fetch(`${relay.url}${path}`, { method, headers: { 'Content-Type': 'application/json', ...headers }, body });
  return { status: res.status, auth: res.headers.get('www-authenticate'), json: await res.json() };
}

// A NIP-98 header signed by `user` for `url` and `method`, with the body's hash, then altered by `tweak`.
function nip98(user, url, method, { body, tweak = (e) => e } = {}) {
  const tags = [['u', url], ['method', method]];
  if (body !== undefined) tags.push(['payload', createHash('sha256').update(body).digest('hex')]);
  const event = tweak(finalizeEvent({ kind: 27235, created_at: now(), tags, content: '' }, user.sk));
  return `Nostr ${Buffer.from(JSON.stringify(event)).toString('base64')}`;
}

test('with admin_token, the Bearer token is required, even from loopback', async () => {
  const missing = await call(withToken, '/batch-cache');
  assert.equal(missing.status, 401);
  assert.match(missing.auth, /Bearer/);
  assert.match(missing.json.error, /Authorization/);
  const wrong = await call(withToken, '/batch-cache', { headers: { Authorization: 'Bearer not-the-token-at-all' } });
  assert.equal(wrong.status, 401);
  assert.ok(!wrong.json.error.includes(TOKEN));
  const ok = await call(withToken, '/batch-cache', { headers: { Authorization: `Bearer ${TOKEN}` } });
  assert.equal(ok.status, 202);
  const purge = await call(withToken, '/purge-cache/all', { method: 'DELETE', headers: { Authorization: `Bearer ${TOKEN}` } });
  assert.equal(purge.status, 200);
  assert.equal((await call(withToken, '/purge-cache/all', { method: 'DELETE' })).status, 401);
  assert.equal((await call(withToken, `/cache-follows/${admin.pubkey}`, { method: 'GET' })).status, 401);
  // Reading jobs and pictures needs nothing.
  assert.equal((await call(withToken, '/jobs', { method: 'GET' })).status, 200);
});

test('with admin_pubkeys, a NIP-98 event signed by a listed key is accepted, once', async () => {
  const url = `${withKeys.url}/batch-cache`;
  const header = nip98(admin, url, 'POST', { body: BODY });
  assert.equal((await call(withKeys, '/batch-cache', { headers: { Authorization: header } })).status, 202);
  const replay = await call(withKeys, '/batch-cache', { headers: { Authorization: header } });
  assert.equal(replay.status, 401);
  assert.match(replay.json.error, /already used/);

  // nostr-tools' own signer, for a GET with a query string.
  const followsUrl = `${withKeys.url}/cache-follows/${admin.pubkey}?limit=3`;
  const token = await getToken(followsUrl, 'GET', (e) => finalizeEvent(e, admin.sk), true);
  const follows = await call(withKeys, `/cache-follows/${admin.pubkey}?limit=3`, { method: 'GET', headers: { Authorization: token } });
  assert.equal(follows.status, 404, 'authorized: no contact list to cache');
});

test('NIP-98 refusals name the check that failed', async () => {
  const url = `${withKeys.url}/batch-cache`;
  const cases = [
    ['wrong u', nip98(admin, `${withKeys.url}/purge-cache/all`, 'POST', { body: BODY }), /u tag/],
    ['wrong method', nip98(admin, url, 'GET', { body: BODY }), /method/],
    ['stale', nip98(admin, url, 'POST', { body: BODY, tweak: (e) => finalizeEvent({ ...e, created_at: now() - 120 }, admin.sk) }), /created_at/],
    ['bad signature', nip98(admin, url, 'POST', { body: BODY, tweak: (e) => ({ ...e, sig: `${e.sig.slice(0, -2)}${e.sig.endsWith('00') ? '11' : '00'}` }) }), /signature/],
    ['not listed', nip98(stranger, url, 'POST', { body: BODY }), /admin_pubkeys/],
    ['wrong payload', nip98(admin, url, 'POST', { body: '{"pubkeys":[]}' }), /payload/],
    ['no payload', nip98(admin, url, 'POST'), /payload/],
    ['not base64 JSON', 'Nostr bm90IGpzb24=', /NIP-98/],
    ['a token where none is set', `Bearer ${TOKEN}`, /Nostr/],
  ];
  for (const [what, header, message] of cases) {
    const r = await call(withKeys, '/batch-cache', { headers: { Authorization: header } });
    assert.equal(r.status, 401, what);
    assert.match(r.auth, /Nostr/, what);
    assert.match(r.json.error, message, what);
  }
  assert.equal((await call(withKeys, '/batch-cache')).status, 401);
});

test('with neither set, loopback clients may, but not through a proxy', async () => {
  assert.equal((await call(open, '/batch-cache')).status, 202);
  assert.equal((await call(open, '/purge-cache/profile-pics')).status, 200);
  for (const header of ['X-Forwarded-For', 'X-Real-IP', 'Forwarded']) {
    const r = await call(open, '/batch-cache', { headers: { [header]: header === 'Forwarded' ? 'for=192.0.2.1' : '192.0.2.1' } });
    assert.equal(r.status, 403, header);
    assert.match(r.json.error, /admin_token/);
  }
});
