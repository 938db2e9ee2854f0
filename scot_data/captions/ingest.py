"""The caption stage as reader -> worker -> writer, resumable part by part.

1. The reader lists candidates (metadata only); duplicates of an (image, caption) pair
   are dropped and, with ``limit``, a seeded sample is taken: both deterministic.
2. Candidates are cut into parts of ``part_size``; each part is named by the stage
   fingerprint and its caption ids, so a part on disk is exactly the work it stands for.
3. Workers (processes) check or render each part's images; the writer stores every part
   atomically under ``_parts/``. A killed run loses at most the parts in flight.
4. The parts are streamed into ``captions.parquet`` and ``rejects.parquet``; ``stats.json``
   and then ``manifest.json`` are written last, and ``_parts/`` is removed.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from rich.progress import Progress

from scot_data import ids, stages
from scot_data.atomic import atomic_path, atomic_write_json, atomic_write_parquet
from scot_data.captions.config import DEFAULT_RENDER_TIMEOUT_S, CaptionsConfig, OpenclipartCaptions
from scot_data.captions.images import ImageError, image_uri, to_row
from scot_data.captions.readers import READERS
from scot_data.captions.records import (
    CAPTIONS_SCHEMA,
    REJECTS_SCHEMA,
    Candidate,
    CaptionRow,
    Reject,
    rejects_to_table,
    rows_to_table,
)
from scot_data.captions.svg_render import close_helper
from scot_data.manifest import InputRef, finished_summary, is_complete, stage_fingerprint, write_manifest
from scot_data.outdir import writes_folder

STAGE = stages.CAPTIONS
CAPTIONS_FILE = "captions.parquet"
HOLDOUT_FILE = "holdout.parquet"
REJECTS_FILE = "rejects.parquet"
STATS_FILE = "stats.json"
PARTS_DIR = "_parts"
IMAGES_DIR = "images"  # rendered SVGs, when the config names no other folder
PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd"}
# Options that change how fast the stage runs, never what it writes (a render timeout only
# decides which pathological files are given up on: it changes no pixels).
RUNTIME_ONLY_OPTIONS = {"workers", "render_timeout_s"}


@dataclass
class IngestSummary:
    """What one run of the stage did; printed by the CLI and stored as ``stats.json``."""

    out_dir: str
    rows: int = 0
    images: int = 0
    holdout_rows: int = 0
    rejects: int = 0
    reject_reasons: dict[str, int] = field(default_factory=dict)
    candidates: int = 0
    duplicates: int = 0
    parts: int = 0
    parts_reused: int = 0
    seconds: float = 0.0
    skipped: bool = False


@dataclass(frozen=True)
class Part:
    """A slice of candidates and the files its result lives in."""

    index: int
    candidates: tuple[Candidate, ...]
    path: Path

    @property
    def rejects_path(self) -> Path:
        return self.path.with_name(self.path.stem + ".rejects.parquet")

    def done(self) -> bool:
        return self.path.exists() and self.rejects_path.exists()


def stage_config(cfg: CaptionsConfig) -> dict[str, Any]:
    """The options that determine the output, as JSON-ready values."""
    return cfg.model_dump(mode="json", exclude=RUNTIME_ONLY_OPTIONS)


def stage_inputs(cfg: CaptionsConfig) -> list[InputRef]:
    """Fingerprints of the collection the config points at (raises if it is missing)."""
    return READERS[type(cfg)][1](cfg)


def images_dir(cfg: CaptionsConfig, out_dir: Path) -> Path:
    """Where rendered images go (only formats that render use it)."""
    configured = getattr(cfg, "images", None) if isinstance(cfg, OpenclipartCaptions) else None
    return Path(configured) if configured else out_dir / IMAGES_DIR


def select(
    scanned: Iterable[Candidate | Reject], limit: int | None, seed: int
) -> tuple[list[Candidate], list[Reject], int]:
    """Split reader output; drop duplicate pairs (as rejects); sample ``limit`` by seed."""
    candidates: list[Candidate] = []
    rejects: list[Reject] = []
    first_file: dict[str, str] = {}
    duplicates = 0
    for item in scanned:
        if isinstance(item, Reject):
            rejects.append(item)
        elif item.caption_id in first_file:
            duplicates += 1
            rejects.append(Reject(item.file, item.record, f"duplicate (image, caption) of {first_file[item.caption_id]}"))
        else:
            first_file[item.caption_id] = item.file
            candidates.append(item)
    if limit is not None and limit < len(candidates):
        keep = set(sorted((c.caption_id for c in candidates), key=lambda cid: ids.sample_rank(seed, cid))[:limit])
        candidates = [c for c in candidates if c.caption_id in keep]
    return candidates, rejects, duplicates


def plan_parts(candidates: list[Candidate], part_size: int, fingerprint: str, parts_dir: Path) -> list[Part]:
    """Cut candidates into parts named by their content."""
    parts = []
    for index, start in enumerate(range(0, len(candidates), part_size)):
        chunk = tuple(candidates[start : start + part_size])
        key = ids.stable_id(fingerprint, *(c.caption_id for c in chunk))
        parts.append(Part(index, chunk, parts_dir / f"part-{index:05d}-{key}.parquet"))
    return parts


def process_part(
    candidates: tuple[Candidate, ...],
    images: Path,
    render_size: int,
    render_timeout_s: float = DEFAULT_RENDER_TIMEOUT_S,
) -> tuple[list[CaptionRow], list[Reject]]:
    """Worker: check every candidate's image; runs in a worker process."""
    rows, rejects = [], []
    for candidate in candidates:
        try:
            rows.append(to_row(candidate, image_uri(candidate, images, render_size, render_timeout_s)))
        except ImageError as exc:
            rejects.append(Reject(candidate.file, candidate.record, str(exc)))
    return rows, rejects


