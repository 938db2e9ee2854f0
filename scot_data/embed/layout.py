"""Where the embedding-cache stage keeps things: folder and file names, part naming, and the
parts on disk (which are valid for an encoder, dropping another encoder's, adopting another
output's, dropping image parts to plan again, reading a finished output's parts in order).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq

from scot_data import ids, stages
from scot_data.atomic import atomic_write_bytes
from scot_data.embed.records import encoder_key_of
from scot_data.manifest import MANIFEST_NAME, finished_manifest

STAGE = stages.EMBED
IMAGES_DIR = "images"
TEXTS_DIR = "texts"
REJECT_PARTS_DIR = "rejects"
WDS_DIR = "wds"
SUBFOLDERS = (IMAGES_DIR, TEXTS_DIR, REJECT_PARTS_DIR, WDS_DIR)
REJECTS_FILE = "rejects.parquet"
STATS_FILE = "stats.json"
KINDS = (IMAGES_DIR, TEXTS_DIR)


def part_name(kind: str, encoder_key: str, part_ids: list[str]) -> str:
    return f"part-{ids.stable_id(kind, encoder_key, *part_ids)}.parquet"


def reject_part(out: Path, image_part: Path) -> Path:
    return out / REJECT_PARTS_DIR / image_part.name


def valid_parts(out: Path, kind: str, encoder_key: str) -> list[Path]:
    """Finished parts of ``kind`` made by this encoder (an image part also needs its rejects)."""
    parts = []
    for path in sorted((out / kind).glob("part-*.parquet")):
        if encoder_key_of(pq.read_schema(path)) != encoder_key:
            continue
        if kind == IMAGES_DIR and not reject_part(out, path).exists():
            continue
        parts.append(path)
    return parts


def remove_other_encoders(out: Path, encoder_key: str) -> int:
    """Delete parts written by another encoder (their vectors are not comparable)."""
    stale = []
    for kind in KINDS:
        for path in (out / kind).glob("part-*.parquet"):
            if encoder_key_of(pq.read_schema(path)) != encoder_key:
                stale.append(path)
    if stale:
        (out / MANIFEST_NAME).unlink(missing_ok=True)  # it lists files about to go
        for path in stale:
            path.unlink()
            reject_part(out, path).unlink(missing_ok=True)
    return len(stale)


def drop_image_parts(out: Path, image_ids: set[str]) -> int:
    """Delete the image parts (with their rejects) that hold any of ``image_ids``, embedded or
    rejected, so those images are planned again: their files changed since."""
    dropped = 0
    for path in sorted((out / IMAGES_DIR).glob("part-*.parquet")):
        rejects = reject_part(out, path)
        held = ids_in([path], "image_id") | ids_in([rejects] if rejects.exists() else [], "image_id")
        if image_ids & held:
            (out / MANIFEST_NAME).unlink(missing_ok=True)  # it lists files about to go
            path.unlink()
            rejects.unlink(missing_ok=True)
            dropped += 1
    return dropped


def adopt_parts(source: Path, out: Path, encoder_key: str) -> None:
    """Link (or copy) the parts another output made with this encoder into ``out``, so rows
    embedded there are not embedded again; the same encoder key means the same vectors.
    An image part goes in after its rejects (a part counts only with them)."""
    for kind in KINDS:
        for part in valid_parts(source, kind, encoder_key):
            pairs = [(part, out / kind / part.name)]
            if kind == IMAGES_DIR:
                pairs.insert(0, (reject_part(source, part), reject_part(out, part)))
            for src, dst in pairs:
                if not dst.exists():
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    try:
                        os.link(src, dst)
                    except OSError:
                        atomic_write_bytes(dst, src.read_bytes())


def ids_in(paths: list[Path], column: str) -> set[str]:
    """The distinct values of one id column over some parts."""
    found: set[str] = set()
    for path in paths:
        found.update(pq.read_table(path, columns=[column]).column(0).to_pylist())
    return found


def iter_parts(out_dir: str | Path, kind: str) -> Iterator[Path]:
    """The Parquet parts of a finished output, in manifest order."""
    out = Path(out_dir)
    for name in finished_manifest(out, STAGE)["parts"][kind]:
        yield out / kind / name
