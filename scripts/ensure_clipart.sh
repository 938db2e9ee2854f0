#!/usr/bin/env bash
# The embedded default collection: ~8,000 public-domain SVGs from Debian's openclipart-svg.
set -euo pipefail
ROOT=/usr/share/openclipart/svg
if [[ -d "$ROOT" ]]; then
  exit 0
fi
if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
  echo "setup: installing Debian package openclipart-svg"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openclipart-svg >/dev/null
else
  echo "setup: the clip-art collection is missing; run: sudo apt-get install openclipart-svg" >&2
  exit 1
fi
