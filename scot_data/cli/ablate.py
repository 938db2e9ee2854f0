"""``scot ablate``: the paper's ablations, chosen on val and reported on test."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from scot_data.cli.common import FORCE_HELP, console, reports_input_errors


@reports_input_errors
def ablate_command(
    spec: Path = typer.Argument(..., help="a shipped ablation's name (clipart, demo) or an ablation YAML"),
    out: Path = typer.Option(..., "--out", help="runs, ablation.json, report.html"),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Train each variant over the seeds, score both splits, select on val, print test with Δ vs sum."""
    from scot_data.atomic import atomic_write_bytes
    from scot_data.evaluate.ablate import (
        MARKDOWN_FILE,
        ablation_tables,
        load_ablation,
        markdown,
        run_ablation,
    )
    from scot_data.evaluate.report import write_report

    cfg = load_ablation(spec)
    results = run_ablation(cfg, out, show_progress=progress, force=force)
    tables = ablation_tables(results)
    for table in tables:
        shown = Table(title=table["title"], caption=table["note"])
        for column in table["columns"]:
            shown.add_column(column)
        for row in table["rows"]:
            shown.add_row(*map(str, row))
        console.print(shown)
    report = {"benchmark": "clipart", "split": cfg.report_split, "encoder": "see the rows", "combiner": None,
              "methods": [], "metrics": {}, "queries": [], "tables": tables}  # fmt: skip
    atomic_write_bytes(out / MARKDOWN_FILE, markdown(tables).encode("utf-8"))
    typer.echo(f"selected on {cfg.select_split} by {cfg.select_metric}: {results['selected']}")
    typer.echo(f"report: {write_report(report, out)}; markdown: {out / MARKDOWN_FILE}")
