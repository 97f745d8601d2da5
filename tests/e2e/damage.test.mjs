// damage.test.mjs -- what is on disk cannot be trusted blindly: a second relay on the same database is refused,
// a damaged database refuses to start, --check-db walks one, and damaged picture files are never served.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, readFileSync, readdirSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { serveFixtures, stopFixtures } from './lib/images.mjs';
import { newUser, publishRaw, query, rawClient } from './lib/nostr.mjs';
import { BIN, runBinary, startRelay, testConfig, until } from './lib/relay.mjs';

const GUARDED = { allowed_source_addresses: ['127.0.0.1'], precache_on_metadata: false };
const PAGE = 4096;

let fixtures, images;

before(async () => ({ fixtures, images } = await serveFixtures()));

after(() => stopFixtures({ fixtures, images }));

const sha256 = (b) => createHash('sha256').update(b).digest('hex');
const dbPath = (dir) => join(dir, 'db', 'pfpcache.db');
const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

// Starts the binary on `dir`'s configuration and resolves with {code, stderr} once it exits, or with
// {listening: true, stderr} as soon as it serves (it is then killed): a relay that starts is a relay that
// did not refuse.
async function startOrExit(dir, config = {}, timeoutMs = 15000) {
  const configPath = join(dir, 'config.json');
  await writeFile(configPath, JSON.stringify(testConfig(dir, config)));
  const proc = spawn(BIN, ['--config', configPath], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`neither served nor exited within ${timeoutMs} ms:\n${stderr}`));
    }, timeoutMs);
    proc.stderr.on('data', (c) => {
      stderr += c;
      if (/listening on http/.test(stderr)) {
        clearTimeout(timer);
        proc.kill('SIGKILL');
        resolve({ listening: true, stderr });
      }
    });
    proc.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

// A relay's data directory holding `n` events, stopped cleanly.
async function dataDirWithEvents(n) {
  const relay = await startRelay();
  const c = await rawClient(relay.url);
  for (let i = 0; i < n; i++) {
    const content = JSON.stringify({ name: `user ${i}`, about: 'x'.repeat(400) });
    assert.equal((await publishRaw(c, newUser().sign({ kind: 0, content })))[2], true);
  }
  c.close();
  await relay.cleanup({ keepDir: true });
  return relay.dir;
}

test('a second relay on the same database exits with status 2 naming the file and the PID holding it; the first loses no acknowledged event', async () => {
  const first = await startRelay({ config: { max_limit: 100000 } });
  const dir = first.dir;
  const c = await rawClient(first.url);
  let acked = 0;
  let writing = true;
  const writer = (async () => {
    while (writing) {
      if ((await publishRaw(c, newUser().sign({ kind: 0, content: '{"name":"x"}' })))[2]) acked++;
    }
  })();
  try {
    await until(() => acked >= 20, Boolean, { what: '20 events acknowledged' });
    const line = new RegExp(`^pfpcache-relay: the database ${escape(dbPath(dir))} is in use by process ${first.proc.pid}; `);
    // As in the attack, LMDB's own lock file is deleted first; then with it present again.
    await rm(`${dbPath(dir)}-lock`);
    for (const attempt of ['without LMDB\'s lock file', 'with its lock file']) {
      const second = await startOrExit(dir, { max_limit: 100000 });
      assert.equal(second.code, 2, `${attempt}: ${second.stderr}`);
      assert.match(second.stderr, line, attempt);
      assert.equal(second.stderr.trim().split('\n').length, 1, second.stderr);
    }
    const before = acked;
    await until(() => acked >= before + 20, Boolean, { what: 'the first relay still acknowledging events' });
    assert.equal((await fetch(`${first.url}/health`)).status, 200);
  } finally {
    writing = false;
    await writer;
    c.close();
    await first.cleanup({ keepDir: true });
  }
  const again = await startRelay({ dir, config: { max_limit: 100000 } });
  try {
    const reader = await rawClient(again.url);
    assert.equal((await query(reader, 'all', { kinds: [0], limit: 100000 })).length, acked);
    reader.close();
  } finally {
    await again.cleanup();
  }
});

