"""``scot verify`` and ``scot publish``: check a finished stage, copy it elsewhere."""

from __future__ import annotations

from pathlib import Path

import typer

from scot_data.cli.common import reports_input_errors
from scot_data.errors import ScotInputError


@reports_input_errors
def verify_command(
    directory: str = typer.Argument(..., help="a stage output directory or fsspec URL"),
) -> None:
    """Check checksums, row counts, dims, NaNs and shards against the manifest; exit 1 on problems."""
    from scot_data.verify import verify


    local = Path(directory)
    if "://" not in directory:  # a local folder: not one at all, or no stage in it, is an input error
        if not local.is_dir():
            raise ScotInputError(f"{directory}: {'not a folder' if local.exists() else 'no such folder'}")
        if not (local / "manifest.json").exists():
            raise ScotInputError(f"{directory}: not a finished stage directory (no manifest.json)")
    problems = verify(directory)
    for problem in problems:
        typer.echo(problem, err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"{directory}: ok")


@reports_input_errors
def publish_command(
    directory: Path = typer.Argument(..., help="a finished stage directory"),
    url: str = typer.Argument(
        ..., help="destination: a path, fsspec URL (s3://bucket/prefix) or hf://datasets/OWNER/NAME[/PREFIX]"
    ),
    license: str | None = typer.Option(
        None, "--license", help="hf:// only: the card's license id (default: the card's own, else unknown)"
    ),
) -> None:
    """Copy a verified directory to URL (skips files already there, checks each upload, manifest last);
    to the Hugging Face Hub, then write the repository's dataset card (README.md) from its manifests."""
    from scot_data.verify import publish


    summary = publish(directory, url, license=license)
    card = f"; dataset card {summary.card}" if summary.card else ""
    typer.echo(f"published {directory} -> {url}: {len(summary.uploaded)} uploaded "
               f"({summary.bytes_uploaded} bytes), {len(summary.skipped)} already there{card}")  # fmt: skip
