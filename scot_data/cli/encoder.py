"""``scot encoder``: fit lit-mini's heads, text -> image recall, identity."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from scot_data.cli.common import (
    FORCE_HELP,
    _at_least,
    _checked_device,
    console,
    reports_input_errors,
)
from scot_data.errors import ScotInputError

encoder_app = typer.Typer(help="Frozen encoders.", no_args_is_help=True)


@encoder_app.command("fit-lit")
@reports_input_errors
def encoder_fit_lit(
    captions: list[Path] = typer.Option(
        ..., "--captions", help="a finished caption-stage directory or a Parquet table (repeat: fit on all)"
    ),
    out: Path = typer.Option(..., "--out", help="output directory for heads, model card and manifest"),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    seed: int = typer.Option(0, "--seed"),
    held_out_fraction: float = typer.Option(0.2, "--held-out-fraction"),
    max_steps: int = typer.Option(3000, "--max-steps"),
    workers: int = typer.Option(1, "--workers", help="image-decoding DataLoader workers"),
    device: str = typer.Option("auto", "--device"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Fit the lit-mini projection heads on clip-art captions; report held-out recall."""
    from scot_data.fit_lit.config import FitLitConfig
    from scot_data.fit_lit.stage import fit_lit_from_captions

    if not 0 < held_out_fraction < 1:
        raise ScotInputError(f"--held-out-fraction {held_out_fraction}: must be between 0 and 1")
    _at_least(max_steps, 1, "--max-steps")
    _at_least(workers, 0, "--workers")
    config = FitLitConfig(seed=seed, held_out_fraction=held_out_fraction, max_steps=max_steps,
                          num_workers=workers, device=_checked_device(device))  # fmt: skip
    fit_lit_from_captions(captions, out, config, show_progress=progress, force=force)


@encoder_app.command("recall")
@reports_input_errors
def encoder_recall(
    table: Path = typer.Option(..., "--captions", help="a caption table (captions.parquet, holdout.parquet)"),
    encoder: list[str] = typer.Option(..., "--encoder", help="encoder spec (repeat to compare)"),
    limit: Optional[int] = typer.Option(None, "--limit", help="first N rows only"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Text -> image Recall@1/5/10 of each encoder on a caption table (beside chance)."""
    from scot_data.evaluate.recall import text_to_image_recall

    shown = Table(title=f"text -> image recall on {table}")
    for column in ("encoder", "captions", "images", "R@1", "R@5", "R@10", "chance R@10"):
        shown.add_column(column)
    for spec in encoder:
        report = text_to_image_recall(table, spec, limit, show_progress=progress)
        shown.add_row(spec, str(report.captions), str(report.images), *(f"{v:.3f}" for v in report.recall.values()),
                      f"{report.chance['R@10']:.3f}")  # fmt: skip
    console.print(shown)


@encoder_app.command("info")
@reports_input_errors
def encoder_info(spec: str = typer.Argument(..., help="lit-mini[@heads], open_clip:NAME@TAG|CKPT, hf:DIR")) -> None:
    """Build an encoder and print its identity (what every embedding manifest records)."""
    from scot_data.encoders import create_encoder

    typer.echo(json.dumps(create_encoder(spec).identity.as_dict(), indent=2))
