"""Atomic file writes: every output appears whole or not at all.

A run killed with ``kill -9`` may leave ``*.scot-tmp-*`` files behind, never a truncated
output under its final name, so a later stage can trust any file it finds. The mark is
scot's own so that the clean-up (``outdir.remove_own_temporaries``) can never mistake a
user's ``report.tmp-final.docx`` for one of its leftovers.
"""

from __future__ import annotations

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


def build_folder_once(path: str | os.PathLike[str], build: Callable[[Path], None]) -> Path:
    """The folder ``path``, built by ``build(tmp)`` into a temporary sibling and renamed into
    place only when ``build`` returns: a folder under the final name is always complete.

    Meant for caches derived from installed files (an unpacked model, say): a run killed
    mid-build leaves only a ``*.scot-tmp-*`` folder, which is never taken as done, and two
    processes building at once both succeed, the second rename losing to the first.
    """
    final = Path(path)
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=final.name + TMP_MARK, dir=final.parent))
    try:
        build(tmp)
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0o700 would hide a shared cache from others
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():  # not another builder's finished folder: a real failure
                raise
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