test('a damaged database refuses to start with status 2 and says why: truncated to half, header overwritten, empty', async () => {
  const dir = await dataDirWithEvents(200);
  const original = `${dbPath(dir)}.original`;
  copyFileSync(dbPath(dir), original);
  const size = statSync(original).size;
  assert.ok(size >= 16 * PAGE, `a database of ${size} bytes`);
  const damages = [
    ['truncated to half', () => truncateSync(dbPath(dir), Math.floor(size / PAGE / 2) * PAGE), /was truncated/],
    ['its two meta pages overwritten', () => {
      const b = readFileSync(dbPath(dir));
      b.fill(0xa5, 0, 2 * PAGE);
      writeFileSync(dbPath(dir), b);
    }, /its header \(the two meta pages/],
    ['empty', () => truncateSync(dbPath(dir), 0), /the file is empty/],
  ];
  try {
    for (const [what, hurt, why] of damages) {
      copyFileSync(original, dbPath(dir));
      hurt();
      const r = await startOrExit(dir);
      assert.equal(r.listening, undefined, `${what}: the relay started:\n${r.stderr}`);
      assert.equal(r.code, 2, `${what}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`^pfpcache-relay: the database ${escape(dbPath(dir))} is damaged: `, 'm'), what);
      assert.match(r.stderr, why, what);
    }
    // The file as it was starts again.
    copyFileSync(original, dbPath(dir));
    assert.equal((await startOrExit(dir)).listening, true);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('--check-db reports a sound database as sound (0), one with an overwritten page as damaged (2), and refuses one in use (1)', async () => {
  const dir = await dataDirWithEvents(200);
  const config = join(dir, 'config.json');
  try {
    const sound = await runBinary(['--config', config, '--check-db']);
    assert.equal(sound.code, 0, sound.stdout + sound.stderr);
    assert.match(sound.stdout, /^ {2}events: 200 entries, \d+ pages$/m);
    assert.match(sound.stdout, /^ {2}pictures: \d+ entries/m);
    assert.match(sound.stdout, /^sound$/m);

    const relay = await startRelay({ dir });
    try {
      const busy = await runBinary(['--config', config, '--check-db']);
      assert.equal(busy.code, 1, busy.stdout);
      assert.match(busy.stdout, new RegExp(`is in use by process ${relay.proc.pid}`));
    } finally {
      await relay.cleanup({ keepDir: true });
    }

    // The pages holding one event, the header left alone: the relay would start and fail later. Every copy is
    // overwritten, since older copies of a page stay in free pages and only one of them is in use.
    const b = readFileSync(dbPath(dir));
    const MARK = 'user 100\\"'; // in the event's JSON, the content's quotes are escaped
    let pages = 0;
    for (let at = b.indexOf(MARK); at !== -1; at = b.indexOf(MARK, at + 1), pages++) {
      const page = Math.floor(at / PAGE);
      b.fill(0xff, page * PAGE, (page + 1) * PAGE);
    }
    assert.ok(pages >= 1);
    writeFileSync(dbPath(dir), b);
    const damaged = await runBinary(['--config', config, '--check-db']);
    assert.equal(damaged.code, 2, damaged.stdout + damaged.stderr);
    assert.match(damaged.stdout, /^damaged: \d+ problems?$/m);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

// The picture file of an ETag, under the media directory.
const pictureFile = (dir, etag) => {
  const hex = etag.replaceAll('"', '');
  return join(dir, 'media', hex.slice(0, 2), hex);
};

async function getPic(relay, pubkey) {
  const res = await fetch(`${relay.url}/profile-pic/${pubkey}`, { redirect: 'manual' });
  const body = Buffer.from(await res.arrayBuffer());
  return { status: res.status, cache: res.headers.get('x-cache'), etag: res.headers.get('etag'), body };
}

const DAMAGES = {
  'bytes flipped': (path) => {
    const b = readFileSync(path);
    for (let i = Math.floor(b.length / 2); i < Math.floor(b.length / 2) + 16; i++) b[i] ^= 0xff;
    writeFileSync(path, b);
  },
  'half-truncated': (path) => truncateSync(path, Math.floor(statSync(path).size / 2)),
  emptied: (path) => truncateSync(path, 0),
};

// Every damaged picture is a miss whose bytes are the picture's again (their SHA-256 is the ETag), and its file
// on disk is whole again; then a hit.
async function expectRepaired(relay, users, etags) {
  for (const [i, [what]] of Object.entries(DAMAGES).entries()) {
    const r = await getPic(relay, users[i].pubkey);
    assert.equal(r.status, 200, what);
    assert.notEqual(r.cache, 'HIT', `${what}: served as a hit`);
    assert.equal(`"${sha256(r.body)}"`, r.etag, `${what}: the bytes are not the ETag's`);
    assert.equal(r.etag, etags[i], what);
  }
  for (const [i, what] of Object.keys(DAMAGES).entries()) {
    await until(() => {
      const path = pictureFile(relay.dir, etags[i]);
      return statSync(path, { throwIfNoEntry: false }) && `"${sha256(readFileSync(path))}"` === etags[i];
    }, Boolean, { what: `${what}: the file written whole again` });
    const r = await getPic(relay, users[i].pubkey);
    assert.deepEqual([r.status, r.cache, `"${sha256(r.body)}"`], [200, 'HIT', etags[i]], what);
  }
}

test('a damaged picture file (bytes flipped, half-truncated, emptied) is dropped and fetched again, never served as a hit, also across a restart', async () => {
  // No memory cache, so that every hit reads its file.
  let relay = await startRelay({ config: { ...GUARDED, memory_cache_mb: 0 } });
  const dir = relay.dir;
  try {
    const c = await rawClient(relay.url);
    const users = [];
    for (const name of ['big.jpg', 'alpha.png', 'rotated.jpg']) {
      const u = newUser();
      const content = JSON.stringify({ picture: `${images.url}/f/${name}` });
      assert.equal((await publishRaw(c, u.sign({ kind: 0, content })))[2], true);
      users.push(u);
    }
    c.close();
    const etags = [];
    for (const u of users) {
      const r = await getPic(relay, u.pubkey);
      assert.deepEqual([r.status, r.cache, `"${sha256(r.body)}"`], [200, 'MISS', r.etag]);
      etags.push(r.etag);
    }
    assert.equal(new Set(etags).size, 3);

    for (const [i, hurt] of Object.values(DAMAGES).entries()) hurt(pictureFile(dir, etags[i]));
    await expectRepaired(relay, users, etags);
    assert.equal(await relay.metric('pfpcache_cache_damaged_files_total'), 3);

    // Damaged while the relay is stopped: start-up drops the files of the wrong size, the first read the other.
    await relay.cleanup({ keepDir: true });
    for (const [i, hurt] of Object.values(DAMAGES).entries()) hurt(pictureFile(dir, etags[i]));
    relay = await startRelay({ dir, config: GUARDED });
    // The damaged files are the answers, variants of masters that are whole: only the variants are dropped.
    await relay.waitFor(async () => (await relay.stats()).cache.pictures === 3, 'start-up keeping the pictures');
    await expectRepaired(relay, users, etags);
    assert.equal(await relay.metric('pfpcache_cache_damaged_files_total'), 3);
  } finally {
    await relay.cleanup();
  }
});
