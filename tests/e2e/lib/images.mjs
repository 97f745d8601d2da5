// images.mjs -- test images made by tests/tools/make_fixtures, and a loopback HTTP server that serves
// them along with the misbehaving origins (endless, trickling, slow, lying, redirecting) the fetcher must survive.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { tempDir } from './relay.mjs';

export const TOOLS =
  process.env.PFP_TOOLS ?? fileURLToPath(new URL('../../../build/release/tests/tools/', import.meta.url));
export const MAKE_FIXTURES = join(TOOLS, 'make_fixtures');

// Writes the fixtures (big.jpg, alpha.png, cmyk.jpg, huge.png, ...) into `dir`, which must exist.
export function makeFixtures(dir) {
  execFileSync(MAKE_FIXTURES, [dir], { stdio: ['ignore', 'ignore', 'pipe'] });
  return dir;
}

// Writes the hostile pictures (scans.jpg, trailing.png, slow.png, bomb.avif, polyglot.jpg) and the legitimate
// ones closest to them (progressive.jpg, image.heic) into `dir`, which must exist.
export function makeHostile(dir) {
  execFileSync(MAKE_FIXTURES, ['--hostile', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
  return dir;
}

// Writes `n` distinct noisy JPEGs, noise0.jpg ... noise<n-1>.jpg, into `dir` (each some 20 KB once resized).
export function makeNoise(dir, n) {
  execFileSync(MAKE_FIXTURES, ['--noise', dir, String(n)], { stdio: ['ignore', 'ignore', 'pipe'] });
  return dir;
}

// What libvips sees in `path`: format, size, bands, interpretation, orientation, pages and three pixels
// along the middle row. Throws (with .status 1 and .stderr) when libvips cannot load the file.
export function inspect(path) {
  const out = execFileSync(MAKE_FIXTURES, ['--inspect', path], { stdio: ['ignore', 'pipe', 'pipe'] });
  return JSON.parse(out.toString());
}

// inspect() of bytes (a response body), written under `dir` by their SHA-256.
export function inspectBytes(dir, body) {
  const path = join(dir, `out-${createHash('sha256').update(body).digest('hex')}`);
  writeFileSync(path, body);
  return inspect(path);
}

const TYPES = {
  '.jpg': 'image/jpeg',
  '.png': 'image/png',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.avif': 'image/avif',
  '.heic': 'image/heic',
  '.svg': 'image/svg+xml',
  // Deliberately wrong: the relay must judge an image by its bytes, not by what the origin claims.
  '.bin': 'image/png',
};

const KiB = 1024;
const MiB = 1024 * KiB;
const JPEG_SOI = Buffer.from([0xff, 0xd8, 0xff]);

// Writes chunk(0), chunk(1), ... up to `count` chunks (forever when count is Infinity), waiting for 'drain' so
// that a slow reader holds the server back instead of filling its memory. Stops when the peer goes away;
// calls `done` after the last write.
function pump(stream, chunk, count, done = () => {}) {
  let sent = 0;
  const next = () => {
    while (!stream.destroyed && sent < count) {
      if (!stream.write(chunk(sent++))) {
        stream.once('drain', next);
        return;
      }
    }
    if (!stream.destroyed) done();
  };
  next();
}

// Chunks of filler, the first one starting like a JPEG so that sniffing the start of the body passes.
function jpegishChunk(size) {
  const first = Buffer.alloc(size, 0x55);
  JPEG_SOI.copy(first);
  const rest = Buffer.alloc(size, 0x55);
  return (i) => (i === 0 ? first : rest);
}

async function serveFixture(fixturesDir, name, res) {
  // Only plain file names: the path must not climb out of the fixtures directory.
  const type = /^[\w-]+(\.[\w-]+)*$/.test(name) ? TYPES[extname(name)] : undefined;
  let body;
  try {
    if (type) body = await readFile(join(fixturesDir, name));
  } catch {
    // A missing file is a 404 like an unknown extension.
  }
  if (!body) {
    res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
    return;
  }
  res.writeHead(200, { 'Content-Type': type, 'Content-Length': body.length }).end(body);
}

function serveEndless(res) {
  res.writeHead(200, { 'Content-Type': 'image/jpeg' });
  pump(res, jpegishChunk(64 * KiB), Infinity);
}

function serveTrickle(res) {
  res.writeHead(200, { 'Content-Type': 'image/jpeg' });
  res.write(JPEG_SOI);
  let seconds = 0;
  const timer = setInterval(() => {
    if (++seconds >= 120) {
      clearInterval(timer);
      res.end();
    } else {
      res.write(Buffer.from([0x00]));
    }
  }, 1000);
  res.on('close', () => clearInterval(timer));
}

// Written straight to the socket: Node's own response object might refuse to send more than Content-Length.
function serveLiar(socket) {
  socket.write('HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n');
  pump(socket, jpegishChunk(MiB), 20, () => socket.destroySoon());
}

function redirect(res, location) {
  res.writeHead(302, { Location: location, 'Content-Length': 0 }).end();
}

// Serves `fixturesDir` and the misbehaving routes on 127.0.0.1 and an ephemeral port.
// Resolves with { url, port, hits, total(), close() }; `hits` maps each request path (without query) to a count.
export function startImageServer(fixturesDir) {
  const hits = new Map();
  const sockets = new Set();
  let total = 0;

  const server = createServer((req, res) => {
    // A client that hangs up mid-body must not take the server down with an unhandled 'error'.
    req.on('error', () => {});
    res.on('error', () => {});
    const path = req.url.split('?')[0];
    hits.set(path, (hits.get(path) ?? 0) + 1);
    total++;

    let m;
    if ((m = /^\/f\/([^/]+)$/.exec(path))) {
      serveFixture(fixturesDir, decodeURIComponent(m[1]), res).catch(() => res.destroy());
    } else if ((m = /^\/slow\/(\d+)\/([^/]+)$/.exec(path))) {
      const timer = setTimeout(() => serveFixture(fixturesDir, decodeURIComponent(m[2]), res).catch(() => res.destroy()), Number(m[1]));
      res.on('close', () => clearTimeout(timer));
    } else if (path === '/endless') {
      serveEndless(res);
    } else if (path === '/trickle') {
      serveTrickle(res);
    } else if (path === '/liar') {
      serveLiar(req.socket);
    } else if ((m = /^\/redirect\/(\d+)\/(.+)$/.exec(path))) {
      const n = Number(m[1]);
      redirect(res, n > 1 ? `/redirect/${n - 1}/${m[2]}` : `/f/${m[2]}`);
    } else if ((m = /^\/to\/([^/]+)\/(.*)$/.exec(req.url))) {
      redirect(res, `http://${m[1]}/${m[2]}`);
    } else if ((m = /^\/status\/([2-5]\d\d)$/.exec(path))) {
      res.writeHead(Number(m[1]), { 'Content-Type': 'text/plain' }).end(`status ${m[1]}\n`);
    } else {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
    }
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
  });
  server.on('clientError', (err, socket) => socket.destroy());

  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      resolve({
        url: `http://127.0.0.1:${port}`,
        port,
        hits,
        total: () => total,
        // Endless and trickling responses never finish by themselves, so their sockets are cut here.
        close: () =>
          new Promise((done) => {
            server.close(() => done());
            for (const socket of sockets) socket.destroy();
          }),
      });
    });
  });
}

// The fixtures made in a new temporary directory, `extra(dir)` adding to them (noise, hostile pictures), and
// served on loopback, for a test file's before(); stopFixtures() is its after().
export async function serveFixtures(extra = (dir) => dir) {
  const fixtures = extra(makeFixtures(await tempDir()));
  return { fixtures, images: await startImageServer(fixtures) };
}

export async function stopFixtures({ fixtures, images }) {
  await images.close();
  await rm(fixtures, { recursive: true, force: true });
}
