"""Atomic file writes: every output appears whole or not at all.

A run killed with ``kill -9`` may leave ``*.scot-tmp-*`` files behind, never a truncated
output under its final name, so a later stage can trust any file it finds. The mark is
scot's own so that the clean-up (``outdir.remove_own_temporaries``) can never mistake a
user's ``report.tmp-final.docx`` for one of its leftovers.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

TMP_MARK = ".scot-tmp-"
BUILD_MARKER = "scot_build.json"  # inside a folder finished by build_once


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The temporary file lives in the same directory so the final ``os.replace`` is a
    rename on one filesystem (atomic on POSIX). On error the temporary file is removed, and
    an ``OSError`` gets a note naming ``path``: a full disk otherwise reads "[Errno 28] No
    space left on device" (pyarrow, tarfile) with no word of which output failed.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=final.name + TMP_MARK, dir=final.parent)
    os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    except OSError as exc:
        exc.add_note(f"while writing {final} (left as it was: only a temporary file was written)")
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def is_built(out_dir: Path) -> bool:
    """True when ``out_dir`` was finished by :func:`build_once`."""
    return (out_dir / BUILD_MARKER).is_file()


def build_once(out_dir: str | os.PathLike[str], build: Callable[[Path], dict[str, Any]]) -> Path:
    """Build a folder whole or not at all, once, even with concurrent callers.

    For folders derived from installed files (a converted LLM, an unpacked text model) that
    take seconds to minutes to write and are read by other processes: ``build(tmp)`` fills
    an empty temporary sibling and returns provenance, written as the marker file; then the
    folder is renamed into place. A lock file serialises builders and is released by the
    kernel if one is killed, so ``kill -9`` only leaves a temporary folder the next builder
    clears. An existing ``out_dir`` without a marker was not made here: it is left alone
    (error) rather than overwritten, since it may be someone's model.
    """
    final = Path(out_dir).resolve()
    if is_built(final):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f".{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_built(final):
            return final
        if final.exists():
            raise FileExistsError(f"{final} exists but has no {BUILD_MARKER}: not overwriting it")
        tmp = final.parent / f"{final.name}{TMP_MARK}build"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            atomic_write_json(tmp / BUILD_MARKER, build(tmp))
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _umask() -> int:
    """The process umask (read by setting and restoring it), so outputs get normal modes."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the final path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented, key-sorted JSON, atomically."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_parquet(path: str | os.PathLike[str], table: pa.Table, **options: Any) -> Path:
    """Write ``table`` as Parquet, atomically (``options`` go to ``pq.write_table``)."""
    import pyarrow.parquet as pq  # here, so writing JSON does not load pyarrow

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **options)
    return Path(path)
