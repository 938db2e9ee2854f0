"""Content fingerprints for manifests: files, trees of files and cheap listings."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import BinaryIO

_CHUNK = 1 << 20
# Readers hash a stage's file against its manifest on every read below this size, and check
# only its size above it (``scot verify`` hashes everything).
HASH_BELOW_BYTES = 64 << 20


def sha256_stream(handle: BinaryIO) -> str:
    """SHA-256 of what a binary handle (a local file or an fsspec one) yields, in 1 MiB chunks."""
    digest = hashlib.sha256()
    while block := handle.read(_CHUNK):
        digest.update(block)
    return digest.hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes."""
    with open(path, "rb") as handle:
        return sha256_stream(handle)


def sha256_tree(root: str | os.PathLike[str], content: bool = True) -> str:
    """Fingerprint every file under ``root`` (symlinks by their target path).

    With ``content`` the file bytes are hashed; without it only relative path, size and
    mtime, which is what a large image folder can afford on every run.
    """
    base = Path(root)
    digest = hashlib.sha256()
    for path in sorted(p for p in base.rglob("*") if p.is_file() or p.is_symlink()):
        rel = path.relative_to(base).as_posix()
        if path.is_symlink():
            line = f"{rel}\tlink\t{os.readlink(path)}"
        elif content:
            line = f"{rel}\t{sha256_file(path)}"
        else:
            stat = path.stat()
            line = f"{rel}\t{stat.st_size}\t{stat.st_mtime_ns}"
        digest.update(line.encode("utf-8") + b"\n")
    return digest.hexdigest()


def sha256_json_text(text: str) -> str:
    """SHA-256 of a canonical JSON text (used for configs)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
