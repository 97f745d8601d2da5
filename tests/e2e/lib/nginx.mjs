// nginx.mjs -- a real nginx on loopback running the shipped deploy/nginx/pfpcache-cluster.conf, its upstream
// servers and listen address replaced by the test's, with an access log of each request's key and the node
// nginx chose for it.
import { spawn } from 'node:child_process';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { REPO, freePort, until } from './relay.mjs';

export const SHIPPED = join(REPO, 'deploy/nginx/pfpcache-cluster.conf');

// A whole nginx.conf for a foreground nginx with one worker, its pid, error log and temporary files in `dir`
// (the temporary files in `dir`/tmp, which must exist), and `http` inside its http block.
export function nginxConf(dir, http) {
  return `worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
    client_body_temp_path ${dir}/tmp;
    proxy_temp_path ${dir}/tmp;
    fastcgi_temp_path ${dir}/tmp;
    uwsgi_temp_path ${dir}/tmp;
    scgi_temp_path ${dir}/tmp;
${http}
}
`;
}

// Runs nginx in the foreground on `dir`/nginx.conf, with `stdio` as child_process.spawn() takes it.
export function spawnNginx(dir, stdio) {
  return spawn('/usr/sbin/nginx', ['-c', join(dir, 'nginx.conf'), '-p', dir, '-g', 'daemon off;'], { stdio });
}

// Starts nginx in `dir` in front of `nodes` ("host:port", in cluster_nodes order). Resolves with
// { url, log() (the access log's lines as {key, upstream, uri, status}), stop() }.
export async function startNginx(dir, nodes) {
  const port = await freePort();
  await mkdir(join(dir, 'tmp'), { recursive: true });
  // Started by root, nginx's workers run as another user: they must be able to write their temporary files.
  await chmod(dir, 0o755);
  await chmod(join(dir, 'tmp'), 0o777);
  let shipped = await readFile(SHIPPED, 'utf8');
  const servers = /( *)server 127\.0\.0\.1:808\d;\n(?: *server 127\.0\.0\.1:808\d;\n)*/;
  if (!servers.test(shipped) || !/listen 8080;/.test(shipped)) throw new Error(`${SHIPPED} no longer has the lines the test replaces`);
  shipped = shipped
    .replace(servers, (_, indent) => nodes.map((n) => `${indent}server ${n};\n`).join(''))
    .replace('listen 8080;', `listen 127.0.0.1:${port};`);
  await writeFile(join(dir, 'pfpcache-cluster.conf'), shipped);
  await writeFile(
    join(dir, 'nginx.conf'),
    nginxConf(
      dir,
      `    log_format pfp '$pfp_key|$upstream_addr|$status|$request_uri';
    access_log ${dir}/access.log pfp;
    include ${dir}/pfpcache-cluster.conf;`,
    ),
  );
  const proc = spawnNginx(dir, ['ignore', 'ignore', 'pipe']);
  let stderr = '';
  proc.stderr.on('data', (c) => (stderr += c));
  const exited = new Promise((resolve) => proc.on('exit', resolve));
  const url = `http://127.0.0.1:${port}`;
  await until(
    () => fetch(`${url}/health`).then((r) => r.status === 200, () => proc.exitCode !== null),
    Boolean,
    { what: `nginx answering on ${url}`, timeoutMs: 10000 },
  );
  if (proc.exitCode !== null) throw new Error(`nginx exited: ${stderr}`);
  return {
    url,
    async log() {
      const text = await readFile(join(dir, 'access.log'), 'utf8');
      return text
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((l) => {
          const [key, upstream, status, uri] = l.split('|');
          return { key, upstream, status: Number(status), uri };
        });
    },
    async stop() {
      if (proc.exitCode === null) proc.kill('SIGQUIT');
      await exited;
    },
  };
}
