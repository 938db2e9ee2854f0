"""Fitting the LiT heads: the split by image (train, validation for early stopping,
held out for the card), text->image recall of the current heads, and the symmetric InfoNCE
loop over cached features."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from rich.progress import Progress

from scot_data import ids
from scot_data.encoders.lit import LitCLIP, heads_state_dict
from scot_data.errors import ScotInputError
from scot_data.evaluate.text_image_recall import recall_at_k
from scot_data.fit_lit.config import FitLitConfig
from scot_data.fit_lit.features import TowerFeatures
from scot_data.fit_lit.pairs import CaptionPair

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
    model: LitCLIP, image_features: torch.Tensor, text_features: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    images = F.normalize(model.visual.head(image_features), dim=-1)
    texts = F.normalize(model.text.proj(text_features), dim=-1)
    return images, texts


@torch.no_grad()
def evaluate(model: LitCLIP, features: TowerFeatures, split: SplitPairs) -> dict[str, float]:
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


def _validation_score(model: LitCLIP, features: TowerFeatures, validation: SplitPairs) -> float:
    recall = evaluate(model, features, validation)
    return sum(recall.values()) / len(recall)


def _heads_snapshot(model: LitCLIP) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in heads_state_dict(model).items()}


def fit_heads(
    model: LitCLIP,
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


def split_three_ways(
    pairs: Sequence[CaptionPair], features: TowerFeatures, config: FitLitConfig
) -> tuple[SplitPairs, SplitPairs, SplitPairs]:
    """Train, validation (early stopping) and held-out (the model card) pairs, all by image."""
    rest, held = split_pairs(pairs, features, config.held_out_fraction, config.seed)
    rest_ids = {features.image_ids[i] for i in rest.images.tolist()}
    rest_pairs = [p for p in pairs if p.image_id in rest_ids]
    train, validation = split_pairs(rest_pairs, features, config.validation_fraction, config.seed + 1)
    return train, validation, held
