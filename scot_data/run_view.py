"""``scot run``'s one progress view: a row per stage, the running stage's own bars under it.

The stages draw their bars with ``rich.progress.Progress`` on rich's global console. A
``Live`` display started there first becomes the top of rich's live stack, and every live
display a stage starts while it lasts (its ``Progress``) is drawn inside it, under the
stage rows, instead of fighting it for the terminal. So the stages stay unchanged and
unaware of the view; the view learns about stages as a ``PipelineObserver``, which both
engines (in process and Prefect) report to.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import rich
from rich.console import Console, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from scot_data.pipeline import StageResult

STATUS_STYLES = {"done": "green", "skipped (complete)": "cyan", "waiting": "dim", "failed": "red",
                 "interrupted": "red"}  # fmt: skip


@dataclass
class _Row:
    """One stage as the view shows it."""

    stage: str
    status: str = "waiting"
    started: float | None = None
    seconds: float | None = None
    counts: str = ""


def format_counts(counts: dict[str, Any]) -> str:
    """``rows 6,021 · rejects 12``: the summary figures in one short cell."""
    shown = (f"{value:,}" if isinstance(value, int) else f"{value:.3g}" if isinstance(value, float) else str(value)
             for value in counts.values())  # fmt: skip
    return " · ".join(f"{key} {value}" for key, value in zip(counts, shown, strict=True))


def _table(title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column, justify in (("stage", "left"), ("status", "left"), ("seconds", "right"), ("counts", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    return table


def summary_table(title: str, results: list[StageResult]) -> Table:
    """The final table of a run: stage, status, seconds, key counts."""
    table = _table(title)
    for result in results:
        table.add_row(result.stage, Text(result.status, style=STATUS_STYLES.get(result.status, "")),
                      f"{result.seconds:.1f}", format_counts(result.counts))  # fmt: skip
    return table


class PipelineView:
    """The live stage table of one run (a ``PipelineObserver``); used as a context manager.

    Transient: it vanishes when the run ends and the caller prints the final summary. When
    the run fails or is interrupted it leaves its last state on screen instead, so what was
    done and which stage stopped stay visible above the error.
    """

    live = True

    def __init__(self, title: str, stages: list[str], console: Console | None = None) -> None:
        self.title = title
        self.rows = {stage: _Row(stage) for stage in stages}
        self.console = console or rich.get_console()
        self.started = time.perf_counter()
        self._live = Live(get_renderable=self.render, console=self.console, transient=True,
                          refresh_per_second=4)  # fmt: skip

    def __enter__(self) -> Self:
        self.started = time.perf_counter()
        self._live.start(refresh=True)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:  # fmt: skip
        self._live.stop()
        if error is not None:
            self.console.print(self.render())

    def stage_started(self, stage: str) -> None:
        self.rows[stage] = _Row(stage, "running", started=time.perf_counter())

    def stage_finished(self, result: StageResult) -> None:
        self.rows[result.stage] = _Row(result.stage, result.status, seconds=result.seconds,
                                       counts=format_counts(result.counts))  # fmt: skip

    def stage_failed(self, stage: str, seconds: float, error: BaseException) -> None:
        status = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
        self.rows[stage] = _Row(stage, status, seconds=seconds, counts=type(error).__name__)

    def render(self) -> RenderableType:
        """The stage table as it stands now (running rows show a spinner and their time)."""
        now = time.perf_counter()
        table = _table(f"{self.title} · {now - self.started:.0f} s")
        for row in self.rows.values():
            if row.status == "running" and row.started is not None:
                status: RenderableType = Spinner("dots", Text("running", style="yellow"), style="yellow")
                seconds = now - row.started
            else:
                status = Text(row.status, style=STATUS_STYLES.get(row.status, ""))
                seconds = row.seconds
            table.add_row(row.stage, status, "" if seconds is None else f"{seconds:.1f}", row.counts)
        return table
