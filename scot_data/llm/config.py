"""Where the vLLM environment lives: light, so the CLI can show it as a default."""

from __future__ import annotations

import os
import sys
from pathlib import Path

DEFAULT_VENV = Path(os.environ.get("SCOT_VLLM_VENV", f"{sys.prefix}-vllm"))
"""``SCOT_VLLM_VENV``, or the environment beside the one scot runs in (``make setup`` puts
``.venv`` and ``.venv-vllm`` side by side): found from any working directory, in a checkout
or where the package is installed."""
