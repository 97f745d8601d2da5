#!/usr/bin/env bash
# lib.sh -- helpers shared by the benchmarks: a relay and an nginx on loopback,
# wrk runs, and ratios. Everything started here is stopped on exit.

set -euo pipefail

BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RELAY_BIN=${PFP_BIN:-$BENCH_ROOT/pfpcache-relay}
BENCH_TMP=$(mktemp -d /tmp/pfp-bench-XXXXXX)
# nginx workers run as www-data when started by root: they must reach the files.
chmod 755 "$BENCH_TMP"
BENCH_PIDS=()
WRK_THREADS=${WRK_THREADS:-1}
WRK_CONNECTIONS=${WRK_CONNECTIONS:-32}
WRK_SECONDS=${WRK_SECONDS:-5}
BENCH_ROUNDS=${BENCH_ROUNDS:-3}

bench_cleanup() {
    for pid in "${BENCH_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$BENCH_TMP"
}
trap bench_cleanup EXIT

# A TCP port that is free now.
free_port() {
    node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# wait_http URL: waits until URL answers with any status, for up to 10 s.
wait_http() {
    for _ in $(seq 1 100); do
        curl -s -o /dev/null "$1" && return 0
        sleep 0.1
    done
    echo "bench: $1 never answered" >&2
    return 1
}

# start_relay NAME [EXTRA_JSON]: starts the relay on a free port with data under
# $BENCH_TMP/NAME; sets RELAY_URL. EXTRA_JSON is merged into the configuration.
start_relay() {
    local extra=${2:-'{}'} dir="$BENCH_TMP/$1" port
    port=$(free_port)
    mkdir -p "$dir"
    node -e '
        const [dir, port, extra] = process.argv.slice(1);
        const cfg = { listen_addr: `127.0.0.1:${port}`, database_path: `${dir}/db/pfpcache.db`,
                      media_cache_path: `${dir}/media`, upstream_relays: [], log_level: "warn",
                      ...JSON.parse(extra) };
        require("fs").writeFileSync(`${dir}/config.json`, JSON.stringify(cfg, null, 2));
    ' "$dir" "$port" "$extra"
    "$RELAY_BIN" --config "$dir/config.json" 2>"$dir/relay.log" &
    BENCH_PIDS+=($!)
    RELAY_URL="http://127.0.0.1:$port"
    wait_http "$RELAY_URL/health"
}

# start_nginx ROOT: serves directory ROOT with one worker on a free port; sets NGINX_URL.
start_nginx() {
    local root=$1 dir="$BENCH_TMP/nginx" port
    port=$(free_port)
    mkdir -p "$dir/tmp"
    cat >"$dir/nginx.conf" <<CONF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    open_file_cache max=200000 inactive=60s;
    open_file_cache_valid 60s;
    client_body_temp_path $dir/tmp;
    proxy_temp_path $dir/tmp;
    fastcgi_temp_path $dir/tmp;
    uwsgi_temp_path $dir/tmp;
    scgi_temp_path $dir/tmp;
    types { image/jpeg jpg; application/json json; }
    server {
        listen 127.0.0.1:$port;
        root $root;
    }
}
CONF
    /usr/sbin/nginx -c "$dir/nginx.conf" -p "$dir" -g 'daemon off;' &
    BENCH_PIDS+=($!)
    NGINX_URL="http://127.0.0.1:$port"
    wait_http "$NGINX_URL/"
}

# wrk_rps URL [LUA_SCRIPT]: requests per second of one wrk run.
wrk_rps() {
    local url=$1 script=${2:-} out
    if [ -n "$script" ]; then
        out=$(wrk -t"$WRK_THREADS" -c"$WRK_CONNECTIONS" -d"${WRK_SECONDS}s" -s "$script" "$url")
    else
        out=$(wrk -t"$WRK_THREADS" -c"$WRK_CONNECTIONS" -d"${WRK_SECONDS}s" "$url")
    fi
    if echo "$out" | grep -q 'Non-2xx or 3xx responses'; then
        echo "bench: $url answered errors under load:" >&2
        echo "$out" >&2
        return 1
    fi
    echo "$out" | awk '/^Requests\/sec:/ {print $2}'
}

# median of the numbers given as arguments
median() {
    printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'
}

# ratio A B: A/B with two decimals
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }'
}
