"""The embedding of a plan: images decoded in DataLoader workers and texts in length-sorted
batches, run through the frozen encoder and written part by part (float16 unit vectors;
an image part's rejects first, its vectors last)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from rich.progress import Progress

from scot_data.atomic import atomic_write_parquet
from scot_data.embed.layout import IMAGES_DIR, TEXTS_DIR, part_name, reject_part
from scot_data.embed.plan import EmbedPlan
from scot_data.embed.records import (
    PARQUET_OPTIONS,
    REJECTS_SCHEMA,
    images_schema,
    texts_schema,
    to_column,
)
from scot_data.embed.summary import PhaseStats
from scot_data.images import ImageDataset, ImageItem, collate

# ----------------------------------------------------------------------------- images


@dataclass
class _OpenPart:
    path: Path
    items: list[ImageItem]
    remaining: int
    vectors: np.ndarray
    ok: np.ndarray
    rejects: list[tuple[int, str]] = field(default_factory=list)


def _write_image_part(plan: EmbedPlan, part: _OpenPart) -> tuple[int, int]:
    """Rejects first, vectors last (the vectors file marks the part done)."""
    rejects = [(part.items[i], reason) for i, reason in part.rejects]
    reject_table = pa.table(
        {
            "file": [item.file for item, _ in rejects],
            "row": [item.row for item, _ in rejects],
            "image_id": [item.image_id for item, _ in rejects],
            "reason": [reason for _, reason in rejects],
        },
        schema=REJECTS_SCHEMA,
    )
    atomic_write_parquet(reject_part(plan.out, part.path), reject_table, compression="zstd")
    keep = np.flatnonzero(part.ok)
    table = pa.table(
        [pa.array([part.items[i].image_id for i in keep], pa.string()), to_column(part.vectors[keep])],
        schema=images_schema(plan.dim, plan.encoder_key),
    )
    atomic_write_parquet(part.path, table, **PARQUET_OPTIONS)
    return len(keep), len(rejects)


def _as_float16(vectors: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """float32 unit vectors -> float16, and a mask of rows that are finite."""
    array = vectors.numpy()
    finite = np.isfinite(array).all(axis=1)
    return array.astype(np.float16), finite


def _has_tower_features(plan: EmbedPlan, item: ImageItem) -> bool:
    """Whether an earlier pass of this encoder's image tower already read this very file."""
    found = plan.tower_features.get(item.image_id)
    return found is not None and item.tar is None and Path(found[0]).resolve() == Path(item.uri).resolve()


def _embed_known(plan: EmbedPlan, part: _OpenPart, rows: list[int], batch: int = 4096) -> None:
    """The part's rows whose tower features are known: through the head only."""
    for b in range(0, len(rows), batch):
        chunk = rows[b : b + batch]
        features = torch.stack([plan.tower_features[part.items[j].image_id][1] for j in chunk])
        vectors, finite = _as_float16(plan.encoder.encode_image_tower_features(features))
        for k, j in enumerate(chunk):
            if finite[k]:
                part.vectors[j], part.ok[j] = vectors[k], True
            else:
                part.rejects.append((j, "non-finite embedding"))


def _loader(plan: EmbedPlan, items: list[ImageItem], batches: list[list[int]]) -> torch.utils.data.DataLoader:
    workers = plan.cfg.num_workers
    return torch.utils.data.DataLoader(
        ImageDataset(items, plan.encoder.image_transform),
        batch_sampler=batches,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=plan.encoder.on_gpu,
        prefetch_factor=4 if workers else None,
        persistent_workers=False,
    )


