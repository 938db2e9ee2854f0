"""Finishing a run of the embedding-cache stage: every part, in a stable order, packed into
WebDataset shards (unchanged shards keep their names), the rejects consolidated,
``stats.json`` and then ``manifest.json`` written, and only then the files it no longer
lists deleted."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from scot_data.atomic import atomic_write_json, atomic_write_parquet
from scot_data.embed.layout import (
    IMAGES_DIR,
    REJECTS_FILE,
    STAGE,
    STATS_FILE,
    SUBFOLDERS,
    TEXTS_DIR,
    reject_part,
    valid_parts,
)
from scot_data.embed.plan import EmbedPlan
from scot_data.embed.records import REJECTS_SCHEMA, to_matrix
from scot_data.embed.shards import ShardPlan, json_cost, plan_shards, write_shard
from scot_data.embed.summary import EmbedSummary, PhaseStats
from scot_data.manifest import write_manifest

# ----------------------------------------------------------------------------- finish


def ordered_parts(out: Path, kind: str, encoder_key: str, previous: dict[str, Any] | None) -> list[Path]:
    """Valid parts: those of the previous manifest in its order, then new ones by name.

    A stable order keeps the rows of earlier shards where they were, so an incremental run
    rewrites only the last shard of each kind and adds new ones.
    """
    valid = {p.name: p for p in valid_parts(out, kind, encoder_key)}
    earlier = [name for name in ((previous or {}).get("parts") or {}).get(kind, []) if name in valid]
    rest = sorted(set(valid) - set(earlier))
    return [valid[name] for name in earlier + rest]


class _Rows:
    """Rows [a, b) of the concatenation of parts, reading each part once in order."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self.counts = [pq.ParquetFile(p).metadata.num_rows for p in paths]
        self.starts = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)
        self._cached: tuple[int, np.ndarray] | None = None

    def _matrix(self, index: int) -> np.ndarray:
        if self._cached is None or self._cached[0] != index:
            column = pq.read_table(self.paths[index], columns=["embedding"]).column(0)
            self._cached = (index, to_matrix(column))
        return self._cached[1]

    def __call__(self, a: int, b: int) -> np.ndarray:
        pieces = []
        index = int(np.searchsorted(self.starts, a, side="right") - 1)
        while a < b:
            start, end = int(self.starts[index]), int(self.starts[index + 1])
            take = min(b, end)
            if take > a:
                pieces.append(self._matrix(index)[a - start : take - start])
            a = max(a, take)
            index += 1
        return np.concatenate(pieces) if len(pieces) != 1 else pieces[0]


def _column(paths: list[Path], name: str) -> list[str]:
    values: list[str] = []
    for path in paths:
        values += pq.read_table(path, columns=[name]).column(0).to_pylist()
    return values


def _write_shards(plan: EmbedPlan, kind: str, parts: list[Path]) -> tuple[list[ShardPlan], int]:
    cfg = plan.cfg
    id_column = "image_id" if kind == IMAGES_DIR else "text_id"
    row_ids = _column(parts, id_column)
    texts = _column(parts, "text") if kind == TEXTS_DIR else None
    costs = [json_cost(i) for i in row_ids]
    if texts is not None:
        costs = [c + json_cost(t) for c, t in zip(costs, texts)]
    shards = plan_shards(
        kind, row_ids, costs, plan.dim, plan.encoder_key,
        cfg.block_rows, cfg.shard_max_rows, cfg.shard_max_bytes,
    )
    rows = _Rows(parts)
    written = 0
    for shard in shards:
        path = plan.out / shard.name
        if not path.exists():
            write_shard(path, shard, row_ids, rows, texts, plan.dim)
            written += 1
    return shards, written


def _concat_rejects(plan: EmbedPlan, image_parts: list[Path]) -> int:
    tables = [pq.read_table(reject_part(plan.out, p), schema=REJECTS_SCHEMA) for p in image_parts]
    table = pa.concat_tables(tables) if tables else REJECTS_SCHEMA.empty_table()
    atomic_write_parquet(plan.out / REJECTS_FILE, table, compression="zstd")
    return table.num_rows


