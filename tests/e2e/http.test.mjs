// http.test.mjs -- the HTTP server: /health, error shapes, limits, keep-alive,
// access log, log levels, and HTTP/2 over TLS on the same listener.
import assert from 'node:assert/strict';
import { readFile, rm } from 'node:fs/promises';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { freePort, startRelay, tempDir } from './lib/relay.mjs';
import { makeCertificates } from './lib/tls.mjs';

let relay;
let port;

before(async () => {
  relay = await startRelay({ config: { max_request_body_bytes: 4096 } });
  port = Number(new URL(relay.url).port);
});

after(async () => {
  await relay.cleanup();
});

// Writes raw bytes on a fresh connection and collects everything until the server closes or `until` matches.
function rawExchange(bytes, { until, timeoutMs = 5000 } = {}) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let data = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no complete answer within ${timeoutMs} ms, got: ${data}`));
    }, timeoutMs);
    sock.on('data', (c) => {
      data += c;
      if (until && until.test(data)) {
        clearTimeout(timer);
        sock.destroy();
        resolve({ data, closedByServer: false });
      }
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      clearTimeout(timer);
      resolve({ data, closedByServer: true });
    });
    sock.write(bytes);
  });
}

function assertJsonError(res, body, status) {
  assert.equal(res.status, status);
  assert.match(res.headers.get('content-type'), /^application\/json/);
  assert.equal(typeof body.error, 'string');
  assert.ok(body.error.length > 0);
}

test('GET /health answers 200 with status, version and uptime', async () => {
  const res = await fetch(`${relay.url}/health`);
  const body = await res.json();
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /^application\/json/);
  assert.equal(body.status, 'ok');
  assert.match(body.version, /^\d+\.\d+\.\d+$/);
  assert.equal(typeof body.uptime_seconds, 'number');
  assert.ok(body.uptime_seconds >= 0);
});

test('HEAD /health sends the headers and no body', async () => {
  const { data } = await rawExchange('HEAD /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  const [head, rest] = data.split('\r\n\r\n');
  assert.match(head, /^HTTP\/1\.1 200 /);
  assert.match(head, /content-length: \d+/i);
  assert.equal(rest, '');
});

test('an unknown path answers 404 with a JSON error', async () => {
  const res = await fetch(`${relay.url}/no/such/thing`);
  const body = await res.json();
  assertJsonError(res, body, 404);
  assert.match(body.error, /\/no\/such\/thing/);
});

test('a wrong method answers 405 with an Allow header', async () => {
  const res = await fetch(`${relay.url}/health`, { method: 'DELETE' });
  const body = await res.json();
  assertJsonError(res, body, 405);
  assert.equal(res.headers.get('allow'), 'GET, HEAD, OPTIONS');
  assert.match(body.error, /DELETE/);
});

test('OPTIONS answers a CORS preflight', async () => {
  const res = await fetch(`${relay.url}/health`, {
    method: 'OPTIONS',
    headers: { Origin: 'https://app.example', 'Access-Control-Request-Method': 'GET' },
  });
  assert.equal(res.status, 204);
  assert.equal(res.headers.get('access-control-allow-origin'), '*');
  assert.match(res.headers.get('access-control-allow-methods'), /GET/);
  assert.match(res.headers.get('access-control-allow-headers'), /Content-Type/);
});

test('a body over max_request_body_bytes answers 413 with a JSON error', async () => {
  const { data } = await rawExchange(
    'POST /health HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n',
  );
  const [head, body] = data.split('\r\n\r\n');
  assert.match(head, /^HTTP\/1\.1 413 /);
  assert.match(head, /content-type: application\/json/i);
  assert.deepEqual(JSON.parse(body), { error: 'request body is larger than the limit of 4096 bytes' });
});

test('a chunked body that grows past the limit answers 413 too', async () => {
  const chunk = 'x'.repeat(1000);
  const chunks = Array.from({ length: 6 }, () => `${(1000).toString(16)}\r\n${chunk}\r\n`).join('');
  const { data } = await rawExchange(
    `POST /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${chunks}0\r\n\r\n`,
  );
  const [head, body] = data.split('\r\n\r\n');
  assert.match(head, /^HTTP\/1\.1 413 /);
  assert.match(JSON.parse(body).error, /larger than the limit of 4096 bytes/);
});

test('the process keeps serving after a malformed request', async () => {
  const { data } = await rawExchange('THIS IS NOT HTTP\r\n\r\n');
  assert.match(data, /^HTTP\/1\.1 400 /);
  const res = await fetch(`${relay.url}/health`);
  assert.equal(res.status, 200);
});

test('HTTP/1.1 keeps the connection alive across requests', async () => {
  const req = 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n';
  const sock = net.connect(port, '127.0.0.1');
  const responses = [];
  let buffered = '';
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('keep-alive exchange timed out')), 5000);
    sock.on('error', reject);
    sock.on('close', () => reject(new Error('server closed a keep-alive connection')));
    sock.on('data', (c) => {
      buffered += c;
      // Each /health answer is complete once its JSON line has arrived.
      let end;
      while ((end = buffered.indexOf('}\n')) !== -1) {
        responses.push(buffered.slice(0, end + 2));
        buffered = buffered.slice(end + 2);
        if (responses.length < 3) sock.write(req);
        else {
          clearTimeout(timer);
          sock.removeAllListeners('close');
          sock.destroy();
          resolve();
        }
      }
    });
    sock.write(req);
  });
  assert.equal(responses.length, 3);
  for (const r of responses) {
    assert.match(r, /^HTTP\/1\.1 200 /);
    assert.doesNotMatch(r, /connection: close/i);
  }
});

test('access_log records each request', async () => {
  const dir = await tempDir();
  const logPath = join(dir, 'access.log');
  const logged = await startRelay({ dir, config: { access_log: logPath } });
  try {
    await (await fetch(`${logged.url}/health`)).text();
    await (await fetch(`${logged.url}/missing`)).text();
    const log = await readFile(logPath, 'utf8');
    assert.match(log, /"GET \/health HTTP\/1\.1" 200 /);
    assert.match(log, /"GET \/missing HTTP\/1\.1" 404 /);
  } finally {
    await logged.cleanup();
  }
});

test('log_level gates what is logged', async () => {
  const p = await freePort();
  const quiet = await startRelay({
    config: { log_level: 'error', listen_addr: `127.0.0.1:${p}` },
    readyPattern: null,
  });
  const verbose = await startRelay({ config: { log_level: 'debug' } });
  try {
    let res;
    for (let i = 0; i < 50 && !res; i++) {
      res = await fetch(`http://127.0.0.1:${p}/health`).catch(() => new Promise((r) => setTimeout(r, 100)));
    }
    assert.equal(res.status, 200);
    await (await fetch(`${verbose.url}/health`)).text();
    assert.doesNotMatch(quiet.stderr, / info /);
    assert.match(verbose.stderr, / info listening on /);
    await verbose.waitForLog(/ debug GET \/health$/m);
    assert.match(verbose.stderr, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z /m);
  } finally {
    await quiet.cleanup();
    await verbose.cleanup();
  }
});

