"""The export stage: an embed folder's vectors as ``.npy`` files + aligned Parquet, the
layout clip-retrieval writes and embedding-reader, autofaiss, numpy and pandas read.

The cache keeps vectors as ``fixed_size_binary`` float16 columns (fast for scot, opaque to
other tools); ``export_stage`` writes them where those tools look for them:

* ``clip-retrieval``: ``img_emb/img_emb_{i}.npy``, ``text_emb/text_emb_{i}.npy`` and
  ``metadata/metadata_{i}.parquet`` (``image_path``, ``caption``, ``image_id``,
  ``caption_id``, ``source``), one row per caption of the captions table the cache was
  embedded from, row ``r`` of each file of block ``i`` the same pair, as clip-retrieval's
  inference writes. An image with several captions has one row per caption.
* ``npy``: every distinct image and text once, as the cache holds them:
  ``img_emb/img_emb_{i}.npy`` + ``img_ids/img_ids_{i}.parquet`` (``image_id``) and
  ``text_emb/text_emb_{i}.npy`` + ``text_ids/text_ids_{i}.parquet`` (``text_id``, ``text``).
  No captions table is needed, and every text (modifications too) is there.

Block numbers are zero-padded to one width, as clip-retrieval pads them, so the files'
name order is their row order (embedding-reader pairs vectors and metadata by name order).
Every file is written atomically and recorded in ``export.progress.json`` as it lands; a
re-run after a kill keeps what the same inputs and options already wrote, and a run with
other inputs or options first deletes what the previous one wrote (and only that), so no
stale block is left for a reader's glob. ``stats.json`` then ``manifest.json`` come last;
an identical finished export is skipped.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from scot_data import stages
from scot_data.atomic import atomic_path, atomic_write_json, atomic_write_parquet
from scot_data.embed.layout import IMAGES_DIR, TEXTS_DIR
from scot_data.errors import ScotInputError
from scot_data.export.blocks import Block, PairCounts, distinct_blocks, pair_blocks, spilled
from scot_data.export.config import ExportConfig
from scot_data.manifest import (
    MANIFEST_NAME,
    InputRef,
    fingerprint_input,
    finished_input,
    finished_manifest,
    finished_summary,
    is_complete,
    read_manifest,
    stage_fingerprint,
    write_manifest,
)
from scot_data.outdir import writes_folder

STAGE = stages.EXPORT
SUBFOLDERS = ("img_emb", "text_emb", "metadata", "img_ids", "text_ids")
PROGRESS_FILE = "export.progress.json"
STATS_FILE = "stats.json"
CAPTIONS_TABLE = "captions.parquet"  # the table inside a captions stage folder


@dataclass
class ExportSummary:
    """What one export wrote; printed by the CLI, stored as ``stats.json`` and in the manifest."""

    out_dir: str
    format: str = ""
    dtype: str = ""
    dim: int = 0
    rows: dict[str, int] = field(default_factory=dict)  # metadata folder -> rows
    files_written: int = 0
    files_kept: int = 0  # written by a killed run with the same inputs and options
    captions_without_image: int = 0
    captions_without_text: int = 0
    seconds: float = 0.0
    skipped: bool = False


@dataclass(frozen=True)
class Stream:
    """Aligned files: one ``.npy`` folder per matrix of its blocks, one Parquet folder."""

    npy_dirs: tuple[str, ...]
    meta_dir: str
    most_rows: int  # an upper bound on its rows, for the block numbers' width
    blocks: Callable[[], Iterator[Block]]


def export_stage(
    cfg: ExportConfig,
    embed_dir: str | Path,
    out_dir: str | Path,
    captions_dir: str | Path | None = None,
    force: bool = False,
) -> ExportSummary:
    """Export a finished embed folder into ``out_dir`` (see the module docstring); the
    clip-retrieval layout reads ``captions_dir``, by default the captions folder the embed
    stage read (named in its manifest). The embed folder itself is refused before any claim,
    ``force`` or not: its lock record must keep naming the embed stage."""
    if Path(out_dir).resolve() == Path(embed_dir).resolve():
        raise ScotInputError(f"{out_dir}: the export cannot go into the embed folder; choose another folder")
    return _export(cfg, Path(embed_dir), Path(out_dir), captions_dir, force=force)


@writes_folder(STAGE, SUBFOLDERS, out_param="out")
def _export(
    cfg: ExportConfig, embed: Path, out: Path, captions_dir: str | Path | None, force: bool = False
) -> ExportSummary:
    """The export in its claimed folder; an identical finished one is skipped."""
    started = time.perf_counter()
    inputs, captions = _inputs(cfg, embed, captions_dir)
    config = cfg.model_dump(mode="json")
    fingerprint = stage_fingerprint(STAGE, config, inputs)
    if is_complete(out, STAGE, fingerprint):
        return finished_summary(out, ExportSummary)
    progress = _Progress(out, fingerprint)  # reads the previous manifest's files
    (out / MANIFEST_NAME).unlink(missing_ok=True)
    manifest = finished_manifest(embed, stages.EMBED)
    dim = int(manifest["embedding"]["dim"])
    summary = ExportSummary(str(out), cfg.format, cfg.dtype, dim)
    files: dict[str, int | None] = {}
    counts = PairCounts()
    with ExitStack() as stack:
        streams = _streams(cfg, embed, manifest, captions, out, stack, counts)
        for stream in streams:
            _write_stream(out, stream, cfg, progress, files, summary)
    summary.captions_without_image, summary.captions_without_text = counts.without_image, counts.without_text
    summary.seconds = round(time.perf_counter() - started, 2)
    atomic_write_json(out / STATS_FILE, asdict(summary))
    files[STATS_FILE] = None
    extra = {"export": {"format": cfg.format, "dtype": cfg.dtype, "dim": dim,
                        "streams": [{"npy": list(s.npy_dirs), "metadata": s.meta_dir} for s in streams]},
             "stats": asdict(summary)}  # fmt: skip
    write_manifest(out, STAGE, config, inputs, files, extra=extra)
    (out / PROGRESS_FILE).unlink(missing_ok=True)
    return summary


def _inputs(
    cfg: ExportConfig, embed: Path, captions_dir: str | Path | None
) -> tuple[list[InputRef], Path | None]:
    """The embed folder and, for the clip-retrieval layout, the captions folder (both finished)."""
    inputs = [finished_input(embed, stages.EMBED)]
    if cfg.format != "clip-retrieval":
        return inputs, None
    captions = Path(captions_dir) if captions_dir is not None else recorded_captions(embed)
    return [*inputs, finished_input(captions, stages.CAPTIONS, "--captions")], captions


def _streams(
    cfg: ExportConfig,
    embed: Path,
    manifest: dict[str, Any],
    captions: Path | None,
    out: Path,
    stack: ExitStack,
    counts: PairCounts,
) -> list[Stream]:
    """The aligned file sets of the format; the clip-retrieval pairs read spilled vectors
    that ``stack`` removes when the export ends."""
    if captions is None:
        return [_distinct(embed, manifest, IMAGES_DIR, "img", cfg.block_rows),
                _distinct(embed, manifest, TEXTS_DIR, "text", cfg.block_rows)]  # fmt: skip
    dim = int(manifest["embedding"]["dim"])
    images = stack.enter_context(spilled(embed, IMAGES_DIR, out, dim))
    texts = stack.enter_context(spilled(embed, TEXTS_DIR, out, dim))
    table = captions / CAPTIONS_TABLE
    pairs = partial(pair_blocks, table, images, texts, cfg.block_rows, counts)
    return [Stream(("img_emb", "text_emb"), "metadata", pq.ParquetFile(table).metadata.num_rows, pairs)]


def _distinct(embed: Path, manifest: dict[str, Any], kind: str, prefix: str, block_rows: int) -> Stream:
    """Every row of one kind: ``{prefix}_emb/`` and ``{prefix}_ids/``."""
    rows = sum(manifest["outputs"][f"{kind}/{name}"]["rows"] for name in manifest["parts"][kind])
    blocks = partial(distinct_blocks, embed, kind, block_rows)
    return Stream((f"{prefix}_emb",), f"{prefix}_ids", rows, blocks)


def recorded_captions(embed: Path) -> Path:
    """The captions folder the embed stage read, as its manifest names it; refused when it
    is gone or changed since (its manifest's sha256 differs from the one recorded)."""
    for entry in (read_manifest(embed) or {}).get("inputs", []):
        path = Path(entry["path"])
        if path.name != MANIFEST_NAME or (read_manifest(path.parent) or {}).get("stage") != stages.CAPTIONS:
            continue
        if fingerprint_input(path).sha256 != entry["sha256"]:
            raise ScotInputError(f"{path.parent}: changed since {embed} was embedded; pass --captions")
        return path.parent
    raise ScotInputError(f"{embed}: its manifest names no captions folder still there; pass --captions")


class _Progress:
    """``export.progress.json``: the files this export writes, each listed before it is
    written. A run with the same fingerprint keeps those already on disk (atomic writes: a
    file there is whole); any other run first deletes them and the files of a finished
    export here, and only those, so no stale block stays for a reader's glob."""

    def __init__(self, out: Path, fingerprint: str) -> None:
        self.path, self.fingerprint = out / PROGRESS_FILE, fingerprint
        try:
            found = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            found = {}
        found = found if isinstance(found, dict) else {}
        self.listed = set(found.get("written", []))
        if found.get("fingerprint") == fingerprint:
            self.kept = {name for name in self.listed if (out / name).is_file()}
            return
        previous = read_manifest(out) or {}
        if previous.get("stage") == STAGE:
            self.listed |= set(previous.get("outputs", {}))
        for name in self.listed:
            if _is_block(name):  # never a path a damaged or foreign file names outside the blocks
                (out / name).unlink(missing_ok=True)
        self.listed, self.kept = set(), set()
        self._save()

    def will_write(self, names: list[str]) -> None:
        self.listed.update(names)
        self._save()

    def _save(self) -> None:
        atomic_write_json(self.path, {"fingerprint": self.fingerprint, "written": sorted(self.listed)})


def _is_block(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and parts[0] in SUBFOLDERS and parts[1].startswith(f"{parts[0]}_")


def _write_stream(
    out: Path,
    stream: Stream,
    cfg: ExportConfig,
    progress: _Progress,
    files: dict[str, int | None],
    summary: ExportSummary,
) -> None:
    """Each block's files, listed in the progress file before they are written."""
    width = len(str(max(math.ceil(stream.most_rows / cfg.block_rows) - 1, 0)))
    rows = 0
    for number, block in enumerate(stream.blocks()):
        names = [f"{d}/{d}_{number:0{width}d}.npy" for d in stream.npy_dirs]
        meta = f"{stream.meta_dir}/{stream.meta_dir}_{number:0{width}d}.parquet"
        progress.will_write([*names, meta])
        for name, matrix in zip(names, block.matrices):
            if name not in progress.kept:
                with atomic_path(out / name) as tmp, open(tmp, "wb") as handle:
                    np.save(handle, matrix.astype(cfg.dtype, copy=False), allow_pickle=False)
        if meta not in progress.kept:
            atomic_write_parquet(out / meta, block.table, compression="zstd")
        kept = len(progress.kept & {*names, meta})
        summary.files_kept += kept
        summary.files_written += len(names) + 1 - kept
        files.update({name: block.table.num_rows for name in [*names, meta]})
        rows += block.table.num_rows
    summary.rows[stream.meta_dir] = rows
