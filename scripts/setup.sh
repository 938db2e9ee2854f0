#!/usr/bin/env bash
# Create .venv with a CPU-usable torch pinned *before* the package, so pip never swaps in
# a multi-GB CUDA build, then install scot with its test extras; and make sure the
# embedded clip-art collection (Debian openclipart-svg) is present.
# Idempotent: a second call with unchanged pyproject.toml returns in a second.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${SCOT_VENV:-.venv}
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
  || { echo "scot needs Python 3.11 (found $($PYTHON --version))" >&2; exit 1; }

# torch/torchvision pairs that import together here (see shared/DESIGN.md section 5).
case "$(uname -m)" in
  aarch64|arm64) TORCH_PINS="torch==2.9.1 torchvision==0.24.1" ;;
  *) TORCH_PINS="torch==2.14.1 torchvision==0.29.1" ;;
esac

stamp="$VENV/.scot-installed"
want="$(sha256sum pyproject.toml | cut -c1-16) $TORCH_PINS"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "setup: $VENV is up to date"
else
  [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  echo "setup: installing $TORCH_PINS into $VENV"
  # shellcheck disable=SC2086
  "$VENV/bin/python" -m pip install --quiet $TORCH_PINS
  echo "setup: installing scot and its test dependencies"
  "$VENV/bin/python" -m pip install --quiet -e ".[test]"
  echo "$want" > "$stamp"
fi

bash scripts/ensure_clipart.sh
