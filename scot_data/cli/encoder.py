"""``scot encoder``: text -> image recall of encoders, and an encoder's identity."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from scot_data.cli.common import (
    console,
    reports_input_errors,
)

encoder_app = typer.Typer(help="Frozen encoders.", no_args_is_help=True)


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
def encoder_info(
    spec: str = typer.Argument(..., help="lit-mini|lit-base[@heads], open_clip:NAME@TAG|CKPT, hf:DIR"),
) -> None:
    """Build an encoder and print its identity (what every embedding manifest records)."""
    from scot_data.encoders import create_encoder

    typer.echo(json.dumps(create_encoder(spec).identity.as_dict(), indent=2))
