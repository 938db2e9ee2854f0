"""``scot evaluate``, ``scot search``, ``scot report``: scoring and querying a Combiner."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import typer
from pydantic import TypeAdapter
from rich.table import Table

from scot_data.cli.common import (
    FORCE_HELP,
    _checked_device,
    _in_folder,
    _out_folder,
    _validated,
    console,
    print_metrics,
    reports_input_errors,
)
from scot_data.errors import ScotInputError
from scot_data.evaluate.names import BENCHMARK_NAMES


@reports_input_errors
def evaluate_command(
    benchmark: str = typer.Option(..., "--benchmark", help=" | ".join(BENCHMARK_NAMES)),
    data: Path = typer.Option(..., "--data", help="the benchmark's root, in its official layout"),
    out: Path = typer.Option(..., "--out", help="results.json, report.html, submission files"),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    split: str = typer.Option("val", "--split", help="clipart: val to choose settings, test to report"),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="default: the encoder the Combiner was trained on"),
    combiner: Optional[Path] = typer.Option(None, "--combiner", help="combiner.safetensors or its training folder"),
    cache: Optional[Path] = typer.Option(None, "--cache", help="gallery embedding cache (default: OUT/cache)"),
    image_root: Optional[Path] = typer.Option(None, "--image-root", help="CIRR: base of the split file's paths"),
    category: Optional[list[str]] = typer.Option(None, "--category", help="FashionIQ categories (repeat)"),
    device: str = typer.Option("auto", "--device"),
    workers: int = typer.Option(2, "--workers", help="DataLoader processes decoding images"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Zero-shot composed retrieval: the Combiner beside image-only, text-only and sum."""
    from scot_data.evaluate.evaluate import EvalConfig, evaluate
    from scot_data.evaluate.report import write_report

    cfg = _validated(
        TypeAdapter(EvalConfig),
        {"benchmark": benchmark, "data": data, "split": split, "encoder": encoder, "combiner": combiner,
         "image_root": image_root, "categories": tuple(category or ()), "device": _checked_device(device),
         "num_workers": workers},
        flags={"num_workers": "--workers", "categories": "--category"},
    )  # fmt: skip
    _in_folder(data, "--data")
    _in_folder(image_root, "--image-root")
    if cache is not None:
        _out_folder(cache, "--cache")
    results = evaluate(cfg, out, cache, show_progress=progress, force=force)
    print_metrics(results)
    typer.echo(f"report: {write_report(results, out)}")


@reports_input_errors
def search_command(
    gallery: Path = typer.Option(..., "--gallery", help="a finished embedding-cache directory"),
    image: Optional[Path] = typer.Option(None, "--image", help="the reference image"),
    text: Optional[str] = typer.Option(None, "--text", help="the modification, e.g. 'make it red'"),
    k: int = typer.Option(10, "-k", "--top-k"),
    combiner: Optional[Path] = typer.Option(None, "--combiner", help="without it: normalise(V + T_m)"),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="default: the gallery's encoder"),
    device: str = typer.Option("auto", "--device"),
    as_json: bool = typer.Option(False, "--json", help="print the hits as JSON"),
) -> None:
    """Top-k gallery images for a composed query (exact search; FAISS when installed)."""
    from scot_data.evaluate.search import search

    result = search(gallery, image, text, k, combiner, encoder, _checked_device(device))
    if as_json:
        typer.echo(json.dumps(asdict(result), indent=2))
        return
    lam = f", lambda {result.lam:.2f}" if result.lam is not None else ""
    table = Table(title=f"{result.method}{lam}")
    for column in ("rank", "score", "image_id", "image", "caption"):
        table.add_column(column)
    for hit in result.hits:
        table.add_row(str(hit.rank), f"{hit.score:.3f}", hit.image_id, hit.uri, hit.caption)
    console.print(table)


@reports_input_errors
def report_command(
    results: Path = typer.Argument(..., help="a results.json written by scot evaluate"),
    out: Optional[Path] = typer.Option(None, "--out", help="default: beside results.json"),
) -> None:
    """Re-render report.html from results.json (no model, no embedding)."""
    from scot_data.evaluate.report import write_report

    if not results.is_file():
        raise ScotInputError(f"{results}: no such results file")
    try:
        loaded = json.loads(results.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ScotInputError(f"{results}: not JSON ({exc})") from None
    if not isinstance(loaded, dict) or not {"benchmark", "metrics"} <= set(loaded):
        raise ScotInputError(f"{results}: not a results.json written by scot evaluate (no benchmark and metrics)")
    typer.echo(f"report: {write_report(loaded, _out_folder(out or results.parent))}")
