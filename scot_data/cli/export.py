"""``scot export``: an embed folder as ``.npy`` + Parquet for clip-retrieval, embedding-reader, autofaiss."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Optional

import typer
from pydantic import TypeAdapter

from scot_data.cli.common import (
    FORCE_HELP,
    _in_folder,
    _out_folder,
    _validated,
    config_option,
    print_summary,
    reports_input_errors,
)
from scot_data.export.config import ExportConfig


@reports_input_errors
def export_command(
    directory: Path = typer.Argument(..., metavar="DIR", help="a finished embed directory"),
    out: Path = typer.Argument(..., metavar="OUT", help="output directory"),
    format: str = config_option(ExportConfig, "format"),
    dtype: str = config_option(ExportConfig, "dtype"),
    block_rows: int = config_option(ExportConfig, "block_rows"),
    captions: Optional[Path] = typer.Option(
        None, "--captions", help="clip-retrieval: a captions directory (default: the one DIR was made from)"
    ),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """Write img_emb/, text_emb/ (.npy) and aligned metadata Parquet, as clip-retrieval does."""
    cfg = _validated(TypeAdapter(ExportConfig), {"format": format, "dtype": dtype, "block_rows": block_rows})
    _in_folder(directory, "DIR")
    _in_folder(captions, "--captions")
    _out_folder(out, "OUT")
    from scot_data.export.stage import export_stage

    summary = export_stage(cfg, directory, out, captions_dir=captions, force=force)
    print_summary(f"export ({cfg.format}) -> {out}", asdict(summary))
