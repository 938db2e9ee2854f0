"""What every command uses: the error wrapper, flag checks, the console and its tables."""

from __future__ import annotations

import json
import sys
from functools import wraps
from pathlib import Path
from typing import Any, Callable

import typer
from pydantic import BaseModel, TypeAdapter, ValidationError
from rich.console import Console
from rich.table import Table

from scot_data.errors import ScotInputError, ServerError, StageIncomplete

# A log file or a pipe has no width: rich would cut tables (Δ columns, long labels) at 80.
LOG_WIDTH = 200
console = Console(width=None if sys.stdout.isatty() else LOG_WIDTH)
FORCE_HELP = "write into a non-empty folder that is not this stage's own (nothing there is deleted)"
EXIT_BAD_INPUT = 2


def reports_input_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Bad input: one line on stderr, exit code 2. An incomplete stage or a server that
    would not start: one line, exit code 1 (finished work is kept either way)."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ScotInputError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except StageIncomplete as exc:
            typer.echo(f"incomplete: {exc}", err=True)
            raise typer.Exit(1) from None
        except ServerError as exc:
            typer.echo(f"llm server: {exc}", err=True)
            raise typer.Exit(1) from None

    return wrapper


def _validated(adapter: TypeAdapter[Any], values: dict[str, Any], flags: dict[str, str] | None = None) -> Any:
    """Validate CLI values (unset ones take the model's defaults); name the bad flag
    (``flags`` maps a field to its option where the names differ)."""
    try:
        return adapter.validate_python({k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        problem = exc.errors()[0]
        message = problem["msg"].removeprefix("Value error, ")
        location = [str(p) for p in problem["loc"] if str(p) != values.get("format")]
        if not location:  # a check across fields: its message names them
            raise ScotInputError(message) from exc
        field, inner = location[0], ".".join(location[1:])  # a flag's value may be a model (--encoder)
        flag = (flags or {}).get(field, f"--{field.replace('_', '-')}")
        raise ScotInputError(f"{flag}: {inner + ': ' if inner else ''}{message}") from exc


def config_option(model: type[BaseModel], field: str, *flags: str, **options: Any) -> Any:
    """A typer option taking its default and help from the config field it sets, so the CLI
    never restates a default (``flags``: the option's names when not ``--field-name``)."""
    info = model.model_fields[field]
    default = str(info.default) if isinstance(info.default, BaseModel) else info.default
    options.setdefault("help", info.description)
    return typer.Option(default, *(flags or (f"--{field.replace('_', '-')}",)), **options)


def _out_folder(path: Path, flag: str = "--out") -> Path:
    """An output folder: a file in its place is refused before any work."""
    if path.exists() and not path.is_dir():
        raise ScotInputError(f"{flag} {path}: a file is in the way of this output folder")
    return path


def _in_folder(path: Path | None, flag: str) -> None:
    """An input folder that must exist (when given)."""
    if path is not None and not path.is_dir():
        raise ScotInputError(f"{flag} {path}: {'not a folder' if path.exists() else 'no such folder'}")


def _at_least(value: float | None, minimum: float, flag: str) -> None:
    if value is not None and value < minimum:
        raise ScotInputError(f"{flag} {value}: must be at least {minimum}")


def _checked_device(device: str) -> str:
    """``--device`` as torch will take it: an unknown name or a missing GPU named in one line."""
    from scot_data.encoders.base import resolve_device

    try:
        resolve_device(device)
    except ScotInputError as exc:
        raise ScotInputError(f"--{exc}") from None
    return device


def print_summary(title: str, summary: dict[str, Any]) -> None:
    """A two-column table of a stage summary."""
    table = Table(title=title, show_header=False)
    for key, value in summary.items():
        shown = json.dumps(value) if isinstance(value, dict) else str(value)
        table.add_row(key, shown)
    console.print(table)


def print_metrics(results: dict[str, Any]) -> None:
    """One table per scored benchmark: methods as rows, metrics as columns, Δ vs sum."""
    print_metric_tables(results["metrics"], results.get("deltas", {}),
                        f"{results['split']} ({results['query_count']} queries)")  # fmt: skip
    for name in results.get("submissions", []):
        typer.echo(f"submission file: {name}")


def print_metric_tables(metrics: dict[str, dict[str, dict[str, float]]], deltas: dict[str, Any],
                        title: str = "") -> None:  # fmt: skip
    """Per benchmark part: each method's metrics, then each method minus sum with its paired
    95% interval (``*``: the interval excludes 0)."""
    from scot_data.evaluate.stats import interval_text

    for name, by_method in metrics.items():
        columns = list(next(iter(by_method.values())))
        table = Table(title=f"{name} {title}".strip(), caption="Δ: minus sum, paired 95% bootstrap interval over queries")
        for column in ["method", *columns]:
            table.add_column(column)
        for method, values in by_method.items():
            table.add_row(method, *(f"{values[c]:.1f}" for c in columns))
        for method, by_metric in deltas.get(name, {}).items():
            table.add_row(f"Δ {method}", *(interval_text(by_metric[c], signed=True) for c in columns))
        console.print(table)
