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
    config_option,
    print_summary,
    reports_input_errors,
)
from scot_data.train.config import LossConfig, TrainConfig


@reports_input_errors
def train_command(
    embeddings: Path = typer.Option(..., "--embeddings", help="a finished embedding-cache directory"),
    triplets: Path = typer.Option(..., "--triplets", help="the finished triplet directory it was built from"),
    out: Path = typer.Option(..., "--out", help="output directory (checkpoints, metrics, weights, manifest)"),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    epochs: int = config_option(TrainConfig, "epochs"),
    batch_size: int = config_option(TrainConfig, "batch_size"),
    lr: float = config_option(TrainConfig, "lr"),
    seed: int = config_option(TrainConfig, "seed"),
    max_triplets: Optional[int] = config_option(TrainConfig, "max_triplets"),
    target: str = config_option(TrainConfig, "target"),
    hard_negative: bool = config_option(
        LossConfig, "caption_hard_negative", "--caption-hard-negative/--no-caption-hard-negative"
    ),
    device: str = config_option(TrainConfig, "device"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Train the Combiner from cached embeddings (resumes an interrupted run to the same result)."""
    from scot_data.train.stage import train_combiner

    config = _validated(
        TypeAdapter(TrainConfig),
        {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed, "max_triplets": max_triplets,
         "target": target, "device": _checked_device(device),
         "loss": {"caption_hard_negative": hard_negative}},
    )  # fmt: skip
    summary = train_combiner(config, embeddings, triplets, out, show_progress=progress,
                             force=force)  # fmt: skip
    print_summary(f"combiner -> {out}", asdict(summary))
