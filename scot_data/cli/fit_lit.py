"""``scot fit-lit``: fit a LiT encoder's projection heads on caption tables (the fit-lit stage)."""

from __future__ import annotations

from pathlib import Path

import typer
from pydantic import TypeAdapter

from scot_data.cli.common import FORCE_HELP, _checked_device, _validated, config_option, reports_input_errors
from scot_data.fit_lit.config import FitLitConfig


@reports_input_errors
def fit_lit_command(
    captions: list[Path] = typer.Option(
        ..., "--captions", help="a finished caption-stage directory or a Parquet table (repeat: fit on all)"
    ),
    out: Path = typer.Option(..., "--out", help="output directory for heads, model card and manifest"),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    encoder: str = config_option(FitLitConfig, "encoder"),
    seed: int = config_option(FitLitConfig, "seed"),
    held_out_fraction: float = config_option(FitLitConfig, "held_out_fraction"),
    max_steps: int = config_option(FitLitConfig, "max_steps"),
    workers: int = config_option(FitLitConfig, "num_workers", "--workers"),
    device: str = config_option(FitLitConfig, "device"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Fit a LiT encoder's projection heads (default lit-mini) on captions; report held-out recall."""
    from scot_data.fit_lit.stage import fit_lit_from_captions

    config = _validated(TypeAdapter(FitLitConfig), {
        "encoder": encoder, "seed": seed, "held_out_fraction": held_out_fraction, "max_steps": max_steps,
        "num_workers": workers,
        "device": _checked_device(device),
    }, flags={"num_workers": "--workers"})  # fmt: skip
    fit_lit_from_captions(captions, out, config, show_progress=progress, force=force)
