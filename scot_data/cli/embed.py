"""``scot embed``: the embedding cache."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import typer
from pydantic import TypeAdapter

from scot_data.cli.common import (
    FORCE_HELP,
    _checked_device,
    _in_folder,
    _validated,
    config_option,
    reports_input_errors,
)
from scot_data.embed.config import EmbedConfig


@reports_input_errors
def embed_command(
    captions: Path = typer.Option(..., "--captions", help="a finished caption-stage directory"),
    triplets: Optional[Path] = typer.Option(None, "--triplets", help="a finished triplet-stage directory"),
    encoder: str = config_option(
        EmbedConfig, "encoder", help="backend[:model][@weights], e.g. lit-mini@heads.safetensors"
    ),
    out: Path = typer.Option(..., "--out", help="output directory"),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    device: str = config_option(EmbedConfig, "device"),
    image_batch_size: int = config_option(EmbedConfig, "image_batch_size"),
    text_batch_size: int = config_option(EmbedConfig, "text_batch_size"),
    workers: int = config_option(EmbedConfig, "num_workers", "--workers"),
    shard_max_rows: int = config_option(EmbedConfig, "shard_max_rows"),
    shard_max_bytes: int = config_option(EmbedConfig, "shard_max_bytes"),
    block_rows: int = config_option(EmbedConfig, "block_rows"),
    seed: int = config_option(EmbedConfig, "seed"),
    reuse: Optional[list[Path]] = typer.Option(
        None, "--reuse", help="another embed folder whose rows by the same encoder are adopted (repeat)"
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Embed every distinct image and text once: Parquet + WebDataset shards + manifest."""
    from scot_data.embed.stage import embed_stage

    cfg = _validated(TypeAdapter(EmbedConfig), {
        "encoder": encoder, "device": _checked_device(device), "image_batch_size": image_batch_size,
        "text_batch_size": text_batch_size, "num_workers": workers, "shard_max_rows": shard_max_rows,
        "shard_max_bytes": shard_max_bytes, "block_rows": block_rows, "seed": seed,
    }, flags={"num_workers": "--workers"})  # fmt: skip
    for source in reuse or ():
        _in_folder(source, "--reuse")
    summary = embed_stage(cfg, captions, triplets, out, show_progress=progress,
                          reuse=reuse or (), force=force)  # fmt: skip
    typer.echo(json.dumps(asdict(summary), indent=2))
