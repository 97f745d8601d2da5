#!/usr/bin/env bash
# run.sh -- every benchmark in turn; each prints its figures as ratios against a
# reference measured in the same run.
set -euo pipefail
cd "$(dirname "$0")"
echo "== http_static.sh"
bash ./http_static.sh
echo
echo "== relay.mjs"
node ./relay.mjs
echo
echo "== upstream.mjs"
node ./upstream.mjs
echo
