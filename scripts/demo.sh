#!/usr/bin/env bash
# The main job: install (first time), then run the demo (a local Ray, the collector, a real workload).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/ray-history ] || scripts/setup.sh
exec .venv/bin/ray-history demo "$@"
