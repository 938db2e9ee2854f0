"""Build a directory whole or not at all, once, even with concurrent callers.

Model directories (converted SmolLM2, the tiny test model) take seconds to minutes to
write and are read by a separate server process. A half-written directory would make
vLLM fail in confusing ways, so each one is built under a temporary name and renamed
into place; a marker file inside says it is complete. A lock file serialises builders
(two test workers, a CLI and a flow) and is released by the kernel if a builder is
killed, so a ``kill -9`` only leaves a temporary directory that the next builder clears.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scot_data.atomic import TMP_MARK, atomic_write_json

MARKER = "scot_build.json"


def is_complete(out_dir: Path) -> bool:
    """True when ``out_dir`` was finished by :func:`build_once`."""
    return (out_dir / MARKER).is_file()


def build_once(out_dir: str | os.PathLike[str], build: Callable[[Path], dict[str, Any]]) -> Path:
    """Run ``build(tmp_dir)`` unless ``out_dir`` is already complete; rename tmp into place.

    ``build`` fills the empty ``tmp_dir`` and returns provenance written as the marker.
    An existing ``out_dir`` without a marker was not made here: it is left alone (error)
    rather than overwritten, since it may be someone's model.
    """
    final = Path(out_dir).resolve()
    if is_complete(final):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f".{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_complete(final):
            return final
        if final.exists():
            raise FileExistsError(f"{final} exists but has no {MARKER}: not overwriting it")
        tmp = final.parent / f"{final.name}{TMP_MARK}build"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            atomic_write_json(tmp / MARKER, build(tmp))
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final
