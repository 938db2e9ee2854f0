"""Fit the ``lit-mini`` projection heads on (image, caption) pairs: ``scot encoder fit-lit``.

The towers are locked, so their pooled features are computed once (images decoded in
DataLoader workers) and cached in ``tower_features.safetensors``; fitting the two linear
heads and the temperature with a symmetric InfoNCE loss then costs milliseconds a step,
and a re-fit with other settings re-uses the cache.

Images, not pairs, are split: a held-out image never appears in training with another of
its captions. A validation slice of the training images decides when to stop (small sets
overfit within a few hundred steps); the held-out images are used only for the report.
The model card reports text->image Recall@1/5/10 over the held-out images,
beside the same figures for the untrained (random) heads and the chance level ``K / N``.

Outputs in ``out_dir``: ``heads.safetensors``, ``tower_features.safetensors``,
``model_card.json``, ``MODEL_CARD.md`` and, last, ``manifest.json``. The same inputs and
settings with a finished ``out_dir`` do nothing.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader

from scot_data import ids
from scot_data.atomic import atomic_path, atomic_write_bytes, atomic_write_json
from scot_data.encoders.lit_mini import LitMiniCLIP, LitMiniEncoder, heads_state_dict, save_heads
from scot_data.errors import ScotInputError
from scot_data.images import ImageDataset, ImageItem, collate
from scot_data.manifest import (
    InputRef,
    fingerprint_input,
    finished_manifest,
    is_complete,
    stage_fingerprint,
    write_manifest,
)
from scot_data.outdir import writes_folder

STAGE = "fit-lit"
HEADS_FILE = "heads.safetensors"
FEATURES_FILE = "tower_features.safetensors"
CARD_JSON = "model_card.json"
CARD_MARKDOWN = "MODEL_CARD.md"
CAPTIONS_TABLE = "captions.parquet"  # the table inside a captions stage directory
RECALL_KS = (1, 5, 10)
TEXT_BATCH = 256
# Settings that change how fast the stage runs, never what it writes.
RUNTIME_ONLY = {"num_workers"}


@dataclass(frozen=True)
class CaptionPair:
    """One training example: an image on local disk and a caption that describes it."""

    image_id: str
    image_path: str
    caption: str


@dataclass(frozen=True)
class FitLitConfig:
    """Head-fitting settings. Defaults suit a few thousand clip-art pairs on a CPU."""

    embed_dim: int = 384
    held_out_fraction: float = 0.2
    seed: int = 0
    validation_fraction: float = 0.1  # of the training images, for early stopping
    max_steps: int = 3000
    eval_every: int = 25
    patience: int = 8  # validation checks without improvement before stopping
    batch_size: int = 256
    learning_rate: float = 3e-4
    weight_decay: float = 0.1
    image_batch_size: int = 32
    num_workers: int = 1
    device: str = "auto"


@dataclass
class FitLitResult:
    """What a fit produced and measured; also the body of ``model_card.json``."""

    out_dir: str
    heads: str
    encoder: dict[str, Any]
    held_out: dict[str, float]
    held_out_untrained: dict[str, float]
    chance: dict[str, float]
    counts: dict[str, int]
    timing: dict[str, Any]
    config: dict[str, Any]
    temperature: float
    fit: dict[str, Any]  # steps run, step kept, first / final loss, validation curve
    failed_images: dict[str, str] = field(default_factory=dict)
    skipped: bool = False


# ----------------------------------------------------------------------------- inputs


def _local_path(uri: str, base: Path) -> Path | None:
    """The local file an ``image_uri`` names, or None for URLs, tar members and the like."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(parsed.path)
    if parsed.scheme and len(parsed.scheme) > 1:  # one letter would be a Windows drive
        return None
    path = Path(uri)
    return path if path.is_absolute() else base / path


def _table_file(source: Path) -> Path:
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
    table_file = _table_file(Path(source))
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


# ------------------------------------------------------------------- tower features


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
    encoder: LitMiniEncoder, paths: Sequence[str], config: FitLitConfig, progress: Progress
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


def _extract_texts(encoder: LitMiniEncoder, captions: Sequence[str], progress: Progress) -> torch.Tensor:
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


