#!/usr/bin/env bash
# Fashion-MNIST comes from Debian's package dataset-fashion-mnist. Install it where the data is
# absent and apt-get is available; a copy in $TRAINLAB_DATA counts as present.
set -euo pipefail
for dir in "${TRAINLAB_DATA:-}" "${TRAINLAB_DATA:-}/fashion-mnist" /usr/share/datasets/fashion-mnist; do
  if [ -n "$dir" ] && ls "$dir"/train-images-idx3-ubyte* >/dev/null 2>&1; then
    exit 0
  fi
done
echo "Fashion-MNIST not found; installing Debian's dataset-fashion-mnist" >&2
if ! "$(dirname "$0")/apt-install.sh" dataset-fashion-mnist; then
  echo "Fashion-MNIST is missing: install dataset-fashion-mnist, or put the four IDX files in \$TRAINLAB_DATA" >&2
  exit 1
fi
