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
    reports_input_errors,
)
from scot_data.embed.config import EmbedConfig


@reports_input_errors
def embed_command(
    captions: Path = typer.Option(..., "--captions", help="a finished caption-stage directory"),
    triplets: Optional[Path] = typer.Option(None, "--triplets", help="a finished triplet-stage directory"),
    encoder: str = typer.Option(
        "lit-mini", "--encoder", help="backend[:model][@weights], e.g. lit-mini@heads.safetensors"
    ),
    out: Path = typer.Option(..., "--out", help="output directory"),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    device: str = typer.Option("auto", "--device"),
    image_batch_size: int = typer.Option(64, "--image-batch-size"),
    text_batch_size: int = typer.Option(256, "--text-batch-size"),
    workers: int = typer.Option(2, "--workers", help="DataLoader processes decoding images"),
    shard_max_rows: int = typer.Option(262_144, "--shard-max-rows"),
    shard_max_bytes: int = typer.Option(512 * 1024 * 1024, "--shard-max-bytes"),
    block_rows: int = typer.Option(1024, "--block-rows", help="embeddings per WebDataset sample"),
    seed: int = typer.Option(0, "--seed", help="seed of any random init"),
    reuse: Optional[list[Path]] = typer.Option(
        None, "--reuse", help="another embeddings output whose rows by the same encoder are adopted (repeat)"
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
