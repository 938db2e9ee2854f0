"""``scot run``: every stage of a pipeline spec, by Prefect or in this process."""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import typer

from scot_data.cli.common import console, print_metric_tables, reports_input_errors
from scot_data.cli.spec import SPEC_HELP

if TYPE_CHECKING:
    from scot_data.pipeline import StageResult
    from scot_data.spec import PipelineSpec


class Engine(str, Enum):
    """How ``scot run`` executes the stages."""

    prefect = "prefect"
    local = "local"


# Set (unless already set) before Prefect is first imported, which reads them: no telemetry,
# a temporary server that may start slowly on a busy machine, and console logs held to
# warnings so they do not interleave with the progress view (the API handler, and so a
# Prefect UI at PREFECT_API_URL, still gets every line).
PREFECT_DEFAULTS = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
                    "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING"}  # fmt: skip


def _engine_runner(engine: Engine, spec: Path, pipeline: PipelineSpec,
                   progress: bool) -> Callable[[], list[StageResult]]:  # fmt: skip
    """The run of ``spec`` by ``engine``. Prefect is imported only here, so the library and
    ``--engine local`` work where it is not installed."""
    if engine is Engine.local:
        from scot_data.pipeline import run_pipeline

        return lambda: run_pipeline(pipeline, show_progress=progress)
    for key, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(key, value)
    from flows.pipeline import run_spec

    return lambda: run_spec(str(spec), show_progress=progress)


@reports_input_errors
def run(
    spec: Path = typer.Argument(..., help=SPEC_HELP),
    engine: Engine = typer.Option(Engine.prefect, "--engine",
                                  help="prefect: a flow with a subflow per stage; local: in this process"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Run every stage of a pipeline spec in order, skipping stages already complete."""
    from scot_data.pipeline import configured_stages, observed_by, signals_as_interrupt
    from scot_data.run_view import PipelineView, summary_table
    from scot_data.spec import load_spec


    pipeline = load_spec(spec)
    title = f"pipeline {pipeline.name} -> {pipeline.out} ({engine.value})"
    execute = _engine_runner(engine, spec, pipeline, progress)
    view = PipelineView(title, configured_stages(pipeline)) if progress else None
    started = time.perf_counter()
    with signals_as_interrupt(), observed_by(view), view or nullcontext():
        results = execute()
    console.print(summary_table(title, results))
    for result in results:
        if result.stage == "evaluate":
            print_metric_tables(result.summary["metrics"], result.summary.get("deltas", {}), "(recall in %)")
            for report in result.summary["reports"]:
                typer.echo(f"report: {report}")
    typer.echo(f"total {time.perf_counter() - started:.1f} s")