def reason_counts(rejects_file: Path) -> dict[str, int]:
    reasons = pq.read_table(rejects_file, columns=["reason"]).column(0).to_pylist()
    return dict(Counter(r.split(":")[0].strip() for r in reasons).most_common())


def finish(
    plan: EmbedPlan, images: PhaseStats | None = None, texts: PhaseStats | None = None
) -> EmbedSummary:
    """Shards, rejects, stats and the manifest (last); then drop files it does not list."""
    images, texts = images or PhaseStats(), texts or PhaseStats()
    out, key = plan.out, plan.encoder_key
    image_parts = ordered_parts(out, IMAGES_DIR, key, plan.previous)
    text_parts = ordered_parts(out, TEXTS_DIR, key, plan.previous)
    image_shards, written_images = _write_shards(plan, IMAGES_DIR, image_parts)
    text_shards, written_texts = _write_shards(plan, TEXTS_DIR, text_parts)
    rejects = _concat_rejects(plan, image_parts)

    files: dict[str, int | None] = {}
    for path in image_parts + text_parts:
        files[path.relative_to(out).as_posix()] = pq.ParquetFile(path).metadata.num_rows
    for path in image_parts:
        rejects_path = reject_part(out, path)
        files[rejects_path.relative_to(out).as_posix()] = pq.ParquetFile(rejects_path).metadata.num_rows
    for shard in image_shards + text_shards:
        files[shard.name] = shard.rows
    files[REJECTS_FILE] = rejects

    identity = plan.encoder.identity
    summary = EmbedSummary(
        out_dir=str(out),
        encoder=str(plan.cfg.encoder),
        encoder_key=key,
        dim=identity.dim,
        images=sum(files[p.relative_to(out).as_posix()] or 0 for p in image_parts),
        texts=sum(files[p.relative_to(out).as_posix()] or 0 for p in text_parts),
        images_wanted=plan.images_wanted,
        texts_wanted=plan.texts_wanted,
        images_embedded=images.embedded,
        images_from_tower_features=images.from_tower_features,
        texts_embedded=texts.embedded,
        rejects=rejects,
        reject_reasons=reason_counts(out / REJECTS_FILE),
        image_parts=len(image_parts),
        text_parts=len(text_parts),
        shards=len(image_shards) + len(text_shards),
        shards_written=written_images + written_texts,
        image_seconds=images.seconds,
        text_seconds=texts.seconds,
        images_per_second=_rate(images.embedded + images.rejected, images.seconds),
        texts_per_second=_rate(texts.embedded, texts.seconds),
        seconds=round(time.perf_counter() - plan.started, 2),
    )
    atomic_write_json(out / STATS_FILE, asdict(summary))
    files[STATS_FILE] = None
    extra = {
        "encoder": {"spec": str(plan.cfg.encoder), "key": key, "identity": identity.as_dict()},
        "embedding": {"dtype": "float16", "dim": identity.dim, "normalised": True,
                      "layout": "fixed_size_binary<float16 little-endian> (see scot_data.embed.records)"},
        "parts": {IMAGES_DIR: [p.name for p in image_parts], TEXTS_DIR: [p.name for p in text_parts]},
        "shards": [{"name": s.name, "kind": s.kind, "rows": s.rows, "blocks": len(s.blocks)}
                   for s in image_shards + text_shards],
        "stats": asdict(summary),
    }  # fmt: skip
    write_manifest(out, STAGE, plan.config, plan.inputs, files, extra=extra)
    _remove_unlisted(out, files)
    return summary


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 2) if seconds else 0.0


def _remove_unlisted(out: Path, files: dict[str, int | None]) -> None:
    for directory in SUBFOLDERS:
        for path in (out / directory).glob("*"):
            if path.is_file() and path.relative_to(out).as_posix() not in files:
                path.unlink()