test('with tls_cert_file and tls_key_file the listener serves HTTP/2 and HTTP/1.1 over TLS', async () => {
  const dir = await tempDir();
  const certs = makeCertificates(dir);
  const secure = await startRelay({ dir, config: { tls_cert_file: certs.cert, tls_key_file: certs.key } });
  const ca = await readFile(certs.ca);
  try {
    assert.match(secure.url, /^https:\/\/127\.0\.0\.1:\d+$/);

    const session = http2.connect(secure.url, { ca });
    const h2 = await new Promise((resolve, reject) => {
      session.on('error', reject);
      const req = session.request({ ':path': '/health' });
      let body = '';
      let status;
      req.on('response', (h) => (status = h[':status']));
      req.on('data', (c) => (body += c));
      req.on('end', () => resolve({ status, body, alpn: session.alpnProtocol }));
      req.on('error', reject);
      req.end();
    });
    session.close();
    assert.equal(h2.alpn, 'h2');
    assert.equal(h2.status, 200);
    assert.equal(JSON.parse(h2.body).status, 'ok');

    const h1 = await new Promise((resolve, reject) => {
      https
        .get(`${secure.url}/health`, { ca, ALPNProtocols: ['http/1.1'] }, (res) => {
          let body = '';
          res.on('data', (c) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode, version: res.httpVersion, body }));
        })
        .on('error', reject);
    });
    assert.equal(h1.status, 200);
    assert.equal(h1.version, '1.1');
  } finally {
    await secure.cleanup();
    await rm(dir, { recursive: true, force: true });
  }
});
