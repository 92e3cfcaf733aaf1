#!/bin/sh
# The image's install steps: the Dockerfile's build stage runs exactly this, and tests/test_image.py runs it into a
# temporary prefix, so the install is proven without a Docker daemon.
#   scripts/image-install.sh SOURCE PREFIX [EXTRAS]     e.g. /src /opt/ray-history ray
# A virtualenv at PREFIX holding ray-history (not editable) and its dependencies; the image's last stage copies
# PREFIX alone, so no compiler, pip cache or source tree ships.
set -eu
source_dir=$1
prefix=$2
extras=${3:-}
"${PYTHON:-python3}" -m venv "$prefix"
# Extras as the package names them (`ray` adds Ray, for Ray's own dashboard frontend on dead sessions).
"$prefix/bin/python" -m pip install --quiet "$source_dir${extras:+[$extras]}"
# The entry point must run from the prefix alone (a missing dependency fails the build, not the pod).
"$prefix/bin/ray-history" --help >/dev/null