def write_part(part: Part, rows: list[CaptionRow], rejects: list[Reject]) -> None:
    """Writer: rejects first, rows last, so a part counts as done only when both exist."""
    atomic_write_parquet(part.rejects_path, rejects_to_table(rejects), **PARQUET_OPTIONS)
    atomic_write_parquet(part.path, rows_to_table(rows), **PARQUET_OPTIONS)


def _results(
    todo: list[Part],
    images: Path,
    render_size: int,
    workers: int,
    render_timeout_s: float = DEFAULT_RENDER_TIMEOUT_S,
) -> Iterator[tuple[Part, list[CaptionRow], list[Reject]]]:
    """Run the worker over parts, in-process for one worker, else in a process pool.

    Each process renders SVGs through its own helper process (started on its first SVG);
    a pool worker's helper ends with it, this process's is stopped here.
    """
    if workers == 1 or len(todo) <= 1:
        try:
            for part in todo:
                yield (part, *process_part(part.candidates, images, render_size, render_timeout_s))
        finally:
            close_helper()
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        render = (images, render_size, render_timeout_s)
        futures = [(part, pool.submit(process_part, part.candidates, *render)) for part in todo]
        for part, future in futures:
            yield (part, *future.result())


def _clear_stale_parts(parts_dir: Path, keep: list[Part]) -> None:
    """Remove parts of an earlier run with other inputs or options."""
    wanted = {p.path.name for p in keep} | {p.rejects_path.name for p in keep}
    for path in parts_dir.glob("part-*.parquet"):
        if path.name not in wanted:
            path.unlink()


def held_out(image_ids: pa.Array, fraction: float, seed: int) -> pa.Array:
    """Which rows belong to held-out images: a seeded hash of image_id below ``fraction``.

    Every caption of an image lands on the same side, and a larger fraction keeps every
    image a smaller one held out (the same hash order as sampling).
    """
    cut = int(fraction * 16**8)
    return pa.array([int(ids.sample_rank(seed, i)[:8], 16) < cut for i in image_ids.to_pylist()], pa.bool_())


def _split_concat(paths: list[Path], out: Path, fraction: float, seed: int) -> tuple[int, int]:
    """Stream caption parts into captions.parquet and holdout.parquet; return both row counts."""
    rows = [0, 0]
    with (
        atomic_path(out / CAPTIONS_FILE) as keep_tmp,
        atomic_path(out / HOLDOUT_FILE) as hold_tmp,
        pq.ParquetWriter(keep_tmp, CAPTIONS_SCHEMA, **PARQUET_OPTIONS) as keep,
        pq.ParquetWriter(hold_tmp, CAPTIONS_SCHEMA, **PARQUET_OPTIONS) as hold,
    ):
        for path in paths:
            table = pq.read_table(path, schema=CAPTIONS_SCHEMA)
            mask = held_out(table.column("image_id").combine_chunks(), fraction, seed)
            halves = ((keep, table.filter(pc.invert(mask))), (hold, table.filter(mask)))
            for index, (writer, part) in enumerate(halves):
                if part.num_rows:
                    writer.write_table(part)
                    rows[index] += part.num_rows
    return rows[0], rows[1]


