// shutdown.test.mjs -- SIGTERM and SIGINT stop the relay cleanly and promptly.
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';

import { startRelay } from './lib/relay.mjs';

function connects(port) {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    sock.on('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.on('error', () => resolve(false));
  });
}

for (const signal of ['SIGTERM', 'SIGINT']) {
  test(`${signal} stops the relay with exit status 0 and closes the port`, async () => {
    const relay = await startRelay();
    const port = Number(new URL(relay.url).port);
    try {
      assert.equal((await fetch(`${relay.url}/health`)).status, 200);
      const { code } = await relay.stop(signal);
      assert.equal(code, 0, relay.stderr);
      assert.match(relay.stderr, new RegExp(`${signal}: shutting down`));
      assert.match(relay.stderr, / info stopped$/m);
      assert.equal(await connects(port), false);
    } finally {
      await relay.cleanup();
    }
  });
}

test('an idle keep-alive connection does not hold up shutdown', async () => {
  const relay = await startRelay({ config: { shutdown_timeout_seconds: 30 } });
  const port = Number(new URL(relay.url).port);
  const sock = net.connect(port, '127.0.0.1');
  try {
    await new Promise((resolve, reject) => {
      sock.on('error', reject);
      sock.on('data', (c) => {
        if (String(c).includes('}\n')) resolve();
      });
      sock.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
    });
    const started = Date.now();
    const { code } = await relay.stop('SIGTERM');
    assert.equal(code, 0, relay.stderr);
    // Well under both the 30 s shutdown timeout and h2o's 10 s keep-alive timeout.
    assert.ok(Date.now() - started < 8000, `shutdown took ${Date.now() - started} ms`);
  } finally {
    sock.destroy();
    await relay.cleanup();
  }
});
