#!/usr/bin/env bash
# run.sh -- every benchmark in turn; each prints its figures as ratios against a
# reference measured in the same run.
set -euo pipefail
cd "$(dirname "$0")"
for b in http_static relay negentropy sync upstream discovery pictures hit_cpu resize variants variant_serving imgproxy quality jobs attack_downloads attack_images attack_ws; do
    echo "== $b"
    node "./$b.mjs"
    echo
done