def _concat(paths: list[Path], schema: pa.Schema, target: Path, extra: pa.Table | None = None) -> int:
    """Stream Parquet files (and an optional leading table) into one file; return its rows."""
    rows = 0
    with atomic_path(target) as tmp, pq.ParquetWriter(tmp, schema, **PARQUET_OPTIONS) as writer:
        if extra is not None and extra.num_rows:
            writer.write_table(extra)
            rows += extra.num_rows
        for path in paths:
            table = pq.read_table(path, schema=schema)
            if table.num_rows:
                writer.write_table(table)
                rows += table.num_rows
    return rows


@writes_folder(STAGE, (PARTS_DIR, IMAGES_DIR))
def ingest_captions(
    cfg: CaptionsConfig, out_dir: str | Path, show_progress: bool = True, force: bool = False
) -> IngestSummary:
    """Run the caption stage into ``out_dir``; a finished stage with the same inputs is skipped."""
    started = time.perf_counter()
    out = Path(out_dir)
    inputs = stage_inputs(cfg)
    config = stage_config(cfg)
    fingerprint = stage_fingerprint(STAGE, config, inputs)
    if is_complete(out, STAGE, fingerprint):
        return finished_summary(out, IngestSummary)
    (out / "manifest.json").unlink(missing_ok=True)
    summary = IngestSummary(out_dir=str(out))

    candidates, early_rejects, summary.duplicates = select(READERS[type(cfg)][0](cfg), cfg.limit, cfg.seed)
    summary.candidates = len(candidates)
    parts_dir = out / PARTS_DIR
    parts_dir.mkdir(parents=True, exist_ok=True)
    parts = plan_parts(candidates, cfg.part_size, fingerprint, parts_dir)
    _clear_stale_parts(parts_dir, parts)
    todo = [p for p in parts if not p.done()]
    summary.parts, summary.parts_reused = len(parts), len(parts) - len(todo)

    render_size = getattr(cfg, "render_size", 0)
    render_timeout_s = getattr(cfg, "render_timeout_s", DEFAULT_RENDER_TIMEOUT_S)
    with Progress(disable=not show_progress, transient=False) as progress:
        task = progress.add_task(
            f"captions ({cfg.format})", total=len(candidates), completed=sum(len(p.candidates) for p in parts if p.done())
        )
        for part, rows, rejects in _results(
            todo, images_dir(cfg, out), render_size, cfg.workers, render_timeout_s
        ):
            write_part(part, rows, rejects)
            progress.advance(task, len(part.candidates))

    summary.rows, summary.holdout_rows = _split_concat([p.path for p in parts], out, cfg.holdout, cfg.seed)
    summary.rejects = _concat(
        [p.rejects_path for p in parts], REJECTS_SCHEMA, out / REJECTS_FILE, rejects_to_table(early_rejects)
    )
    summary.reject_reasons = reason_counts(out / REJECTS_FILE)
    summary.images = len(set(pq.read_table(out / CAPTIONS_FILE, columns=["image_id"]).column(0).to_pylist()))
    summary.seconds = round(time.perf_counter() - started, 2)
    atomic_write_json(out / STATS_FILE, asdict(summary))
    write_manifest(
        out,
        STAGE,
        config,
        inputs,
        {
            CAPTIONS_FILE: summary.rows,
            HOLDOUT_FILE: summary.holdout_rows,
            REJECTS_FILE: summary.rejects,
            STATS_FILE: None,
        },
        extra={"stats": asdict(summary)},
    )
    shutil.rmtree(parts_dir, ignore_errors=True)
    return summary


def reason_counts(rejects_file: Path) -> dict[str, int]:
    """Rejects per reason, with record-specific detail after ':' or '(' folded away."""
    reasons = pq.read_table(rejects_file, columns=["reason"]).column(0).to_pylist()
    folded = Counter(r.split(":")[0].split(" (")[0].split(" of /")[0].strip() for r in reasons)
    return dict(folded.most_common())
