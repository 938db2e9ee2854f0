"""The embedding-cache stage: every distinct image and text embedded once, incrementally.

1. ``prepare`` reads the finished caption (and triplet) tables, lists the distinct images
   (by ``image_id``) and texts (captions, modifications, modified captions, by ``text_id`` =
   hash of the text), and subtracts what the output already holds for *this* encoder
   (parts tagged with another encoder's identity are removed first). A finished output
   with the same inputs, encoder spec and options is skipped without loading the model.
2. ``embed_images`` decodes and preprocesses images in DataLoader worker processes (the
   encoder's picklable transform), runs the frozen encoder under ``torch.inference_mode``
   and writes L2-normalised float16 vectors in parts of ``part_rows``, each named by its
   encoder and ids and written atomically (rejects first, vectors last). A corrupt image
   becomes a reject (file, captions row, reason); the run goes on.
3. ``embed_texts`` does the same for texts (batches sorted by length to cut padding).
4. ``finish`` packs every part, in a stable order, into WebDataset shards of row blocks
   (unchanged shards keep their names and are not rewritten), consolidates the rejects,
   writes ``stats.json`` and then ``manifest.json`` with the encoder identity and per-file
   sha256, and only then deletes files the new manifest no longer lists.

A ``kill -9`` loses at most the part in flight; the previous finished manifest stays valid
until the new one replaces it (unless the encoder changed, which invalidates it first).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from rich.progress import Progress

from scot_data import ids, stages
from scot_data.atomic import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_parquet,
)
from scot_data.embed.config import RUNTIME_ONLY_OPTIONS, EmbedConfig
from scot_data.embed.records import (
    PARQUET_OPTIONS,
    REJECTS_SCHEMA,
    encoder_key_of,
    images_schema,
    text_id,
    texts_schema,
    to_column,
    to_matrix,
)
from scot_data.embed.shards import ShardPlan, json_cost, plan_shards, write_shard
from scot_data.encoders import Encoder, EncoderSpec, create_encoder, resolve_device
from scot_data.images import TAR_SCHEME, ImageDataset, ImageItem, collate, index_tars
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

STAGE = stages.EMBEDDINGS
IMAGES_DIR = "images"
TEXTS_DIR = "texts"
REJECT_PARTS_DIR = "rejects"
WDS_DIR = "wds"
SUBFOLDERS = (IMAGES_DIR, TEXTS_DIR, REJECT_PARTS_DIR, WDS_DIR)
REJECTS_FILE = "rejects.parquet"
STATS_FILE = "stats.json"
KINDS = (IMAGES_DIR, TEXTS_DIR)


@dataclass
class EmbedSummary:
    """What one run did; printed by the CLI, stored as ``stats.json`` and in the manifest."""

    out_dir: str
    encoder: str = ""
    encoder_key: str = ""
    dim: int = 0
    images: int = 0
    texts: int = 0
    images_wanted: int = 0
    texts_wanted: int = 0
    images_embedded: int = 0
    texts_embedded: int = 0
    rejects: int = 0
    reject_reasons: dict[str, int] = field(default_factory=dict)
    image_parts: int = 0
    text_parts: int = 0
    shards: int = 0
    shards_written: int = 0
    image_seconds: float = 0.0
    text_seconds: float = 0.0
    images_per_second: float = 0.0
    texts_per_second: float = 0.0
    seconds: float = 0.0
    skipped: bool = False


@dataclass
class PhaseStats:
    """One phase (images or texts) of one run."""

    embedded: int = 0
    rejected: int = 0
    parts: int = 0
    seconds: float = 0.0


@dataclass
class EmbedPlan:
    """Everything a run needs after ``prepare``: the encoder, and what is left to embed."""

    cfg: EmbedConfig
    out: Path
    config: dict[str, Any]
    inputs: list[InputRef]
    fingerprint: str
    encoder: Encoder
    images_todo: list[ImageItem]
    pre_rejects: dict[str, str]  # image_id -> reason found before decoding (tar member missing)
    texts_todo: list[tuple[str, str]]
    images_wanted: int
    texts_wanted: int
    previous: dict[str, Any] | None
    started: float = field(default_factory=time.perf_counter)

    @property
    def encoder_key(self) -> str:
        return self.encoder.identity.key()

    @property
    def dim(self) -> int:
        return self.encoder.identity.dim


# ----------------------------------------------------------------------------- encoder

_ENCODERS: dict[tuple[str, str, int], Encoder] = {}


def get_encoder(cfg: EmbedConfig) -> Encoder:
    """The encoder a config names, kept for the process (a flow's tasks share one model)."""
    key = (cfg.encoder, cfg.device, cfg.seed)
    if key not in _ENCODERS:
        _ENCODERS.clear()
        _ENCODERS[key] = create_encoder(cfg.encoder, device=cfg.device, seed=cfg.seed)
    return _ENCODERS[key]


def clear_encoder_cache() -> None:
    _ENCODERS.clear()


# ------------------------------------------------------------------------------ inputs


def stage_config(cfg: EmbedConfig) -> dict[str, Any]:
    """Options that determine the output, plus the device kind (it sets the forward dtype)."""
    config = cfg.model_dump(mode="json", exclude=RUNTIME_ONLY_OPTIONS)
    config["device_type"] = resolve_device(cfg.device).type
    return config


def stage_inputs(cfg: EmbedConfig, captions_dir: Path, triplets_dir: Path | None) -> list[InputRef]:
    """The captions and triplets manifests (they hash every file they list) and local weights."""
    inputs = [finished_input(captions_dir, "captions", "--captions")]
    if triplets_dir is not None:
        inputs.append(finished_input(triplets_dir, "triplets", "--triplets"))
    spec = EncoderSpec.parse(cfg.encoder)
    for local in (spec.weights, spec.model):
        if local and Path(local).exists():
            inputs.append(fingerprint_input(local, content=Path(local).is_file()))
    return inputs


def wanted_images(captions_dir: Path) -> list[ImageItem]:
    """One item per distinct image_id, with the first captions row that names it."""
    table = pq.read_table(captions_dir / "captions.parquet", columns=["image_id", "image_uri"])
    seen: set[str] = set()
    items = []
    for row, (image, uri) in enumerate(zip(table.column(0).to_pylist(), table.column(1).to_pylist())):
        if image not in seen:
            seen.add(image)
            items.append(ImageItem(image, uri, row))
    return items


def wanted_texts(captions_dir: Path, triplets_dir: Path | None, with_captions: bool) -> list[tuple[str, str]]:
    """Distinct texts (by content hash) in first-seen order: captions, then triplet texts."""
    texts: list[str] = []
    if with_captions:
        texts += pq.read_table(captions_dir / "captions.parquet", columns=["caption"]).column(0).to_pylist()
    if triplets_dir is not None:
        table = pq.read_table(
            triplets_dir / "triplets.parquet", columns=["caption", "modification", "modified_caption"]
        )
        for columns in zip(*(table.column(i).to_pylist() for i in range(3))):
            texts.extend(columns)
    out: dict[str, str] = {}
    for text in texts:
        out.setdefault(text_id(text), text)
    return list(out.items())


# ------------------------------------------------------------------------------- parts


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
        held = _ids_in([path], "image_id") | _ids_in([rejects] if rejects.exists() else [], "image_id")
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


def _ids_in(paths: list[Path], column: str) -> set[str]:
    found: set[str] = set()
    for path in paths:
        found.update(pq.read_table(path, columns=[column]).column(0).to_pylist())
    return found


# ---------------------------------------------------------------------------- prepare


def prepare(
    cfg: EmbedConfig,
    captions_dir: str | Path,
    triplets_dir: str | Path | None,
    out_dir: str | Path,
    encoder: Encoder | None = None,
    reuse: Sequence[str | Path] = (),
) -> EmbedPlan | EmbedSummary:
    """Plan a run over a caption (and triplet) table, or return the skipped summary of a
    finished identical one (``reuse``: see :func:`plan_collection`)."""
    captions = Path(captions_dir)
    triplets = Path(triplets_dir) if triplets_dir is not None else None
    return plan_collection(
        cfg,
        stage_inputs(cfg, captions, triplets),
        lambda: wanted_images(captions),
        lambda: wanted_texts(captions, triplets, cfg.include_caption_table),
        out_dir,
        encoder,
        reuse,
    )


def plan_collection(
    cfg: EmbedConfig,
    inputs: list[InputRef],
    images: Callable[[], list[ImageItem]],
    texts: Callable[[], list[tuple[str, str]]],
    out_dir: str | Path,
    encoder: Encoder | None = None,
    reuse: Sequence[str | Path] = (),
) -> EmbedPlan | EmbedSummary:
    """Plan a run over any images and texts (a benchmark gallery, a search collection).

    ``inputs`` fingerprint where they come from; the lists are only built when the output
    is not already complete for those inputs. The caller holds ``out_dir`` as the stage's
    folder (``outdir.stage_folder``), which also clears a killed run's temporaries; the
    shards of a scaled-out run plan inside the claim of the flow that started them. ``reuse``
    names other outputs whose parts by the same encoder are adopted first (another training
    set over the same images embeds only its new texts).
    """
    out = Path(out_dir)
    config = stage_config(cfg)
    fingerprint = stage_fingerprint(STAGE, config, inputs)
    if is_complete(out, STAGE, fingerprint):
        return skipped_summary(out)
    previous = read_manifest(out)
    out.mkdir(parents=True, exist_ok=True)
    encoder = encoder or get_encoder(cfg)
    key = encoder.identity.key()
    remove_other_encoders(out, key)
    for source in reuse:
        adopt_parts(Path(source), out, key)
    if previous is not None and (previous.get("encoder") or {}).get("key") != key:
        previous = None

    image_parts = valid_parts(out, IMAGES_DIR, key)
    have_images = _ids_in(image_parts, "image_id") | _ids_in(
        [reject_part(out, p) for p in image_parts], "image_id"
    )
    wanted = images()
    todo = [item for item in wanted if item.image_id not in have_images]
    ready, bad = index_tars(item for item in todo if item.uri.startswith(TAR_SCHEME))
    located = {item.image_id: item for item in ready}
    images_todo = [located.get(item.image_id, item) for item in todo]

    have_texts = _ids_in(valid_parts(out, TEXTS_DIR, key), "text_id")
    wanted_text = texts()
    return EmbedPlan(
        cfg=cfg,
        out=out,
        config=config,
        inputs=inputs,
        fingerprint=fingerprint,
        encoder=encoder,
        images_todo=images_todo,
        pre_rejects={item.image_id: reason for item, reason in bad},
        texts_todo=[t for t in wanted_text if t[0] not in have_texts],
        images_wanted=len(wanted),
        texts_wanted=len(wanted_text),
        previous=previous,
    )


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
    """Embed ``plan.images_todo`` part by part; see the module docstring."""
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
        loadable = []
        for j, item in enumerate(chunk):
            if item.image_id in plan.pre_rejects:
                part.rejects.append((j, plan.pre_rejects[item.image_id]))
            else:
                loadable.append(start + j)
        part.remaining = len(loadable)
        for b in range(0, len(loadable), batch):
            batches.append(loadable[b : b + batch])
            batch_part.append(len(parts))
        parts.append(part)

    def close(part: _OpenPart) -> None:
        embedded, rejected = _write_image_part(plan, part)
        stats.embedded += embedded
        stats.rejected += rejected
        stats.parts += 1
        part.vectors = np.zeros((0, plan.dim), np.float16)  # free the buffer

    with _progress(progress, show_progress) as bar:
        task = bar.add_task("images", total=len(items))
        for part in parts:
            if part.remaining == 0:
                close(part)
                bar.advance(task, len(part.items))
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
                    part.rejects.sort()
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
        encoder=plan.cfg.encoder,
        encoder_key=key,
        dim=identity.dim,
        images=sum(files[p.relative_to(out).as_posix()] or 0 for p in image_parts),
        texts=sum(files[p.relative_to(out).as_posix()] or 0 for p in text_parts),
        images_wanted=plan.images_wanted,
        texts_wanted=plan.texts_wanted,
        images_embedded=images.embedded,
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
        "encoder": {"spec": plan.cfg.encoder, "key": key, "identity": identity.as_dict()},
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


def skipped_summary(out: Path) -> EmbedSummary:
    return finished_summary(out, EmbedSummary, images_embedded=0, texts_embedded=0, shards_written=0)


@writes_folder(STAGE, SUBFOLDERS)
def embed_stage(
    cfg: EmbedConfig,
    captions_dir: str | Path,
    triplets_dir: str | Path | None,
    out_dir: str | Path,
    show_progress: bool = True,
    encoder: Encoder | None = None,
    reuse: Sequence[str | Path] = (),
    force: bool = False,
) -> EmbedSummary:
    """Run the whole stage into ``out_dir``: only what is new is embedded (rows already in
    ``reuse`` outputs by the same encoder are adopted); an identical finished run is
    skipped without loading the model."""
    plan = prepare(cfg, captions_dir, triplets_dir, out_dir, encoder=encoder, reuse=reuse)
    return run_plan(plan, show_progress)


def run_plan(plan: EmbedPlan | EmbedSummary, show_progress: bool = True) -> EmbedSummary:
    """Embed what a plan left to do and finish the output (a skipped plan is returned as is)."""
    if isinstance(plan, EmbedSummary):
        return plan
    with Progress(disable=not show_progress, transient=False) as bar:
        images = embed_images(plan, progress=bar)
        texts = embed_texts(plan, progress=bar)
    return finish(plan, images, texts)


def iter_parts(out_dir: str | Path, kind: str) -> Iterator[Path]:
    """The Parquet parts of a finished output, in manifest order."""
    out = Path(out_dir)
    for name in finished_manifest(out, STAGE)["parts"][kind]:
        yield out / kind / name
