"""What a fit produced and measured (the body of ``model_card.json``), the Markdown model
card and the summary printed at the end of a fit."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table


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


# -------------------------------------------------------------------------- outputs


def extraction_text(timing: dict[str, Any]) -> str:
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
    image_tower, text_tower = enc["model_name"].split("+")
    return f"""# {enc["backend"]} heads — model card

Projection heads for the embedded `{enc["backend"]}` encoder: locked {image_tower} (ImageNet) and
locked {text_tower} towers, with linear heads to {enc["dim"]} dimensions and a temperature
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
- tower features: {extraction_text(t)}; head fitting: {t["fit_seconds"]:.1f} s
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


def print_summary(result: FitLitResult, console: Console) -> None:
    table = Table(title=f"{result.encoder['backend']} heads -> {result.heads}")
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
        f"{c['failed_images']} unreadable images; tower features {extraction_text(t)}, "
        f"fit {t['fit_seconds']:.1f} s, heads kept from step {result.fit['best_step']}"
    )
