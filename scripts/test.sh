#!/usr/bin/env bash
# The tests: install (first time), lint, then the whole suite (real Ray, real SeaweedFS and moto).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/pytest ] || scripts/setup.sh
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
