#!/usr/bin/env bash
# deps.sh -- install the Debian packages pfpcache-relay needs, and nothing twice.
#
#   scripts/deps.sh          what building and running the relay needs (./run.sh)
#   scripts/deps.sh test     that, plus what `make test` and `make asan` need (nginx and Varnish for the cluster tests)
#   scripts/deps.sh bench    that of test, plus wrk for `make bench`
#   scripts/deps.sh fuzz     that of test, plus clang and libFuzzer for `make fuzz`
#
# Packages already installed are skipped; `apt-get update` runs only when
# something is missing; sudo is used when not running as root.
set -euo pipefail

profile=${1:-run}

run_pkgs=(build-essential pkg-config
    libh2o-dev libuv1-dev libwslay-dev libssl-dev libcurl4-openssl-dev liblmdb-dev
    libvips-dev libsecp256k1-dev libjansson-dev)
test_pkgs=(libcmocka-dev openssl curl ca-certificates chromium nginx varnish)
bench_pkgs=(wrk)
fuzz_pkgs=(clang libclang-rt-14-dev)

case "$profile" in
run) want=("${run_pkgs[@]}") ;;
test) want=("${run_pkgs[@]}" "${test_pkgs[@]}") ;;
bench) want=("${run_pkgs[@]}" "${test_pkgs[@]}" "${bench_pkgs[@]}") ;;
fuzz) want=("${run_pkgs[@]}" "${test_pkgs[@]}" "${fuzz_pkgs[@]}") ;;
*)
    echo "usage: $0 [run|test|bench|fuzz]" >&2
    exit 2
    ;;
esac

# Node.js runs the end-to-end tests and benchmark clients. A node that is
# already on PATH (18 or newer) is used as it is; otherwise Debian's is installed.
if [ "$profile" != run ]; then
    node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
    if [ "$node_major" -lt 18 ] || ! command -v npm >/dev/null 2>&1; then
        want+=(nodejs npm)
    fi
fi

missing=()
for pkg in "${want[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing+=("$pkg")
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
else
    echo "deps.sh: missing packages (${missing[*]}) and not root, and sudo is not installed" >&2
    exit 1
fi

echo "deps.sh: installing ${missing[*]}" >&2
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