def embed_images(plan: EmbedPlan, show_progress: bool = True, progress: Progress | None = None) -> PhaseStats:
    """Embed ``plan.images_todo`` part by part; see :mod:`scot_data.embed.stage`."""
    started = time.perf_counter()
    stats = PhaseStats()
    items = plan.images_todo
    size, batch = plan.cfg.part_rows, plan.cfg.image_batch_size
    parts: list[_OpenPart] = []
    batches: list[list[int]] = []
    batch_part: list[int] = []
    for start in range(0, len(items), size):
        chunk = items[start : start + size]
        path = plan.out / IMAGES_DIR / part_name(IMAGES_DIR, plan.encoder_key, [i.image_id for i in chunk])
        vectors = np.zeros((len(chunk), plan.dim), np.float16)
        part = _OpenPart(path, chunk, 0, vectors, np.zeros(len(chunk), bool))
        loadable, known = [], []
        for j, item in enumerate(chunk):
            if item.image_id in plan.pre_rejects:
                part.rejects.append((j, plan.pre_rejects[item.image_id]))
            elif _has_tower_features(plan, item):
                known.append(j)
            else:
                loadable.append(start + j)
        _embed_known(plan, part, known)
        stats.from_tower_features += len(known)
        part.remaining = len(loadable)
        for b in range(0, len(loadable), batch):
            batches.append(loadable[b : b + batch])
            batch_part.append(len(parts))
        parts.append(part)

    def close(part: _OpenPart) -> None:
        part.rejects.sort()
        embedded, rejected = _write_image_part(plan, part)
        stats.embedded += embedded
        stats.rejected += rejected
        stats.parts += 1
        part.vectors = np.zeros((0, plan.dim), np.float16)  # free the buffer

    with _progress(progress, show_progress) as bar:
        task = bar.add_task("images", total=len(items))
        for part in parts:
            bar.advance(task, len(part.items) - part.remaining)  # pre-rejected, or from tower features
            if part.remaining == 0:
                close(part)
        if batches:
            for number, result in enumerate(_loader(plan, items, batches)):
                part = parts[batch_part[number]]
                base = batch_part[number] * size
                if result["pixels"] is not None:
                    vectors, finite = _as_float16(plan.encoder.encode_images(result["pixels"]))
                    for k, index in enumerate(result["indices"]):
                        j = index - base
                        if finite[k]:
                            part.vectors[j], part.ok[j] = vectors[k], True
                        else:
                            part.rejects.append((j, "non-finite embedding"))
                for index, reason in result["failed"]:
                    part.rejects.append((index - base, reason))
                done = len(result["indices"]) + len(result["failed"])
                part.remaining -= done
                bar.advance(task, done)
                if part.remaining == 0:
                    close(part)
    stats.seconds = round(time.perf_counter() - started, 3)
    return stats


# ------------------------------------------------------------------------------ texts


def embed_texts(plan: EmbedPlan, show_progress: bool = True, progress: Progress | None = None) -> PhaseStats:
    """Embed ``plan.texts_todo`` part by part, batches sorted by length to cut padding."""
    started = time.perf_counter()
    stats = PhaseStats()
    todo, size, batch = plan.texts_todo, plan.cfg.part_rows, plan.cfg.text_batch_size
    with _progress(progress, show_progress) as bar:
        task = bar.add_task("texts", total=len(todo))
        for start in range(0, len(todo), size):
            chunk = todo[start : start + size]
            vectors = np.zeros((len(chunk), plan.dim), np.float16)
            order = sorted(range(len(chunk)), key=lambda i: len(chunk[i][1]), reverse=True)
            for b in range(0, len(order), batch):
                rows = order[b : b + batch]
                encoded, finite = _as_float16(plan.encoder.encode_texts([chunk[i][1] for i in rows]))
                if not finite.all():
                    bad = chunk[rows[int(np.flatnonzero(~finite)[0])]]
                    raise RuntimeError(f"non-finite text embedding for text_id {bad[0]} ({bad[1][:80]!r})")
                vectors[rows] = encoded
                bar.advance(task, len(rows))
            path = plan.out / TEXTS_DIR / part_name(TEXTS_DIR, plan.encoder_key, [t for t, _ in chunk])
            table = pa.table(
                [pa.array([t for t, _ in chunk], pa.string()), pa.array([s for _, s in chunk], pa.string()),
                 to_column(vectors)],
                schema=texts_schema(plan.dim, plan.encoder_key),
            )  # fmt: skip
            atomic_write_parquet(path, table, **PARQUET_OPTIONS)
            stats.embedded += len(chunk)
            stats.parts += 1
    stats.seconds = round(time.perf_counter() - started, 3)
    return stats


def _progress(progress: Progress | None, show: bool) -> Any:
    if progress is not None:
        from contextlib import nullcontext

        return nullcontext(progress)
    return Progress(disable=not show, transient=False)
