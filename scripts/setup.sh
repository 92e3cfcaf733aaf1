#!/usr/bin/env bash
# Set up everything on a fresh machine (Python 3.11, pip and gcc are all it needs): a virtualenv in
# .venv with the project, Ray and the test tools, and Debian's Chromium for the page tests. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1; then
  # The page tests drive the system's Chromium: browsers are never downloaded by a test tool.
  sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq && $sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
    || echo "could not install chromium (apt-get install chromium): the page tests need it" >&2
fi
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[ray,test]'
echo "ready: .venv/bin/ray-history --help" >&2
