// gen-ring.mjs -- writes ring.json: which server a real nginx (`hash $key consistent`) picks for keys, for
// the C unit tests of src/ring.c. Needs /usr/sbin/nginx (scripts/deps.sh bench installs it).
// Run `node tests/vectors/gen-ring.mjs` to regenerate.
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { nginxConf, spawnNginx } from '../e2e/lib/nginx.mjs';

const FRONT = 18590;
// Three rings: the cluster's shape (three nodes), a weighted one, and one whose names are not host:port.
const rings = [
  { servers: ['127.0.0.1:18591', '127.0.0.1:18592', '127.0.0.1:18593'], weights: [1, 1, 1] },
  { servers: ['127.0.0.1:18591', '127.0.0.1:18592', '127.0.0.1:18593', '127.0.0.1:18594'], weights: [1, 3, 1, 2] },
  { servers: ['localhost:18591', '127.0.0.1:18592'], weights: [1, 1] },
];
// The keys are lowercase hex pubkeys, as the cluster hashes them: the SHA-256 of "key i", which the C test makes too.
const KEYS = 2000;
const keys = Array.from({ length: KEYS }, (_, i) => createHash('sha256').update(`key ${i}`).digest('hex'));

async function pick(ring) {
  const dir = mkdtempSync(join(tmpdir(), 'pfp-ring-'));
  const backends = [...new Set(ring.servers.map((s) => Number(s.split(':')[1])))];
  mkdirSync(join(dir, 'tmp'));
  writeFileSync(
    join(dir, 'nginx.conf'),
    nginxConf(
      dir,
      `    access_log off;
    upstream cluster {
        hash $arg_k consistent;
${ring.servers.map((s, i) => `        server ${s} weight=${ring.weights[i]};`).join('\n')}
    }
${backends.map((p) => `    server { listen 127.0.0.1:${p}; return 200 "${p}"; }`).join('\n')}
    server { listen 127.0.0.1:${FRONT}; location / { proxy_pass http://cluster; add_header X-Upstream $upstream_addr always; } }`,
    ),
  );
  const proc = spawnNginx(dir, 'inherit');
  const url = `http://127.0.0.1:${FRONT}/`;
  for (let i = 0; i < 100 && !(await fetch(url).then(() => true, () => false)); i++) await new Promise((r) => setTimeout(r, 50));
  const owners = [];
  for (const k of keys) {
    const res = await fetch(`${url}?k=${k}`);
    const upstream = res.headers.get('x-upstream');
    await res.text();
    // nginx names the address it connected to; the ring names servers as written.
    const port = upstream.split(':').pop();
    const i = ring.servers.findIndex((s) => s.endsWith(`:${port}`));
    if (i < 0 || upstream.includes(',')) throw new Error(`unexpected upstream ${upstream}`);
    owners.push(i);
  }
  proc.kill();
  await new Promise((r) => proc.on('exit', r));
  rmSync(dir, { recursive: true, force: true });
  return owners;
}

const out = [];
for (const ring of rings) out.push({ ...ring, owners: (await pick(ring)).join('') });
writeFileSync(new URL('./ring.json', import.meta.url), JSON.stringify({ keys: KEYS, rings: out }, null, 1) + '\n');
