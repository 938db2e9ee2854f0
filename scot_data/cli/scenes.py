"""``scot scenes``: training clip-art objects composed into captioned scenes (the scenes stage)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import typer
from pydantic import TypeAdapter

from scot_data import stages
from scot_data.cli.common import FORCE_HELP, _validated, config_option, print_summary, reports_input_errors
from scot_data.scenes.config import ScenesConfig


@reports_input_errors
def scenes_command(
    captions: Path = typer.Option(..., "--captions", help="a finished clip-art caption directory (training objects)"),
    out: Path = typer.Option(..., "--out", help="writes OUT/captions and OUT/triplets"),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    count: int = config_option(ScenesConfig, "count"),
    edits_per_scene: int = config_option(ScenesConfig, "edits_per_scene"),
    render_targets: bool = config_option(ScenesConfig, "render_targets", "--render-targets"),
    seed: int = config_option(ScenesConfig, "seed"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Compose training clip-art objects into captioned scenes, with template edits of each."""
    from scot_data.manifest import finished_manifest
    from scot_data.scenes.stage import build_scenes

    config = _validated(
        TypeAdapter(ScenesConfig),
        {"count": count, "edits_per_scene": edits_per_scene, "render_targets": render_targets, "seed": seed},
    )
    finished_manifest(captions, stages.CAPTIONS, "--captions")
    summary = build_scenes(captions, out, config, show_progress=progress, force=force)
    print_summary(f"scenes -> {out}", asdict(summary))
