#!/usr/bin/env bash
# Set up everything on a fresh machine (Python 3.11, pip and gcc are all it needs): a virtualenv in
# .venv with the project, Ray and the test tools, Debian's Chromium for the page tests and its kubectl for the
# deploy tests. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1; then
  # The page tests drive the system's Chromium: browsers are never downloaded by a test tool.
  sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq && $sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
    || echo "could not install chromium (apt-get install chromium): the page tests need it" >&2
fi
if ! command -v kubectl >/dev/null 2>&1; then
  # The deploy tests build every kustomization with kubectl; Debian's is 1.20 (kustomize v2.0.3), the oldest
  # the manifests are written for.
  sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq && $sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client \
    >/dev/null || echo "could not install kubectl (apt-get install kubernetes-client): the deploy tests need it" >&2
fi
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[ray,test]'
echo "ready: .venv/bin/ray-history --help" >&2
