#!/usr/bin/env bash
# Set up everything on a fresh machine (Python 3.11, pip and gcc are all it needs): a virtualenv in
# .venv with the project, Ray and the test tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[ray,test]'
echo "ready: .venv/bin/ray-history --help" >&2
