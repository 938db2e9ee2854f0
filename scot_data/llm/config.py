"""Where the vLLM environment lives: light, so the CLI can show it as a default."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_VENV = Path(os.environ.get("SCOT_VLLM_VENV", REPO_ROOT / ".venv-vllm"))
