"""``scot train``: the Combiner from cached embeddings."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Optional

import typer
from pydantic import TypeAdapter

from scot_data.cli.common import (
    FORCE_HELP,
    _checked_device,
    _validated,
    print_summary,
    reports_input_errors,
)
from scot_data.combiner.config import TrainConfig


@reports_input_errors
def train_command(
    embeddings: Path = typer.Option(..., "--embeddings", help="a finished embedding-cache directory"),
    triplets: Path = typer.Option(..., "--triplets", help="the finished triplet directory it was built from"),
    out: Path = typer.Option(..., "--out", help="output directory (checkpoints, metrics, weights, manifest)"),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    epochs: int = typer.Option(10, "--epochs"),
    batch_size: int = typer.Option(512, "--batch-size"),
    lr: float = typer.Option(2e-4, "--lr"),
    seed: int = typer.Option(0, "--seed"),
    max_triplets: Optional[int] = typer.Option(None, "--max-triplets", help="training-set size ablation"),
    target: str = typer.Option(
        "text", "--target", help="text (T_u) | image (nearest cache image to T_u) | rendered (target_image_id)"
    ),
    hard_negative: bool = typer.Option(True, "--caption-hard-negative/--no-caption-hard-negative"),
    device: str = typer.Option("auto", "--device"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Train the Combiner from cached embeddings (resumes an interrupted run to the same result)."""
    from scot_data.combiner.train import train_combiner


    config = _validated(
        TypeAdapter(TrainConfig),
        {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed, "max_triplets": max_triplets,
         "target": target, "device": _checked_device(device),
         "loss": {"caption_hard_negative": hard_negative}},
    )  # fmt: skip
    summary = train_combiner(config, embeddings, triplets, out, show_progress=progress,
                             force=force)  # fmt: skip
    print_summary(f"combiner -> {out}", asdict(summary))
