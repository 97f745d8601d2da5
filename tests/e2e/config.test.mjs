// config.test.mjs -- config.json: defaults written when absent, errors that stop
// start-up with exit status 2 and one line naming the key, and unknown keys.
import assert from 'node:assert/strict';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';

import { REPO, runBinary, startRelay, tempDir, testConfig } from './lib/relay.mjs';

const SEED_DEFAULTS = {
  listen_addr: ':8080',
  database_path: './data/pfpcache.db',
  media_cache_path: './data/media_cache',
  upstream_relays: ['wss://damus.io', 'wss://primal.net', 'wss://nos.lol', 'wss://purplepag.es'],
  max_concurrent: 20,
  cache_expiration_days: 30,
  max_cache_size_mb: 1024,
  lru_check_interval: 60,
  resize_images: true,
  max_image_size: 200,
  image_quality: 85,
};

test('a missing config file is written with the seed defaults', async () => {
  const dir = await tempDir();
  try {
    const path = join(dir, 'config.json');
    const r = await runBinary(['--config', path, '--check']);
    assert.equal(r.code, 0, r.stderr);
    const written = JSON.parse(await readFile(path, 'utf8'));
    for (const [key, value] of Object.entries(SEED_DEFAULTS)) {
      assert.deepEqual(written[key], value, `default of ${key}`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('every configuration key is documented in the README table', async () => {
  const dir = await tempDir();
  try {
    const path = join(dir, 'config.json');
    assert.equal((await runBinary(['--config', path, '--check'])).code, 0);
    const keys = Object.keys(JSON.parse(await readFile(path, 'utf8')));
    const readme = await readFile(join(REPO, 'README.md'), 'utf8');
    for (const key of keys) {
      assert.match(readme, new RegExp('^\\| `' + key + '` \\|', 'm'), `README documents ${key}`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

// Each case: what the file says, and what the one line of the error must contain.
const ERRORS = [
  ['malformed JSON', '{"image_quality": ', /line 1, column \d+: invalid JSON/],
  ['not an object', '["listen_addr"]', /must be a JSON object/],
  ['image_quality 0', { image_quality: 0 }, /"image_quality" is 0; allowed: an integer from 1 to 100/],
  ['image_quality 101', { image_quality: 101 }, /"image_quality" is 101; allowed: an integer from 1 to 100/],
  ['negative size', { max_cache_size_mb: -1 }, /"max_cache_size_mb" is -1; allowed: an integer from 1 to/],
  ['wrong type', { max_concurrent: '20' }, /"max_concurrent" is "20"; allowed: an integer/],
  ['boolean as string', { resize_images: 'yes' }, /"resize_images" is "yes"; allowed: true or false/],
  ['unparsable listen_addr', { listen_addr: 'port 8080' }, /"listen_addr" is "port 8080"; allowed: /],
  ['port out of range', { listen_addr: '127.0.0.1:70000' }, /"listen_addr" is "127.0.0.1:70000"/],
  ['relay that is not ws', { upstream_relays: ['wss://ok.example', 'https://nope.example'] },
    /"upstream_relays"\[1\] is "https:\/\/nope.example"; allowed: a ws:\/\/ or wss:\/\/ URL/],
  ['source network that does not parse', { allowed_source_addresses: ['127.0.0.1', '10.0.0.0/33'] },
    /"allowed_source_addresses"\[1\] is "10.0.0.0\/33"; allowed: an IPv4 or IPv6 address, or a network such as "192.168.1.0\/24"$/],
  ['source network that is not a string', { allowed_source_addresses: [5] },
    /"allowed_source_addresses"\[0\] is 5; allowed: an IPv4 or IPv6 address/],
  ['unknown log level', { log_level: 'verbose' }, /"log_level" is "verbose"; allowed: "error", "warn", "info" or "debug"/],
  ['certificate without key', { tls_cert_file: '/nonexistent/cert.pem' }, /"tls_key_file" is ""; allowed: .*required because "tls_cert_file" is set/],
  ['unreadable certificate', { tls_cert_file: '/nonexistent/cert.pem', tls_key_file: '/nonexistent/key.pem' },
    /"tls_cert_file" is "\/nonexistent\/cert.pem"; allowed: a readable PEM certificate chain/],
  ['imgproxy prefix with a trailing slash', { imgproxy_prefix: '/imgproxy/' },
    /"imgproxy_prefix" is "\/imgproxy\/"; allowed: a path such as "\/imgproxy"/],
  ['imgproxy prefix another endpoint is under', { imgproxy_prefix: '/profile-pic' },
    /"imgproxy_prefix" is "\/profile-pic"; allowed: a path no other endpoint is under$/],
  ['imgproxy salts fewer than keys', { imgproxy_key: ['ab', 'cd'], imgproxy_salt: ['ef'] },
    /"imgproxy_salt" has 1 items; allowed: as many as "imgproxy_key" has \(2\), a salt for each key$/],
  ['access log that cannot be opened', { access_log: '/nonexistent/dir/access.log' },
    /"access_log" is "\/nonexistent\/dir\/access.log"; allowed: a file that can be opened for appending/],
];

for (const [name, content, message] of ERRORS) {
  test(`configuration error stops start-up with exit 2: ${name}`, async () => {
    const dir = await tempDir();
    try {
      const path = join(dir, 'config.json');
      const text = typeof content === 'string' ? content : JSON.stringify(testConfig(dir, content));
      await writeFile(path, text);
      const r = await runBinary(['--config', path]);
      assert.equal(r.code, 2, r.stderr);
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, `one line, got:\n${r.stderr}`);
      assert.match(lines[0], new RegExp(`^pfpcache-relay: ${path.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: `));
      assert.match(lines[0], message);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
}

test('unknown keys are warned about and start-up goes on', async () => {
  const relay = await startRelay({ config: { some_future_key: true } });
  try {
    assert.match(relay.stderr, / warn .*unknown key "some_future_key" is ignored/);
    const res = await fetch(`${relay.url}/health`);
    assert.equal(res.status, 200);
  } finally {
    await relay.cleanup();
  }
});

test('unknown command-line arguments exit 2 with usage', async () => {
  const r = await runBinary(['--frobnicate']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /unknown argument "--frobnicate"/);
  assert.match(r.stderr, /usage: pfpcache-relay/);
});
