"""``scot triplets``: generate, filter, score a labelled set, mix."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer
from pydantic import TypeAdapter

from scot_data.cli.common import FORCE_HELP, _validated, config_option, print_summary, reports_input_errors
from scot_data.errors import ScotInputError
from scot_data.triplets.config import BACKENDS, TripletsConfig
from scot_data.triplets.filters import FILTER_SPECS, FilterConfig

triplets_app = typer.Typer(help="The triplet stage.", no_args_is_help=True)


@triplets_app.command("generate")
@reports_input_errors
def triplets_generate(
    captions: Path = typer.Option(..., "--captions", help="a finished caption-stage directory"),
    out: Path = typer.Option(..., "--out", help="output directory"),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    endpoint: Optional[list[str]] = typer.Option(None, "--endpoint", help="OpenAI-compatible base URL (repeat)"),
    model: Optional[str] = typer.Option(None, "--model", help="served model name"),
    backend: str = typer.Option("llm", "--backend", help=" | ".join(BACKENDS)),
    concurrency: Optional[int] = typer.Option(None, "--concurrency", help="requests in flight"),
    limit: Optional[int] = typer.Option(None, "--limit", help="a seeded sample of N captions"),
    seed: int = typer.Option(0, "--seed"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="captions per resumable part"),
    prompt: Path = config_option(TripletsConfig, "prompt"),
    response_format: Optional[str] = typer.Option(None, "--response-format", help="json_schema | json_object"),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="seconds per request"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Rewrite captions into (modification, modified caption) triplets with an LLM or templates."""
    from scot_data.manifest import finished_manifest
    from scot_data.triplets.generate import generate_triplets


    config = _validated(
        TypeAdapter(TripletsConfig),
        {
            "backend": backend,
            "endpoints": endpoint or None,
            "model": model,
            "concurrency": concurrency,
            "limit": limit,
            "seed": seed,
            "batch_size": batch_size,
            "prompt": prompt,
            "response_format": response_format,
            "timeout": timeout,
        },
    )
    finished_manifest(captions, "captions", "--captions")
    summary = generate_triplets(config, captions, out, show_progress=progress, force=force)
    print_summary(f"triplets -> {out}", summary.__dict__)


def _with_filter_switches(command: Callable[..., Any]) -> Callable[..., Any]:
    """One ``--NAME/--no-NAME`` switch per :data:`FILTER_SPECS` entry (its default and help
    from the declaration), passed to ``command`` as keyword arguments: a new filter needs
    no CLI change."""
    signature = inspect.signature(command)
    switches = [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                          default=typer.Option(f.default, f"{f.flag}/--no-{f.flag[2:]}", help=f.description))
        for f in FILTER_SPECS
    ]  # fmt: skip
    kept = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    command.__signature__ = signature.replace(parameters=[*kept, *switches])  # type: ignore[attr-defined]
    return command


@triplets_app.command("filter")
@reports_input_errors
@_with_filter_switches
def triplets_filter(
    triplets: Path = typer.Option(..., "--triplets", help="a finished triplet-stage directory"),
    out: Path = typer.Option(..., "--out", help="output directory (a finished triplet stage)"),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    embeddings: Optional[Path] = typer.Option(None, "--embeddings", help="a finished embedding cache"),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="encodes texts the cache lacks"),
    low: Optional[float] = config_option(FilterConfig, "low"),
    high: Optional[float] = config_option(FilterConfig, "high"),
    prompt: Path = config_option(FilterConfig, "prompt"),
    **switches: bool,
) -> None:
    """Drop triplets that copy the prompt, loop, do not make the edit they name, or change too
    little or too much; each filter's drop count is in the summary."""
    from scot_data.triplets.filter_stage import filter_triplets
    from scot_data.triplets.prompts import load_prompt

    config = _validated(TypeAdapter(FilterConfig), {**switches, "low": low, "high": high, "prompt": prompt})
    if config.few_shot_copy:
        load_prompt(config.prompt)  # a missing or broken prompt is named before any work
    summary = filter_triplets(triplets, out, config, embeddings_dir=embeddings, encoder=encoder,
                              force=force)  # fmt: skip
    print_summary(f"filtered triplets -> {out}", summary.__dict__)


@triplets_app.command("score-labelled")
@reports_input_errors
def triplets_score_labelled(
    labelled: Path = typer.Option(..., "--labelled", help="JSONL: triplet_id, caption, modification, "
                                  "modified_caption, label (good|bad), similarity"),
    prompt: Path = config_option(FilterConfig, "prompt"),
    model: Optional[str] = typer.Option(None, "--model", help="score only rows whose `model` field is this"),
) -> None:
    """Fit the similarity band on one half of a labelled set and print each filter's precision and
    recall on the other half (re-fit it for another LLM or encoder)."""
    from scot_data.triplets.labelled import (
        fit_band,
        labelled_half,
        labelled_report,
        score_labelled,
        select_model,
    )

    if not labelled.is_file():
        raise ScotInputError(f"{labelled}: no such labelled file")
    try:
        rows = [json.loads(line) for line in labelled.read_text(encoding="utf-8").splitlines() if line.strip()]
        rows = select_model(rows, model)
        fit = labelled_half(rows, "fit")
        low, high = fit_band([r["similarity"] for r in fit], [r["label"] for r in fit])
    except (KeyError, ValueError, TypeError, AttributeError) as error:  # bad JSON, rows that are not objects
        reason = f"{type(error).__name__}: {error}"
        raise ScotInputError(f"{labelled}: not a labelled triplet set ({reason})") from error
    config = FilterConfig(low=round(low, 2), high=round(high, 2), prompt=prompt)
    typer.echo(f"band fitted on the fit half ({len(fit)} rows): {config.low:.2f}-{config.high:.2f}")
    typer.echo(f"report half ({len(rows) - len(fit)} rows):")
    typer.echo(labelled_report(score_labelled(rows, config, half="report")))