def _features_key(encoder: LitMiniEncoder, image_paths: Sequence[str], captions: Sequence[str]) -> str:
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
    encoder: LitMiniEncoder,
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
    with atomic_path(cache) as tmp:
        save_file(
            {"image": image_features, "text": text_features},
            str(tmp),
            metadata={"key": key, "failed": json.dumps(failed)},
        )
    return TowerFeatures(image_ids, image_features, captions, text_features, failed, seconds, False)


# ------------------------------------------------------------------------ the split


@dataclass
class SplitPairs:
    """Pairs of one split as row indices into the feature matrices.

    ``images`` are the split's distinct image rows; pair ``k`` has caption row ``texts[k]``
    and image ``images[targets[k]]``.
    """

    images: torch.Tensor
    texts: torch.Tensor
    targets: torch.Tensor

    @property
    def n_images(self) -> int:
        return len(self.images)


def split_pairs(
    pairs: Sequence[CaptionPair], features: TowerFeatures, fraction: float, seed: int
) -> tuple[SplitPairs, SplitPairs]:
    """Train / held-out pairs, split by image with a seeded order that ignores input order.

    Pairs whose image failed to decode are dropped here.
    """
    wanted = {p.image_id for p in pairs} - set(features.failed)
    image_row = {image_id: i for i, image_id in enumerate(features.image_ids) if image_id in wanted}
    text_row = {caption: i for i, caption in enumerate(features.captions)}
    ranked = sorted(image_row, key=lambda image_id: ids.sample_rank(seed, image_id))
    n_held = round(len(ranked) * fraction)
    if n_held < 2 or len(ranked) - n_held < 2:
        raise ScotInputError(
            f"{len(ranked)} usable images: too few to set {fraction:.0%} apart (needs 2 on each side)"
        )
    held = set(ranked[:n_held])
    split: dict[bool, tuple[list[int], list[int]]] = {True: ([], []), False: ([], [])}
    for pair in pairs:
        if pair.image_id in image_row:
            rows, texts = split[pair.image_id in held]
            rows.append(image_row[pair.image_id])
            texts.append(text_row[pair.caption])
    return _as_split(*split[False]), _as_split(*split[True])


def _as_split(image_rows: list[int], text_rows: list[int]) -> SplitPairs:
    images, targets = torch.tensor(image_rows).unique(return_inverse=True)
    return SplitPairs(images=images, texts=torch.tensor(text_rows), targets=targets)


# ---------------------------------------------------------------------- fit and score


