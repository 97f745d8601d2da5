#!/usr/bin/env bash
# http_static.sh -- the static-response path: wrk against GET /health, and against
# nginx (one worker) serving a file of the same size, alternating rounds in one run.
source "$(dirname "$0")/lib.sh"

start_relay static
body_bytes=$(curl -fs "$RELAY_URL/health" | wc -c)
mkdir -p "$BENCH_TMP/www"
head -c "$body_bytes" /dev/zero | tr '\0' 'x' >"$BENCH_TMP/www/health.json"
start_nginx "$BENCH_TMP/www"

ours=() theirs=()
for _ in $(seq 1 "$BENCH_ROUNDS"); do
    ours+=("$(wrk_rps "$RELAY_URL/health")")
    theirs+=("$(wrk_rps "$NGINX_URL/health.json")")
done
ours_m=$(median "${ours[@]}")
theirs_m=$(median "${theirs[@]}")

echo "static response ($body_bytes-byte body, wrk -t$WRK_THREADS -c$WRK_CONNECTIONS -d${WRK_SECONDS}s, median of $BENCH_ROUNDS rounds)"
printf '  pfpcache-relay GET /health   %10.0f req/s\n' "$ours_m"
printf '  nginx, same-size file        %10.0f req/s\n' "$theirs_m"
printf '  ratio relay/nginx            %10s\n' "$(ratio "$ours_m" "$theirs_m")"
