"""``scot bench``: the benchmarks this project builds (the clip-art set)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import typer
from pydantic import TypeAdapter

from scot_data.cli.common import FORCE_HELP, _validated, print_summary, reports_input_errors
from scot_data.errors import ScotInputError

bench_app = typer.Typer(help="Benchmarks this project builds.", no_args_is_help=True)


@bench_app.command("build-clipart")
@reports_input_errors
def bench_build_clipart(
    captions: Path = typer.Option(..., "--captions", help="a finished caption directory with holdout.parquet"),
    out: Path = typer.Option(..., "--out", help="benchmark folder (CIRR layout)"),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    queries_per_kind: int = typer.Option(100, "--queries-per-kind", help="per edit kind, in each split"),
    seed: int = typer.Option(0, "--seed"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Build the clip-art composed-retrieval benchmark (val and test splits over disjoint objects)
    from drawings training never saw."""
    from scot_data.evaluate.clipart import ClipartBenchConfig, build_clipart_benchmark

    cfg = _validated(TypeAdapter(ClipartBenchConfig), {"queries_per_kind": queries_per_kind, "seed": seed})
    summary = build_clipart_benchmark(captions, out, cfg, show_progress=progress, force=force)
    print_summary(f"clip-art benchmark -> {out}", asdict(summary))


@bench_app.command("captions")
@reports_input_errors
def bench_captions(
    data: Path = typer.Option(..., "--data", help="a clip-art benchmark folder"),
    out: Path = typer.Option(..., "--out", help="the caption table to write (Parquet)"),
    split: str = typer.Option("val", "--split"),
) -> None:
    """The benchmark's target scenes with their captions, as a caption table (held-out scenes
    for `scot encoder recall`)."""
    from scot_data.atomic import atomic_write_parquet
    from scot_data.evaluate.clipart import target_caption_table

    if out.is_dir():
        raise ScotInputError(f"--out {out}: a folder, not a Parquet file to write")
    table = target_caption_table(data, split)
    atomic_write_parquet(out, table)
    typer.echo(f"{table.num_rows} target scenes -> {out}")
