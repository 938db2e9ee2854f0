"""Stage manifests: the last file a stage writes, and the only proof that it finished.

A directory without ``manifest.json`` is incomplete: it is resumed, never read. The
manifest records what went in (inputs with their fingerprints, the stage config), what
came out (per-file sha256, bytes, rows) and the code that did it, so a later run can skip
a stage whose inputs and config are unchanged and ``scot verify`` can check the files.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

SummaryT = TypeVar("SummaryT")

from scot_data import __version__
from scot_data.atomic import atomic_write_json
from scot_data.errors import ScotInputError
from scot_data.hashing import HASH_BELOW_BYTES, sha256_file, sha256_json_text, sha256_tree
from scot_data.outdir import refuse_if_writing

MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class InputRef:
    """One input of a stage and its fingerprint (``kind`` says how it was taken)."""

    path: str
    kind: str
    sha256: str


def fingerprint_input(path: str | os.PathLike[str], content: bool = True) -> InputRef:
    """Fingerprint a file or a directory; a directory without ``content`` is a listing."""
    p = Path(path).resolve()
    if p.is_dir():
        return InputRef(str(p), "tree" if content else "listing", sha256_tree(p, content=content))
    return InputRef(str(p), "file", sha256_file(p))


def stage_fingerprint(stage: str, config: dict[str, Any], inputs: list[InputRef]) -> str:
    """A digest of everything that determines a stage's output."""
    canonical = json.dumps(
        {"stage": stage, "config": config, "inputs": [asdict(i) for i in inputs]},
        sort_keys=True,
        default=str,
    )
    return sha256_json_text(canonical)


def code_version() -> dict[str, str | None]:
    """The package version and, when run from a git checkout, its commit: only a checkout
    of scot itself (the package installed in a venv inside another repository is not)."""
    package = Path(__file__).resolve().parent
    try:
        top, commit = subprocess.run(
            ["git", "rev-parse", "--show-toplevel", "HEAD"],
            cwd=package,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.SubprocessError, ValueError):
        return {"scot_data": __version__, "git_commit": None}
    return {"scot_data": __version__, "git_commit": commit if Path(top).resolve() == package.parent else None}


def describe_outputs(out_dir: Path, files: dict[str, int | None]) -> dict[str, dict[str, Any]]:
    """Per-file sha256, bytes and row count for the manifest (``files`` maps name -> rows)."""
    described = {}
    for name, rows in sorted(files.items()):
        path = out_dir / name
        described[name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size, "rows": rows}
    return described


def write_manifest(
    out_dir: str | os.PathLike[str],
    stage: str,
    config: dict[str, Any],
    inputs: list[InputRef],
    files: dict[str, int | None],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the manifest last and atomically; ``files`` maps output file -> row count."""
    out = Path(out_dir)
    manifest = {
        "stage": stage,
        "fingerprint": stage_fingerprint(stage, config, inputs),
        "config": config,
        "inputs": [asdict(i) for i in inputs],
        "outputs": describe_outputs(out, files),
        "code_version": code_version(),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **(extra or {}),
    }
    return atomic_write_json(out / MANIFEST_NAME, manifest)


def read_manifest(out_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The manifest of ``out_dir``, or None when the stage there never finished; one that is
    not a JSON object (damaged, or not written by scot) is an input error naming the file."""
    path = Path(out_dir) / MANIFEST_NAME
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ScotInputError(f"{path}: unreadable ({exc})") from None
    if not isinstance(manifest, dict):
        raise ScotInputError(f"{path}: not a manifest (a JSON object)")
    return manifest


def finished_manifest(directory: str | os.PathLike[str], stage: str, option: str = "") -> dict[str, Any]:
    """The manifest of a finished ``stage`` that a later stage reads; anything else is refused
    in one line: a folder being written right now, one without a manifest (a crash, a full
    disk, a mistyped path) or one of another stage. ``option`` is the CLI option the user
    named the folder with, if any."""
    shown = f"{option} {directory}" if option else str(directory)
    path = Path(directory)
    if not path.is_dir():
        problem = "a file, not a folder" if path.exists() else "no such folder"
        raise ScotInputError(f"{shown}: not a finished {stage} directory ({problem})")
    refuse_if_writing(directory)
    manifest = read_manifest(directory)
    if manifest is None:
        problem = f"no {MANIFEST_NAME}: the stage has not finished there"
    elif manifest.get("stage") != stage:
        problem = f"it holds stage {manifest.get('stage')!r}"
    else:
        check_outputs(path, manifest)
        return manifest
    raise ScotInputError(f"{shown}: not a finished {stage} directory ({problem})")


_hashed: dict[Path, tuple[str, int, int]] = {}  # file -> (sha256, size, mtime) this process found sound


def check_outputs(directory: Path, manifest: dict[str, Any]) -> None:
    """Refuse a finished folder whose files differ from its manifest (truncated, replaced, a
    flipped byte): every file by size, those below ``HASH_BELOW_BYTES`` by sha256 unless this
    process already hashed them unchanged (``scot verify`` hashes everything)."""
    for name, meta in sorted(manifest.get("outputs", {}).items()):
        path = directory / name
        if not path.is_file():
            raise ScotInputError(f"{path}: missing (listed in the manifest)")
        stat = path.stat()
        if stat.st_size != meta["bytes"]:
            raise ScotInputError(
                f"{path}: {stat.st_size} bytes, manifest says {meta['bytes']} (truncated or altered)"
            )
        state = (meta["sha256"], stat.st_size, stat.st_mtime_ns)
        if stat.st_size < HASH_BELOW_BYTES and _hashed.get(path) != state:
            if sha256_file(path) != meta["sha256"]:
                raise ScotInputError(f"{path}: sha256 differs from the manifest (altered; run scot verify)")
            _hashed[path] = state


def finished_input(directory: str | os.PathLike[str], stage: str, option: str = "") -> InputRef:
    """A finished ``stage`` folder as a later stage's input: its manifest, fingerprinted
    (the manifest hashes every file, so this is cheap and exact)."""
    finished_manifest(directory, stage, option)
    return fingerprint_input(Path(directory) / MANIFEST_NAME)


def is_complete(out_dir: str | os.PathLike[str], stage: str, fingerprint: str) -> bool:
    """True when ``out_dir`` holds a finished ``stage`` for exactly these inputs and config.

    Output files are checked by size, not hashed, so the check stays cheap; ``scot verify``
    is the thorough check.
    """
    manifest = read_manifest(out_dir)
    if manifest is None or manifest.get("stage") != stage or manifest.get("fingerprint") != fingerprint:
        return False
    out = Path(out_dir)
    return all(
        (out / name).is_file() and (out / name).stat().st_size == meta["bytes"]
        for name, meta in manifest["outputs"].items()
    )


def finished_summary(out_dir: str | os.PathLike[str], summary_type: type[SummaryT], **zeroed: Any) -> SummaryT:
    """The summary a finished stage stored in its manifest, marked skipped: a re-run did
    nothing (``seconds`` and any ``zeroed`` counters are 0 for this run)."""
    stats = (read_manifest(out_dir) or {}).get("stats", {})
    known = {f.name for f in fields(summary_type)}  # type: ignore[arg-type]
    kept = {k: v for k, v in stats.items() if k in known}
    return summary_type(**{**kept, "out_dir": str(out_dir), "skipped": True, "seconds": 0.0, **zeroed})
