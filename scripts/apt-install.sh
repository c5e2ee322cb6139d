#!/usr/bin/env bash
# Install Debian packages when apt-get is there and we may use it; otherwise say what to do.
set -euo pipefail
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1; then
  sudo apt-get update -qq
  sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
else
  echo "please install the Debian packages: $*" >&2
  exit 1
fi
