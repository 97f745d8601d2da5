// http_static.mjs -- the static-response path: wrk against GET /health, and against nginx (one
// worker) serving a file of the same size, alternating rounds in one run.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { startRelay } from '../tests/e2e/lib/relay.mjs';
import { WRK, benchDir, fmt, startNginx, wrkRounds } from './lib.mjs';

const dir = benchDir();
const relay = await startRelay({ dir: join(dir, 'relay') });
const nginxDir = join(dir, 'nginx');
try {
  const body = await (await fetch(`${relay.url}/health`)).text();
  mkdirSync(join(nginxDir, 'www'), { recursive: true });
  writeFileSync(join(nginxDir, 'www', 'health.json'), 'x'.repeat(body.length));
  const nginx = await startNginx(join(nginxDir, 'www'), nginxDir);
  try {
    const [ours, theirs] = wrkRounds([{ url: `${relay.url}/health` }, { url: `${nginx.url}/health.json` }]);
    console.log(`static response (${body.length}-byte body, wrk -t${WRK.threads} -c${WRK.connections} -d${WRK.seconds}s, median of ${WRK.rounds} rounds)`);
    console.log(`  pfpcache-relay GET /health   ${fmt(ours).padStart(10)} req/s`);
    console.log(`  nginx, same-size file        ${fmt(theirs).padStart(10)} req/s`);
    console.log(`  ratio relay/nginx            ${(ours / theirs).toFixed(2).padStart(10)}`);
  } finally {
    await nginx.stop();
  }
} finally {
  await relay.cleanup();
  rmSync(dir, { recursive: true, force: true });
}
