"""One writer per output folder, and a stage writes only into a folder that is its own.

Every stage runs inside :func:`stage_folder`, which

1. refuses a non-empty folder that another stage (or a person) filled, unless ``force``:
   a folder is a stage's own when its lock file or its ``manifest.json`` names that stage,
   or when it holds the stage's ``signature`` file (results of a run from before locks);
2. takes an exclusive ``flock`` on ``<folder>/.scot-lock`` for the stage's lifetime. The
   kernel drops it when the process ends however it ends, so a lock is never stale after a
   ``kill -9``; the file itself stays and records the stage, pid and command of the last
   writer, which is what a refused second writer (or reader) is told;
3. removes the temporaries a killed run of this stage left, and only those: files carrying
   scot's own temporary mark (``atomic.TMP_MARK``), directly in the folder or in the stage's
   named subfolders, never recursively.

Re-entering a folder this process already holds is free (a pipeline calls a stage that
claims the folder the CLI claimed; a flow's tasks run in threads under the flow's claim).
Readers call :func:`refuse_if_writing` (``manifest.finished_manifest`` does): a folder
whose writer is running is refused, never read half-written.
"""

from __future__ import annotations

import fcntl
import inspect
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

from scot_data.atomic import TMP_MARK
from scot_data.errors import ScotInputError

LOCK_FILE = ".scot-lock"
MANIFEST_FILE = "manifest.json"
# A reader probes the lock with a shared lock for an instant; a writer that meets one retries
# for this long before it calls the folder busy.
_PROBE_GRACE_S = 0.5

StageFn = TypeVar("StageFn", bound=Callable[..., Any])

_held: dict[Path, int] = {}  # folder -> claims this process holds on it
_held_guard = threading.Lock()


def _key(folder: str | os.PathLike[str]) -> Path:
    return Path(folder).resolve()


def holds(folder: str | os.PathLike[str]) -> bool:
    """True when this process is the writer of ``folder``."""
    with _held_guard:
        return _key(folder) in _held


def _lock_record(folder: Path) -> dict[str, object]:
    try:
        record = json.loads((folder / LOCK_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _busy(folder: Path, what: str) -> ScotInputError:
    record = _lock_record(folder)
    holder = f"pid {record.get('pid', '?')} ({record.get('command', 'unknown command')})"
    return ScotInputError(f"{folder}: {what} by {holder}; wait for it to finish or stop it")


def _owner(folder: Path) -> str | None:
    """The stage this folder belongs to, by its lock record or else its manifest."""
    stage = _lock_record(folder).get("stage")
    if isinstance(stage, str):
        return stage
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest.get("stage") if isinstance(manifest, dict) else None


def check_owner(folder: Path, stage: str, force: bool, signature: str | None = None) -> None:
    """Refuse a non-empty ``folder`` that is not ``stage``'s own (see the module docstring)."""
    if folder.exists() and not folder.is_dir():
        raise ScotInputError(f"--out {folder}: a file, not a folder")  # --force cannot write into a file
    if force or not folder.exists():
        return
    entries = sorted(p.name for p in folder.iterdir())
    if not entries or _owner(folder) == stage or (signature is not None and signature in entries):
        return
    shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
    raise ScotInputError(
        f"--out {folder}: not empty and not a {stage} folder (it holds {shown}); "
        "choose a new folder, or pass --force to write into this one"
    )


def _acquire(folder: Path, stage: str) -> int:
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    deadline = time.monotonic() + _PROBE_GRACE_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise _busy(folder, "being written") from None
            time.sleep(0.05)
    record = {"stage": stage, "pid": os.getpid(), "command": " ".join(sys.argv)}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(record) + "\n").encode("utf-8"), 0)
    return fd


def remove_own_temporaries(folder: Path, subfolders: Sequence[str] = ()) -> int:
    """Delete scot temporaries directly in ``folder`` and its named ``subfolders``; return the count."""
    removed = 0
    for directory in (folder, *(folder / name for name in subfolders)):
        if directory.is_dir():
            for path in directory.glob(f"*{TMP_MARK}*"):
                if path.is_file():
                    path.unlink()
                    removed += 1
    return removed


@contextmanager
def stage_folder(
    out_dir: str | os.PathLike[str],
    stage: str,
    subfolders: Sequence[str] = (),
    force: bool = False,
    signature: str | None = None,
) -> Iterator[Path]:
    """Hold ``out_dir`` as ``stage``'s folder for the body (see the module docstring)."""
    folder = Path(out_dir)
    key = _key(folder)
    with _held_guard:
        if key in _held:
            _held[key] += 1
            fd, created = None, False
        else:
            check_owner(folder, stage, force, signature)
            created = not folder.exists()
            folder.mkdir(parents=True, exist_ok=True)
            fd = _acquire(folder, stage)
            _held[key] = 1
    try:
        if fd is not None:
            remove_own_temporaries(folder, subfolders)
        yield folder
    finally:
        with _held_guard:
            _held[key] -= 1
            if not _held[key]:
                del _held[key]
        if fd is not None:
            if created and [p.name for p in folder.iterdir()] == [LOCK_FILE]:
                (folder / LOCK_FILE).unlink()  # a stage refused before it wrote: leave no folder
                folder.rmdir()
            os.close(fd)  # releases the lock


def writes_folder(
    stage: str, subfolders: Sequence[str] = (), signature: str | None = None, out_param: str = "out_dir"
) -> Callable[[StageFn], StageFn]:
    """Run a stage function inside :func:`stage_folder` of its ``out_param`` argument.

    The function declares ``force: bool = False`` itself (so its signature tells callers);
    the decorator is what reads it.
    """

    def decorate(function: StageFn) -> StageFn:
        signature_of = inspect.signature(function)

        @wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            bound = signature_of.bind(*args, **kwargs)
            bound.apply_defaults()
            force = bool(bound.arguments.get("force", False))
            with stage_folder(bound.arguments[out_param], stage, subfolders, force, signature):
                return function(*args, **kwargs)

        return run  # type: ignore[return-value]

    return decorate


def refuse_if_writing(folder: str | os.PathLike[str]) -> None:
    """Refuse to read ``folder`` while another process writes it (a local folder only)."""
    path = Path(folder)
    if holds(path):
        return
    try:
        fd = os.open(path / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return  # no lock file: nobody ever wrote here with locks, or not a local folder
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _busy(path, "still being written") from None
    finally:
        os.close(fd)
