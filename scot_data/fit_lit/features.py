"""Pooled tower features of the locked LiT towers, computed once (images decoded in
DataLoader workers) and cached in ``tower_features.safetensors`` under a key of the tower
weights, preprocessing, precision and inputs, so a re-fit with other settings reuses them.

The file also names each image row (id, path, size, mtime) and the towers it came from, so
the embed stage can take an image's features from it instead of running the tower again
(:func:`image_features_for`)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.progress import Progress
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader

from scot_data.atomic import atomic_path
from scot_data.encoders.lit import LitEncoder
from scot_data.fit_lit.config import STAGE, FitLitConfig
from scot_data.fit_lit.pairs import CaptionPair
from scot_data.images import ImageDataset, ImageItem, collate

TEXT_BATCH = 256


@dataclass
class TowerFeatures:
    """Pooled tower features of the distinct images and captions, in input order."""

    image_ids: list[str]
    image_features: torch.Tensor  # (n_images, 1280); rows of failed images are zero
    captions: list[str]
    text_features: torch.Tensor  # (n_captions, 384)
    failed: dict[str, str]  # image_id -> why it could not be read
    seconds: float  # extraction time (0 when read from the cache)
    reused: bool


def _extract_images(
    encoder: LitEncoder, paths: Sequence[str], config: FitLitConfig, progress: Progress
) -> tuple[torch.Tensor, dict[int, str]]:
    items = [ImageItem(str(i), path, i) for i, path in enumerate(paths)]
    loader = DataLoader(
        ImageDataset(items, encoder.image_transform),
        batch_size=config.image_batch_size,
        num_workers=config.num_workers,
        collate_fn=collate,
        pin_memory=encoder.on_gpu,
    )
    features = torch.zeros(len(paths), encoder.model.visual.trunk.num_features)
    failed: dict[int, str] = {}
    task = progress.add_task("image tower", total=len(paths))
    for batch in loader:
        indices = batch["indices"]
        if batch["pixels"] is not None:
            features[indices] = encoder.image_tower_features(batch["pixels"])
        failed.update(batch["failed"])
        progress.advance(task, len(indices) + len(batch["failed"]))
    return features, failed


def _extract_texts(encoder: LitEncoder, captions: Sequence[str], progress: Progress) -> torch.Tensor:
    task = progress.add_task("text tower", total=len(captions))
    chunks = []
    for start in range(0, len(captions), TEXT_BATCH):
        chunk = captions[start : start + TEXT_BATCH]
        chunks.append(encoder.text_tower_features(chunk))
        progress.advance(task, len(chunk))
    return torch.cat(chunks)


def _file_stamp(path: str) -> tuple[int, int]:
    """Size and mtime: a re-rendered image at the same path invalidates the cache."""
    try:
        stat = Path(path).stat()
    except OSError:
        return (-1, -1)
    return (stat.st_size, stat.st_mtime_ns)


def _features_key(encoder: LitEncoder, image_paths: Sequence[str], captions: Sequence[str]) -> str:
    """What the cached features depend on: tower weights, preprocessing, precision and the inputs."""
    identity = encoder.identity
    images = [(path, *_file_stamp(path)) for path in image_paths]
    payload = [STAGE, identity.preprocessing, identity.dtype, encoder.towers_sha256, images, list(captions)]
    return hashlib.sha256(json.dumps(payload).encode("utf-8")).hexdigest()


def _read_cached_features(path: Path, key: str) -> dict[str, Any] | None:
    if not path.exists():
        return None
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if metadata.get("key") != key:
        return None
    return {**load_file(str(path)), "failed": json.loads(metadata["failed"])}


def tower_features(
    encoder: LitEncoder,
    pairs: Sequence[CaptionPair],
    cache: Path,
    config: FitLitConfig,
    progress: Progress,
) -> TowerFeatures:
    """Features of every distinct image and caption, from ``cache`` when it matches the inputs."""
    image_paths = dict.fromkeys((p.image_id, p.image_path) for p in pairs)
    image_ids = [image_id for image_id, _ in image_paths]
    paths = [path for _, path in image_paths]
    captions = list(dict.fromkeys(p.caption for p in pairs))
    key = _features_key(encoder, paths, captions)
    cached = _read_cached_features(cache, key)
    if cached is not None:
        return TowerFeatures(
            image_ids, cached["image"], captions, cached["text"], cached["failed"], 0.0, True
        )
    started = time.perf_counter()
    image_features, failed_rows = _extract_images(encoder, paths, config, progress)
    text_features = _extract_texts(encoder, captions, progress)
    seconds = time.perf_counter() - started
    failed = {image_ids[i]: f"{paths[i]}: {error}" for i, error in sorted(failed_rows.items())}
    images = [[image_id, path, *_file_stamp(path)] for image_id, path in image_paths]
    metadata = {"key": key, "failed": json.dumps(failed), "images": json.dumps(images),
                "towers_sha256": encoder.towers_sha256,
                "preprocessing": encoder.identity.preprocessing}  # fmt: skip
    with atomic_path(cache) as tmp:
        save_file({"image": image_features, "text": text_features}, str(tmp), metadata=metadata)
    return TowerFeatures(image_ids, image_features, captions, text_features, failed, seconds, False)


def image_features_for(cache: Path, encoder: LitEncoder) -> dict[str, tuple[str, torch.Tensor]]:
    """``image_id -> (path, tower features)`` from a fit's cache, for the images it read
    whose file is unchanged since, when its towers and preprocessing are ``encoder``'s;
    empty when they are not (or the cache predates the image names)."""
    if not cache.exists():
        return {}
    with safe_open(str(cache), framework="pt") as handle:
        metadata = handle.metadata() or {}
        if (
            "images" not in metadata
            or metadata.get("towers_sha256") != encoder.towers_sha256
            or metadata.get("preprocessing") != encoder.identity.preprocessing
        ):
            return {}
        features = handle.get_tensor("image")
    failed = json.loads(metadata["failed"])
    return {
        image_id: (path, features[row])
        for row, (image_id, path, size, mtime) in enumerate(json.loads(metadata["images"]))
        if image_id not in failed and _file_stamp(path) == (size, mtime)
    }
