"""Fit-lit's training examples: (image on local disk, caption) pairs read from caption tables
or given as tuples, and a digest of them for the manifest."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.parquet as pq

from scot_data import ids
from scot_data.errors import ScotInputError
from scot_data.manifest import (
    finished_manifest,
)

CAPTIONS_TABLE = "captions.parquet"  # the table inside a captions stage directory


@dataclass(frozen=True)
class CaptionPair:
    """One training example: an image on local disk and a caption that describes it."""

    image_id: str
    image_path: str
    caption: str


def _local_path(uri: str, base: Path) -> Path | None:
    """The local file an ``image_uri`` names, or None for URLs, tar members and the like."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(parsed.path)
    if parsed.scheme and len(parsed.scheme) > 1:  # one letter would be a Windows drive
        return None
    path = Path(uri)
    return path if path.is_absolute() else base / path


def caption_table_file(source: Path) -> Path:
    """The Parquet file behind ``source``: a finished captions directory or a table file."""
    if source.is_file():
        return source
    if not source.is_dir():
        raise ScotInputError(f"captions not found: {source}")
    finished_manifest(source, "captions")
    return source / CAPTIONS_TABLE


def read_caption_table(source: str | Path) -> list[CaptionPair]:
    """Pairs from a caption table (columns ``image_id``, ``image_uri``, ``caption``, ...).

    Image URIs must be local files (absolute, relative to the table, or ``file://``); any
    other row is an error that names the file and the row's ``caption_id``.
    """
    table_file = caption_table_file(Path(source))
    try:
        table = pq.read_table(table_file, columns=["caption_id", "image_id", "image_uri", "caption"])
    except (pa.ArrowException, OSError) as exc:
        reason = " ".join(str(exc).split())[:200]
        raise ScotInputError(f"{table_file}: not a caption table ({reason})") from None
    pairs = []
    for row in table.to_pylist():
        path = _local_path(row["image_uri"], table_file.parent)
        if path is None:
            raise ScotInputError(
                f"{table_file}: caption_id {row['caption_id']}: "
                f"image_uri {row['image_uri']!r} is not a local file"
            )
        pairs.append(CaptionPair(row["image_id"], str(path), row["caption"]))
    return pairs


def pairs_from_tuples(items: Iterable[tuple[str | Path, str]]) -> list[CaptionPair]:
    """Pairs from (image path, caption) tuples; the image id is derived from the resolved path."""
    return [CaptionPair(ids.stable_id("image-path", str(Path(p).resolve())), str(p), c) for p, c in items]


def pairs_digest(pairs: Sequence[CaptionPair]) -> str:
    """A fingerprint of the pairs in order (paths and captions, not image bytes)."""
    digest = hashlib.sha256()
    for pair in pairs:
        digest.update(f"{pair.image_id}\x1f{pair.image_path}\x1f{pair.caption}\n".encode())
    return digest.hexdigest()
