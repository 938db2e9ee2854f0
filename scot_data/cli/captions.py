"""``scot captions``: ingest an image-caption collection."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from pydantic import TypeAdapter

from scot_data.captions.config import FORMATS, CaptionsConfig, CaptionsOptions
from scot_data.cli.common import FORCE_HELP, _validated, config_option, print_summary, reports_input_errors
from scot_data.errors import ScotInputError

captions_app = typer.Typer(help="The caption stage.", no_args_is_help=True)


def _captions_config(values: dict[str, Any]) -> CaptionsConfig:
    fmt = values.get("format")
    if fmt not in FORMATS:
        raise ScotInputError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    return _validated(TypeAdapter(CaptionsConfig), values)


@captions_app.command("ingest")
@reports_input_errors
def captions_ingest(
    format: str = typer.Option(..., "--format", help=" | ".join(FORMATS)),
    input: str = typer.Option(..., "--input", help="captions file, tar pattern, table, or SVG folder"),
    out: Path = typer.Option(..., "--out", help="output directory"),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    images: Optional[Path] = typer.Option(None, "--images", help="image folder (coco, table) or render cache"),
    limit: Optional[int] = config_option(CaptionsOptions, "limit"),
    seed: int = config_option(CaptionsOptions, "seed"),
    workers: int = config_option(CaptionsOptions, "workers"),
    part_size: int = config_option(CaptionsOptions, "part_size"),
    holdout: float = config_option(CaptionsOptions, "holdout", help="share of images kept out for a benchmark"),
    image_column: Optional[str] = typer.Option(None, "--image-column", help="table format only"),
    caption_column: Optional[str] = typer.Option(None, "--caption-column", help="table format only"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Read an image-caption collection into captions.parquet + rejects.parquet + manifest.json."""
    from scot_data.captions.ingest import ingest_captions

    config = _captions_config(
        {
            "format": format,
            "input": input,
            "images": images,
            "limit": limit,
            "seed": seed,
            "workers": workers,
            "part_size": part_size,
            "holdout": holdout,
            "image_column": image_column,
            "caption_column": caption_column,
        }
    )
    summary = ingest_captions(config, out, show_progress=progress, force=force)
    print_summary(f"captions -> {out}", summary.__dict__)