def _embed(
    model: LitMiniCLIP, image_features: torch.Tensor, text_features: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    images = F.normalize(model.visual.head(image_features), dim=-1)
    texts = F.normalize(model.text.proj(text_features), dim=-1)
    return images, texts


def recall_at_k(
    text_embeddings: torch.Tensor,
    image_embeddings: torch.Tensor,
    targets: torch.Tensor,
    ks: Sequence[int] = RECALL_KS,
) -> dict[str, float]:
    """Text->image Recall@K: the share of texts whose own image ranks in the top K.

    The rank counts images scoring strictly higher than the target, so ties favour it.
    """
    scores = text_embeddings @ image_embeddings.T
    own = scores.gather(1, targets[:, None])
    ranks = (scores > own).sum(dim=1)
    return {f"R@{k}": round(float((ranks < k).float().mean()), 4) for k in ks}


def chance_recall(n_images: int, ks: Sequence[int] = RECALL_KS) -> dict[str, float]:
    """Recall@K of a random ranking over ``n_images``: ``K / N``."""
    return {f"R@{k}": round(min(k, n_images) / n_images, 4) for k in ks}


@torch.no_grad()
def evaluate(model: LitMiniCLIP, features: TowerFeatures, split: SplitPairs) -> dict[str, float]:
    """Text->image recall of the model's current heads on one split's pairs and images."""
    images, texts = _embed(model, features.image_features[split.images], features.text_features[split.texts])
    return recall_at_k(texts, images, split.targets)


def _image_batches(split: SplitPairs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image: where its pairs start in a by-image order, and how many there are."""
    order = torch.argsort(split.targets, stable=True)
    counts = torch.bincount(split.targets, minlength=split.n_images)
    starts = torch.cumsum(counts, 0) - counts
    return order, starts, counts


@dataclass
class FitLog:
    """How the fit went: every step's loss, the validation curve and the step kept."""

    losses: list[float]
    validation: list[tuple[int, float]]  # (step, mean of R@1/5/10 on the validation images)
    best_step: int


def _validation_score(model: LitMiniCLIP, features: TowerFeatures, validation: SplitPairs) -> float:
    recall = evaluate(model, features, validation)
    return sum(recall.values()) / len(recall)


def _heads_snapshot(model: LitMiniCLIP) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in heads_state_dict(model).items()}


def fit_heads(
    model: LitMiniCLIP,
    features: TowerFeatures,
    train: SplitPairs,
    validation: SplitPairs,
    config: FitLitConfig,
    progress: Progress,
) -> FitLog:
    """Fit the heads and temperature with symmetric InfoNCE, keeping the heads that score best
    on the validation images and stopping once ``patience`` checks bring no improvement.

    A few hundred clip-art images overfit within a few hundred steps, a few thousand take
    longer: early stopping on images the fit never sees adapts to both. Each batch holds
    distinct images with one of their captions drawn at random, so an image with several
    captions never appears twice as its own negative.
    """
    weights = [model.visual.head.proj.weight, model.text.proj.weight]
    optimizer = torch.optim.AdamW(
        [
            {"params": weights, "weight_decay": config.weight_decay},
            {"params": [model.logit_scale], "weight_decay": 0.0},
        ],
        lr=config.learning_rate,
    )
    order, starts, counts = _image_batches(train)
    generator = torch.Generator().manual_seed(config.seed)
    batch = min(config.batch_size, train.n_images)
    labels = torch.arange(batch)
    log = FitLog(losses=[], validation=[(0, _validation_score(model, features, validation))], best_step=0)
    best = _heads_snapshot(model)
    task = progress.add_task("fit heads", total=config.max_steps)
    with torch.enable_grad():
        for p in [*weights, model.logit_scale]:
            p.requires_grad_(True)
        for step in range(1, config.max_steps + 1):
            picked = torch.randperm(train.n_images, generator=generator)[:batch]
            pair = order[starts[picked] + (torch.rand(batch, generator=generator) * counts[picked]).long()]
            images, texts = _embed(
                model,
                features.image_features[train.images[picked]],
                features.text_features[train.texts[pair]],
            )
            logits = model.logit_scale.exp().clamp(max=100.0) * texts @ images.T
            loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            log.losses.append(float(loss.detach()))
            progress.advance(task)
            if step % config.eval_every == 0:
                log.validation.append((step, _validation_score(model, features, validation)))
                if log.validation[-1][1] > max(score for _, score in log.validation[:-1]):
                    log.best_step, best = step, _heads_snapshot(model)
                elif step - log.best_step >= config.patience * config.eval_every:
                    break
    progress.update(task, total=len(log.losses), completed=len(log.losses))  # early stop: a full bar
    model.requires_grad_(False)
    model.load_state_dict(best, strict=False)
    return log


# -------------------------------------------------------------------------- outputs


def _extraction_text(timing: dict[str, Any]) -> str:
    if timing["features_from_cache"]:
        return "read from the cache"
    return f"{timing['extract_seconds']:.1f} s ({timing['images_per_second']:.1f} images/s)"


def render_model_card(result: FitLitResult) -> str:
    """The Markdown model card: what the heads are, how they score and on what data."""
    rows = "\n".join(
        f"| {k} | {result.held_out[k]:.3f} | {result.held_out_untrained[k]:.3f} | {result.chance[k]:.3f} |"
        for k in result.held_out
    )
    c, t, cfg, enc, fit = result.counts, result.timing, result.config, result.encoder, result.fit
    return f"""# lit-mini heads — model card

Projection heads for the embedded `lit-mini` encoder: locked EfficientNet-Lite0 (ImageNet) and
locked all-MiniLM-L6-v2 towers, with linear heads to {enc["dim"]} dimensions and a temperature
fitted contrastively (symmetric InfoNCE) on cached tower features.

## Held-out text -> image retrieval

{c["held_out_pairs"]} held-out captions ranked against {c["held_out_images"]} held-out images
(split by image, seed {cfg["seed"]}, {cfg["held_out_fraction"]:.0%} of images held out; the fit
never saw them, not even for early stopping).

| metric | fitted heads | untrained heads | chance (K/N) |
|---|---|---|---|
{rows}

## Data

- pairs: {c["pairs"]} ({c["train_pairs"]} train, {c["validation_pairs"]} validation,
  {c["held_out_pairs"]} held-out)
- images: {c["images"]} ({c["train_images"]} train, {c["validation_images"]} validation,
  {c["held_out_images"]} held-out); unreadable images: {c["failed_images"]}

## Training

- AdamW lr {cfg["learning_rate"]}, weight decay {cfg["weight_decay"]}, batch {cfg["batch_size"]};
  {fit["steps_run"]} of at most {cfg["max_steps"]} steps, heads kept from step {fit["best_step"]}
  (best validation mean recall, checked every {cfg["eval_every"]} steps)
- loss {fit["first_loss"]:.3f} -> {fit["final_loss"]:.3f}; learned temperature {result.temperature:.4f}
- tower features: {_extraction_text(t)}; head fitting: {t["fit_seconds"]:.1f} s
  ({t["ms_per_step"]:.2f} ms/step)

## Encoder identity

- weights sha256: `{enc["weights_sha256"]}`
- weights: {enc["weights"]}
- preprocessing: {enc["preprocessing"]}

## Limits

The towers are frozen and small; the heads see only the pairs above. Scores on other
kinds of images or captions (photos, long sentences, compositional queries) can be much
lower: measure before relying on them.
"""


def _print_summary(result: FitLitResult, console: Console) -> None:
    table = Table(title=f"lit-mini heads -> {result.heads}")
    for column in ("held-out text->image", "fitted", "untrained", "chance"):
        table.add_column(column)
    for k in result.held_out:
        table.add_row(
            k, f"{result.held_out[k]:.3f}", f"{result.held_out_untrained[k]:.3f}", f"{result.chance[k]:.3f}"
        )
    console.print(table)
    c, t = result.counts, result.timing
    console.print(
        f"{c['train_pairs']} train / {c['validation_pairs']} validation / "
        f"{c['held_out_pairs']} held-out pairs, "
        f"{c['failed_images']} unreadable images; tower features {_extraction_text(t)}, "
        f"fit {t['fit_seconds']:.1f} s, heads kept from step {result.fit['best_step']}"
    )


def _stage_config(config: FitLitConfig) -> dict[str, Any]:
    return {k: v for k, v in asdict(config).items() if k not in RUNTIME_ONLY}


def _finished_result(out: Path) -> FitLitResult:
    card = json.loads((out / CARD_JSON).read_text(encoding="utf-8"))
    return FitLitResult(**{**card, "skipped": True})


def split_three_ways(
    pairs: Sequence[CaptionPair], features: TowerFeatures, config: FitLitConfig
) -> tuple[SplitPairs, SplitPairs, SplitPairs]:
    """Train, validation (early stopping) and held-out (the model card) pairs, all by image."""
    rest, held = split_pairs(pairs, features, config.held_out_fraction, config.seed)
    rest_ids = {features.image_ids[i] for i in rest.images.tolist()}
    rest_pairs = [p for p in pairs if p.image_id in rest_ids]
    train, validation = split_pairs(rest_pairs, features, config.validation_fraction, config.seed + 1)
    return train, validation, held


def _counts(
    pairs: Sequence[CaptionPair], features: TowerFeatures, splits: dict[str, SplitPairs]
) -> dict[str, int]:
    counts = {"pairs": len(pairs), "images": len(features.image_ids), "failed_images": len(features.failed)}
    for name, split in splits.items():
        counts[f"{name}_pairs"], counts[f"{name}_images"] = len(split.texts), split.n_images
    return counts


def _fit_summary(log: FitLog) -> dict[str, Any]:
    tail = log.losses[-50:]
    return {
        "steps_run": len(log.losses),
        "best_step": log.best_step,
        "first_loss": round(log.losses[0], 4),
        "final_loss": round(sum(tail) / len(tail), 4),
        "validation_curve": [[step, round(score, 4)] for step, score in log.validation],
    }


def _write_outputs(
    out: Path, result: FitLitResult, config: FitLitConfig, inputs: list[InputRef], rows: int
) -> None:
    """Model card (Markdown, then JSON) and, last, the manifest."""
    atomic_write_bytes(out / CARD_MARKDOWN, render_model_card(result).encode("utf-8"))
    atomic_write_json(out / CARD_JSON, asdict(result))
    write_manifest(
        out,
        STAGE,
        _stage_config(config),
        inputs,
        {HEADS_FILE: None, FEATURES_FILE: rows, CARD_JSON: None, CARD_MARKDOWN: None},
        extra={"encoder": result.encoder, "metrics": {"held_out": result.held_out, "chance": result.chance}},
    )


@writes_folder(STAGE)
def fit_lit_heads(
    pairs: Sequence[CaptionPair],
    out_dir: str | Path,
    config: FitLitConfig = FitLitConfig(),
    inputs: list[InputRef] | None = None,
    show_progress: bool = True,
    console: Console | None = None,
    force: bool = False,
) -> FitLitResult:
    """Fit lit-mini heads on ``pairs`` and write heads, feature cache, model card and manifest.

    ``inputs`` names where the pairs came from for the manifest (default: a digest of the
    pairs themselves). A finished ``out_dir`` with the same inputs and settings is kept.
    Progress and the summary go to ``console`` (default: stderr); a run's live view passes
    the console it draws on, so the bars nest under it.
    """
    out = Path(out_dir)
    inputs = inputs or [InputRef("<pairs>", "pairs", pairs_digest(pairs))]
    fingerprint = stage_fingerprint(STAGE, _stage_config(config), inputs)
    if is_complete(out, STAGE, fingerprint):
        return _finished_result(out)
    (out / "manifest.json").unlink(missing_ok=True)
    if console is None or not show_progress:
        console = Console(stderr=True, quiet=not show_progress)
    encoder = LitMiniEncoder(device=config.device, embed_dim=config.embed_dim, seed=config.seed)
    with Progress(console=console, disable=not show_progress) as progress:
        features = tower_features(encoder, pairs, out / FEATURES_FILE, config, progress)
        train, validation, held = split_three_ways(pairs, features, config)
        model = encoder.model.cpu()  # the heads train on cached CPU features
        untrained = evaluate(model, features, held)
        started = time.perf_counter()
        log = fit_heads(model, features, train, validation, config, progress)
        fit_seconds = time.perf_counter() - started
    heads_path = save_heads(out / HEADS_FILE, model, {"fingerprint": fingerprint})
    fitted = LitMiniEncoder(heads=heads_path, device="cpu")  # what users will load, checked strictly
    n_read = len(features.image_ids) - len(features.failed)
    result = FitLitResult(
        out_dir=str(out),
        heads=str(heads_path),
        encoder=fitted.identity.as_dict(),
        held_out=evaluate(fitted.model, features, held),
        held_out_untrained=untrained,
        chance=chance_recall(held.n_images),
        counts=_counts(pairs, features, {"train": train, "validation": validation, "held_out": held}),
        timing={
            "features_from_cache": features.reused,
            "extract_seconds": round(features.seconds, 2),
            "images_per_second": round(n_read / features.seconds, 2) if features.seconds else 0.0,
            "fit_seconds": round(fit_seconds, 2),
            "ms_per_step": round(1000 * fit_seconds / len(log.losses), 3),
        },
        config=asdict(config),
        temperature=round(float(1 / model.logit_scale.exp()), 5),
        fit=_fit_summary(log),
        failed_images=features.failed,
    )
    _write_outputs(out, result, config, inputs, rows=len(features.image_ids))
    _print_summary(result, console)
    return result


def fit_lit_from_captions(
    captions: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    config: FitLitConfig = FitLitConfig(),
    show_progress: bool = True,
    console: Console | None = None,
    force: bool = False,
) -> FitLitResult:
    """``scot encoder fit-lit --captions DIR [--captions DIR ...] --out PATH``: fit on one
    caption table (dir or file) or on several in order (single objects + scenes)."""
    sources = [captions] if isinstance(captions, (str, Path)) else list(captions)
    table_files = [_table_file(Path(source)) for source in sources]
    pairs = [pair for table_file in table_files for pair in read_caption_table(table_file)]
    inputs = [fingerprint_input(table_file) for table_file in table_files]
    return fit_lit_heads(pairs, out_dir, config, inputs, show_progress, console, force)
