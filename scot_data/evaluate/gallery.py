"""A benchmark's gallery, references and query texts through the embedding cache.

The benchmark is embedded by the same stage code as training data (``plan_collection``):
parts are resumable, keyed by the encoder identity, and a finished cache whose inputs
(the annotation files and the gallery listing) and encoder are unchanged is reused
without loading the model. Evaluating a second Combiner, or the baselines, costs no
encoder work.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from scot_data import ids
from scot_data.atomic import atomic_write_json
from scot_data.embed.config import EmbedConfig
from scot_data.embed.layout import (
    IMAGES_DIR,
    REJECTS_FILE,
    STAGE,
    SUBFOLDERS,
    TEXTS_DIR,
    drop_image_parts,
)
from scot_data.embed.records import text_id
from scot_data.embed.stage import EmbedSummary, plan_collection, run_plan
from scot_data.embed.view import load_embeddings
from scot_data.errors import ScotInputError
from scot_data.evaluate.benchmark import Benchmark
from scot_data.images import ImageItem
from scot_data.manifest import InputRef, fingerprint_input
from scot_data.outdir import stage_folder

KEYS_FILE = "gallery_keys.json"  # image name -> the file state its cached vector was made from


@dataclass
class BenchmarkEmbeddings:
    """Float32 unit vectors: the gallery in its order, and each query's reference and text."""

    gallery: np.ndarray  # (G, dim)
    references: np.ndarray  # (Q, dim)
    texts: np.ndarray  # (Q, dim)
    summary: EmbedSummary
    target_texts: np.ndarray | None = None  # (Q, dim) the targets' captions, when every query has one


def cache_dir(root: Path, bench: Benchmark) -> Path:
    return root / f"{bench.name}-{bench.split}"


def encoder_cache(root: str | Path, encoder: str) -> Path:
    """A cache root of one encoder below ``root``: ``scot run``'s evaluate stage and
    ``scot ablate`` share it, so a benchmark is embedded once per encoder."""
    return Path(root) / ids.stable_id("encoder", encoder)


def _image_keys(bench: Benchmark) -> dict[str, str]:
    """Each gallery image's file state: path, size and modification time. A rewritten image
    changes its key and is embedded again while the others are reused (hashing every image's
    bytes on every evaluation would cost more than that on a CIRCO-sized gallery)."""
    return {name: _image_key(path) for name, path in bench.gallery.items()}


def _image_key(path: str | Path) -> str:
    try:
        stat = Path(path).stat()
    except OSError:
        return f"{path}:missing"  # the embed stage rejects it, naming the file
    return f"{path}:{stat.st_size}:{stat.st_mtime_ns}"


def _forget_changed_images(cache: Path, keys: dict[str, str]) -> None:
    """Drop the cached vectors of images whose file changed since the cache recorded them."""
    try:
        recorded = json.loads((cache / KEYS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        recorded = {}
    changed = {name for name, key in keys.items() if recorded.get(name, key) != key}
    if changed:
        drop_image_parts(cache, changed)


def _inputs(bench: Benchmark, keys: dict[str, str]) -> list[InputRef]:
    """The annotation files by content, the gallery by its image keys."""
    inputs = [fingerprint_input(path) for path in bench.sources]
    listing = InputRef(f"{bench.name}:{bench.split}:gallery", "listing", ids.stable_id(*keys.values()))
    return [*inputs, listing]


def _images(bench: Benchmark) -> list[ImageItem]:
    """The gallery images; every query's reference must be one of them (the protocols say so)."""
    paths = dict(bench.gallery)
    for query in bench.queries:
        if query.reference not in paths:
            raise ScotInputError(
                f"{bench.name} {bench.split}: reference {query.reference!r} of query {query.query_id} "
                "is not in the image split"
            )
    return [ImageItem(name, str(path), row) for row, (name, path) in enumerate(paths.items())]


def _target_captions(bench: Benchmark) -> list[str] | None:
    captions = [q.target_caption for q in bench.queries]
    return None if not captions or None in captions else captions  # type: ignore[return-value]


def _texts(bench: Benchmark) -> list[tuple[str, str]]:
    texts = {text_id(q.text): q.text for q in bench.queries}
    texts.update({text_id(c): c for c in _target_captions(bench) or []})
    return list(texts.items())


def _rows(found: pa.Array, wanted: list[str], what: str, cache: Path) -> np.ndarray:
    embeddings_ids = {value: row for row, value in enumerate(found.to_pylist())}
    missing = [w for w in wanted if w not in embeddings_ids]
    if missing:
        raise ScotInputError(
            f"{cache}: {len(missing)} {what} could not be embedded (first: {missing[0]!r}); "
            f"see {cache / REJECTS_FILE} for the file and reason"
        )
    return np.array([embeddings_ids[w] for w in wanted], dtype=np.int64)


def embed_benchmark(
    bench: Benchmark, cfg: EmbedConfig, cache_root: str | Path, show_progress: bool = True
) -> BenchmarkEmbeddings:
    """Embed (or reuse) everything a benchmark needs; vectors in gallery and query order."""
    cache = cache_dir(Path(cache_root), bench)
    keys = _image_keys(bench)
    with stage_folder(cache, STAGE, SUBFOLDERS):
        _forget_changed_images(cache, keys)
        inputs = _inputs(bench, keys)
        plan = plan_collection(cfg, inputs, lambda: _images(bench), lambda: _texts(bench), cache)
        summary = run_plan(plan, show_progress)
        atomic_write_json(cache / KEYS_FILE, keys)
    images = load_embeddings(cache, IMAGES_DIR)
    texts = load_embeddings(cache, TEXTS_DIR)
    image_rows = _rows(images.ids, bench.names, "gallery images", cache)
    reference_rows = _rows(images.ids, [q.reference for q in bench.queries], "reference images", cache)
    text_rows = _rows(texts.ids, [text_id(q.text) for q in bench.queries], "query texts", cache)
    matrix = images.matrix.astype(np.float32)
    captions = _target_captions(bench)
    target_rows = (
        _rows(texts.ids, [text_id(c) for c in captions], "target captions", cache) if captions else None
    )
    return BenchmarkEmbeddings(
        gallery=matrix[image_rows],
        references=matrix[reference_rows],
        texts=texts.matrix[text_rows].astype(np.float32),
        summary=summary,
        target_texts=None if target_rows is None else texts.matrix[target_rows].astype(np.float32),
    )
