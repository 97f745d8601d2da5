#!/usr/bin/env bash
# run.sh -- install what is missing, build, and start the relay.
# The configuration is config.json (or $PFP_CONFIG); if it does not exist the
# relay writes it with the defaults and serves http://localhost:8080.
# Ctrl-C stops the relay cleanly.
set -euo pipefail
cd "$(dirname "$0")"
scripts/deps.sh
make -s all
exec ./pfpcache-relay --config "${PFP_CONFIG:-config.json}" "$@"
