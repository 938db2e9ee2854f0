"""The ``scot`` command line: one sub-command per stage, plus ``run`` for a whole spec.

Input problems (missing paths, unknown formats, invalid specs) end with exit code 2 and
one line that names the file, row or key; nothing already written is lost.
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict
from enum import Enum
from functools import wraps
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from pydantic import TypeAdapter, ValidationError
from rich.console import Console
from rich.table import Table

from scot_data.captions.config import FORMATS, CaptionsConfig
from scot_data.captions.ingest import ingest_captions
from scot_data.combiner.train import TrainConfig, train_combiner
from scot_data.embed.config import EmbedConfig
from scot_data.embed.stage import embed_stage
from scot_data.errors import ScotInputError
from scot_data.evaluate.registry import benchmark_names
from scot_data.evaluate.stats import interval_text
from scot_data.llm.models import resolve_model
from scot_data.llm.server import (
    DEFAULT_VENV,
    ServerError,
    VLLMServerConfig,
    list_servers,
    serve,
    stop_servers,
)
from scot_data.manifest import finished_manifest
from scot_data.pipeline import StageResult, configured_stages, observed_by, run_pipeline, signals_as_interrupt
from scot_data.run_view import PipelineView, summary_table
from scot_data.spec import PipelineSpec, load_spec
from scot_data.triplets.config import DEFAULT_PROMPT, EmbeddedServer, TripletsConfig
from scot_data.triplets.filters import FilterConfig, filter_triplets
from scot_data.triplets.generate import StageIncomplete, generate_triplets
from scot_data.triplets.mix import mix_triplets, parse_source
from scot_data.triplets.prompts import load_prompt
from scot_data.verify import publish, verify

app = typer.Typer(help="scot: composed image retrieval from image-caption collections.", no_args_is_help=True,
                  pretty_exceptions_enable=False, rich_markup_mode=None)
captions_app = typer.Typer(help="The caption stage.", no_args_is_help=True)
triplets_app = typer.Typer(help="The triplet stage.", no_args_is_help=True)
llm_app = typer.Typer(help="The embedded vLLM server.", no_args_is_help=True)
encoder_app = typer.Typer(help="Frozen encoders.", no_args_is_help=True)
spec_app = typer.Typer(help="Pipeline specs.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks this project builds.", no_args_is_help=True)
for name, sub_app in (("captions", captions_app), ("triplets", triplets_app), ("llm", llm_app),
                      ("encoder", encoder_app), ("spec", spec_app), ("bench", bench_app)):  # fmt: skip
    app.add_typer(sub_app, name=name)

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
        field = ".".join(location)
        flag = (flags or {}).get(field, f"--{field.replace('_', '-')}")
        raise ScotInputError(f"{flag}: {message}") from exc


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


def _captions_config(values: dict[str, Any]) -> CaptionsConfig:
    fmt = values.get("format")
    if fmt not in FORMATS:
        raise ScotInputError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    return _validated(TypeAdapter(CaptionsConfig), values)


def print_summary(title: str, summary: dict[str, Any]) -> None:
    """A two-column table of a stage summary."""
    table = Table(title=title, show_header=False)
    for key, value in summary.items():
        shown = json.dumps(value) if isinstance(value, dict) else str(value)
        table.add_row(key, shown)
    console.print(table)


@captions_app.command("ingest")
@reports_input_errors
def captions_ingest(
    format: str = typer.Option(..., "--format", help="coco | wds | table | openclipart"),
    input: str = typer.Option(..., "--input", help="captions file, tar pattern, table, or SVG folder"),
    out: Path = typer.Option(..., "--out", help="output directory"),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    images: Optional[Path] = typer.Option(None, "--images", help="image folder (coco, table) or render cache"),
    limit: Optional[int] = typer.Option(None, "--limit", help="keep a seeded sample of N captions"),
    seed: int = typer.Option(0, "--seed"),
    workers: int = typer.Option(2, "--workers", help="image-checking processes"),
    part_size: int = typer.Option(512, "--part-size", help="captions per resumable part"),
    holdout: float = typer.Option(0.0, "--holdout", help="share of images kept out for a benchmark"),
    image_column: Optional[str] = typer.Option(None, "--image-column", help="table format only"),
    caption_column: Optional[str] = typer.Option(None, "--caption-column", help="table format only"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Read an image-caption collection into captions.parquet + rejects.parquet + manifest.json."""
    config = _captions_config(
        {
            "format": format,
            "input": input,
            "images": images,
            "limit": limit,
            "seed": seed,
            "workers": workers,
            "part_size": part_size,
            "holdout": holdout,
            "image_column": image_column,
            "caption_column": caption_column,
        }
    )
    summary = ingest_captions(config, _out_folder(out), show_progress=progress, force=force)
    print_summary(f"captions -> {out}", summary.__dict__)


@captions_app.command("scenes")
@reports_input_errors
def captions_scenes(
    captions: Path = typer.Option(..., "--captions", help="a finished clip-art caption directory (training objects)"),
    out: Path = typer.Option(..., "--out", help="writes OUT/captions and OUT/triplets"),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    count: int = typer.Option(4000, "--count", help="reference scenes"),
    edits_per_scene: int = typer.Option(1, "--edits-per-scene", help="template triplets per scene"),
    render_targets: bool = typer.Option(
        False, "--render-targets", help="render target scenes too (a control)"
    ),
    seed: int = typer.Option(0, "--seed"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Compose training clip-art objects into captioned scenes, with template edits of each."""
    from scot_data.captions.scenes import ScenesConfig, build_scenes

    config = _validated(
        TypeAdapter(ScenesConfig),
        {"count": count, "edits_per_scene": edits_per_scene, "render_targets": render_targets, "seed": seed},
    )
    finished_manifest(captions, "captions", "--captions")
    summary = build_scenes(captions, _out_folder(out), config, show_progress=progress, force=force)
    print_summary(f"scenes -> {out}", asdict(summary))


@triplets_app.command("generate")
@reports_input_errors
def triplets_generate(
    captions: Path = typer.Option(..., "--captions", help="a finished caption-stage directory"),
    out: Path = typer.Option(..., "--out", help="output directory"),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    endpoint: Optional[list[str]] = typer.Option(None, "--endpoint", help="OpenAI-compatible base URL (repeat)"),
    model: Optional[str] = typer.Option(None, "--model", help="served model name"),
    backend: str = typer.Option("llm", "--backend", help="llm | template"),
    concurrency: Optional[int] = typer.Option(None, "--concurrency", help="requests in flight"),
    limit: Optional[int] = typer.Option(None, "--limit", help="a seeded sample of N captions"),
    seed: int = typer.Option(0, "--seed"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="captions per resumable part"),
    prompt: Path = typer.Option(DEFAULT_PROMPT, "--prompt", help="prompt template YAML"),
    response_format: Optional[str] = typer.Option(None, "--response-format", help="json_schema | json_object"),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="seconds per request"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Rewrite captions into (modification, modified caption) triplets with an LLM or templates."""
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
    summary = generate_triplets(config, captions, _out_folder(out), show_progress=progress, force=force)
    print_summary(f"triplets -> {out}", summary.__dict__)


@triplets_app.command("filter")
@reports_input_errors
def triplets_filter(
    triplets: Path = typer.Option(..., "--triplets", help="a finished triplet-stage directory"),
    out: Path = typer.Option(..., "--out", help="output directory (a finished triplet stage)"),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    embeddings: Optional[Path] = typer.Option(None, "--embeddings", help="a finished embedding cache"),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="encodes texts the cache lacks"),
    edit_words: bool = typer.Option(True, "--edit-words/--no-edit-words"),
    similarity_band: bool = typer.Option(True, "--similarity-band/--no-similarity-band"),
    few_shot_copy: bool = typer.Option(True, "--few-shot-copy/--no-few-shot-copy"),
    repetition: bool = typer.Option(True, "--repetition/--no-repetition"),
    low: Optional[float] = typer.Option(None, "--low", help="lowest caption/modified-caption cosine kept"),
    high: Optional[float] = typer.Option(None, "--high", help="highest caption/modified-caption cosine kept"),
    prompt: Path = typer.Option(DEFAULT_PROMPT, "--prompt", help="the prompt whose examples must not be copied"),
) -> None:
    """Drop triplets that copy the prompt, loop, do not make the edit they name, or change too
    little or too much; each filter's drop count is in the summary."""
    config = _validated(
        TypeAdapter(FilterConfig),
        {"edit_words": edit_words, "similarity_band": similarity_band, "few_shot_copy": few_shot_copy,
         "repetition": repetition, "low": low, "high": high, "prompt": prompt},
    )  # fmt: skip
    if config.few_shot_copy:
        load_prompt(config.prompt)  # a missing or broken prompt is named before any work
    summary = filter_triplets(triplets, _out_folder(out), config, embeddings_dir=embeddings, encoder=encoder,
                              force=force)  # fmt: skip
    print_summary(f"filtered triplets -> {out}", summary.__dict__)


@triplets_app.command("score-labelled")
@reports_input_errors
def triplets_score_labelled(
    labelled: Path = typer.Option(..., "--labelled", help="JSONL: triplet_id, caption, modification, "
                                  "modified_caption, label (good|bad), similarity"),
    prompt: Path = typer.Option(DEFAULT_PROMPT, "--prompt", help="the prompt whose examples must not be copied"),
) -> None:
    """Fit the similarity band on one half of a labelled set and print each filter's precision and
    recall on the other half (re-fit it for another LLM or encoder)."""
    from scot_data.triplets.filters import fit_band, labelled_half, labelled_report, score_labelled

    if not labelled.is_file():
        raise ScotInputError(f"{labelled}: no such labelled file")
    try:
        rows = [json.loads(line) for line in labelled.read_text(encoding="utf-8").splitlines() if line.strip()]
        fit = labelled_half(rows, "fit")
        low, high = fit_band([r["similarity"] for r in fit], [r["label"] for r in fit])
    except (KeyError, ValueError, TypeError, AttributeError) as error:  # bad JSON, rows that are not objects
        reason = f"{type(error).__name__}: {error}"
        raise ScotInputError(f"{labelled}: not a labelled triplet set ({reason})") from error
    config = FilterConfig(low=round(low, 2), high=round(high, 2), prompt=prompt)
    typer.echo(f"band fitted on the fit half ({len(fit)} rows): {config.low:.2f}-{config.high:.2f}")
    typer.echo(f"report half ({len(rows) - len(fit)} rows):")
    typer.echo(labelled_report(score_labelled(rows, config, half="report")))


@triplets_app.command("mix")
@reports_input_errors
def triplets_mix(
    source: list[str] = typer.Option(..., "--source", help="DIR:WEIGHT, a finished triplet directory (repeat)"),
    out: Path = typer.Option(..., "--out", help="output directory (a finished triplet stage)"),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    total: Optional[int] = typer.Option(None, "--total", help="triplets in the mix (default: all the weights allow)"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """A seeded, weighted sample of several triplet directories (e.g. LLM 0.3 + template 0.7)."""
    sources = [parse_source(s) for s in source]
    summary = mix_triplets(sources, _out_folder(out), total=total, seed=seed, force=force)
    print_summary(f"mixed triplets -> {out}", summary.__dict__)


@llm_app.command("serve")
@reports_input_errors
def llm_serve(
    model: str = typer.Option("smollm2-135m-instruct", "--model", help="built-in name, local HF dir or hub id"),
    port: int = typer.Option(8000, "--port"),
    served_name: Optional[str] = typer.Option(None, "--served-name", help="default: --model"),
    venv: Path = typer.Option(DEFAULT_VENV, "--venv", help="the vLLM environment"),
    eager: bool = typer.Option(True, "--eager/--compile", help="skip torch.compile (3x faster start on CPU)"),
    kv_cache_gib: float = typer.Option(2.0, "--kv-cache-gib"),
    max_model_len: int = typer.Option(1024, "--max-model-len"),
    timeout: float = typer.Option(900.0, "--timeout", help="seconds to wait for /health"),
) -> None:
    """Start the vLLM OpenAI server on 127.0.0.1 in the background and wait until healthy."""
    _validated(TypeAdapter(EmbeddedServer),
               {"port": port, "kv_cache_gib": kv_cache_gib, "max_model_len": max_model_len})  # fmt: skip
    if not timeout > 0:
        raise ScotInputError(f"--timeout {timeout}: must be above 0 seconds")
    python = venv / "bin" / "python"
    if not (python.is_file() and os.access(python, os.X_OK)):
        raise ScotInputError(f"--venv {venv}: no runnable bin/python there (run "
                             "`bash scripts/setup_vllm_env.sh` or pass the vLLM environment)")
    local = Path(model).expanduser()
    if local.exists() or model.startswith(("/", ".", "~")):  # a path, not a built-in name or a hub id
        if not (local / "config.json").is_file():
            raise ScotInputError(f"--model {model}: not a Hugging Face model folder (no config.json)")
    config = VLLMServerConfig(
        model=resolve_model(model), served_model_name=served_name or model, port=port, venv=venv,
        enforce_eager=eager, kv_cache_gib=kv_cache_gib, max_model_len=max_model_len,
    )  # fmt: skip
    server, waited = serve(config, timeout)
    typer.echo(f"serving {config.name} at {config.base_url} (pid {server.process.pid if server.process else '?'}, "
               f"healthy after {waited:.0f} s, log {server.log_file}); stop with: scot llm stop --port {port}")


@llm_app.command("stop")
@reports_input_errors
def llm_stop(port: Optional[int] = typer.Option(None, "--port", help="default: every server scot started")) -> None:
    """Stop servers started by ``scot llm serve`` (found through their state files)."""
    if port is not None:
        _validated(TypeAdapter(EmbeddedServer), {"port": port})
    stopped = stop_servers(port=port)
    typer.echo(f"stopped {len(stopped)} server(s)" + "".join(f"\n  port {s.port}: {s.model}" for s in stopped))


@llm_app.command("status")
def llm_status() -> None:
    """List the servers scot started and whether they are alive."""
    for path, state in list_servers():
        typer.echo(f"port {state.port}: {state.model} pid {state.pid} {'alive' if state.is_alive() else 'dead'} ({path})")


@encoder_app.command("fit-lit")
@reports_input_errors
def encoder_fit_lit(
    captions: list[Path] = typer.Option(
        ..., "--captions", help="a finished caption-stage directory or a Parquet table (repeat: fit on all)"
    ),
    out: Path = typer.Option(..., "--out", help="output directory for heads, model card and manifest"),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    seed: int = typer.Option(0, "--seed"),
    held_out_fraction: float = typer.Option(0.2, "--held-out-fraction"),
    max_steps: int = typer.Option(3000, "--max-steps"),
    workers: int = typer.Option(1, "--workers", help="image-decoding DataLoader workers"),
    device: str = typer.Option("auto", "--device"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Fit the lit-mini projection heads on clip-art captions; report held-out recall."""
    from scot_data.encoders.fit_lit import FitLitConfig, fit_lit_from_captions

    if not 0 < held_out_fraction < 1:
        raise ScotInputError(f"--held-out-fraction {held_out_fraction}: must be between 0 and 1")
    _at_least(max_steps, 1, "--max-steps")
    _at_least(workers, 0, "--workers")
    config = FitLitConfig(seed=seed, held_out_fraction=held_out_fraction, max_steps=max_steps,
                          num_workers=workers, device=_checked_device(device))  # fmt: skip
    fit_lit_from_captions(captions, _out_folder(out), config, show_progress=progress, force=force)


@encoder_app.command("recall")
@reports_input_errors
def encoder_recall(
    table: Path = typer.Option(..., "--captions", help="a caption table (captions.parquet, holdout.parquet)"),
    encoder: list[str] = typer.Option(..., "--encoder", help="encoder spec (repeat to compare)"),
    limit: Optional[int] = typer.Option(None, "--limit", help="first N rows only"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Text -> image Recall@1/5/10 of each encoder on a caption table (beside chance)."""
    from scot_data.encoders.recall import text_to_image_recall

    shown = Table(title=f"text -> image recall on {table}")
    for column in ("encoder", "captions", "images", "R@1", "R@5", "R@10", "chance R@10"):
        shown.add_column(column)
    for spec in encoder:
        report = text_to_image_recall(table, spec, limit, show_progress=progress)
        shown.add_row(spec, str(report.captions), str(report.images), *(f"{v:.3f}" for v in report.recall.values()),
                      f"{report.chance['R@10']:.3f}")  # fmt: skip
    console.print(shown)


@encoder_app.command("info")
@reports_input_errors
def encoder_info(spec: str = typer.Argument(..., help="lit-mini[@heads], open_clip:NAME@TAG|CKPT, hf:DIR")) -> None:
    """Build an encoder and print its identity (what every embedding manifest records)."""
    from scot_data.encoders import create_encoder

    typer.echo(json.dumps(create_encoder(spec).identity.as_dict(), indent=2))


@app.command("embed")
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
    cfg = _validated(TypeAdapter(EmbedConfig), {
        "encoder": encoder, "device": _checked_device(device), "image_batch_size": image_batch_size,
        "text_batch_size": text_batch_size, "num_workers": workers, "shard_max_rows": shard_max_rows,
        "shard_max_bytes": shard_max_bytes, "block_rows": block_rows, "seed": seed,
    }, flags={"num_workers": "--workers"})  # fmt: skip
    for source in reuse or ():
        _in_folder(source, "--reuse")
    summary = embed_stage(cfg, captions, triplets, _out_folder(out), show_progress=progress,
                          reuse=reuse or (), force=force)  # fmt: skip
    typer.echo(json.dumps(asdict(summary), indent=2))


@app.command("verify")
@reports_input_errors
def verify_command(
    directory: str = typer.Argument(..., help="a stage output directory or fsspec URL"),
) -> None:
    """Check checksums, row counts, dims, NaNs and shards against the manifest; exit 1 on problems."""
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


@app.command("publish")
@reports_input_errors
def publish_command(
    directory: Path = typer.Argument(..., help="a finished stage directory"),
    url: str = typer.Argument(..., help="destination: a path or fsspec URL (s3://bucket/prefix)"),
) -> None:
    """Copy a verified directory to URL (skips files already there, checks each upload, manifest last)."""
    summary = publish(directory, url)
    typer.echo(f"published {directory} -> {url}: {len(summary.uploaded)} uploaded "
               f"({summary.bytes_uploaded} bytes), {len(summary.skipped)} already there")  # fmt: skip


@app.command("train")
@reports_input_errors
def train_command(
    embeddings: Path = typer.Option(..., "--embeddings", help="a finished embedding-cache directory"),
    triplets: Path = typer.Option(..., "--triplets", help="the finished triplet directory it was built from"),
    out: Path = typer.Option(..., "--out", help="output directory (checkpoints, metrics, weights, manifest)"),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    epochs: int = typer.Option(10, "--epochs"),
    batch_size: int = typer.Option(512, "--batch-size"),
    lr: float = typer.Option(2e-4, "--lr"),
    seed: int = typer.Option(0, "--seed"),
    max_triplets: Optional[int] = typer.Option(None, "--max-triplets", help="training-set size ablation"),
    target: str = typer.Option(
        "text", "--target", help="text (T_u) | image (nearest cache image to T_u) | rendered (target_image_id)"
    ),
    hard_negative: bool = typer.Option(True, "--caption-hard-negative/--no-caption-hard-negative"),
    device: str = typer.Option("auto", "--device"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Train the Combiner from cached embeddings (resumes an interrupted run to the same result)."""
    config = _validated(
        TypeAdapter(TrainConfig),
        {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed, "max_triplets": max_triplets,
         "target": target, "device": _checked_device(device),
         "loss": {"caption_hard_negative": hard_negative}},
    )  # fmt: skip
    summary = train_combiner(config, embeddings, triplets, _out_folder(out), show_progress=progress,
                             force=force)  # fmt: skip
    print_summary(f"combiner -> {out}", asdict(summary))


@app.command("eval")
@reports_input_errors
def eval_command(
    benchmark: str = typer.Option(..., "--benchmark", help=" | ".join(benchmark_names())),
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
    results = evaluate(cfg, _out_folder(out), cache, show_progress=progress, force=force)
    print_metrics(results)
    typer.echo(f"report: {write_report(results, out)}")


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


@app.command("ablate")
@reports_input_errors
def ablate_command(
    spec: Path = typer.Argument(..., help="an ablation YAML (pipelines/ablations/*.yaml)"),
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
    results = run_ablation(cfg, _out_folder(out), show_progress=progress, force=force)
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


@app.command("search")
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


@app.command("report")
@reports_input_errors
def report_command(
    results: Path = typer.Argument(..., help="a results.json written by scot eval"),
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
        raise ScotInputError(f"{results}: not a results.json written by scot eval (no benchmark and metrics)")
    typer.echo(f"report: {write_report(loaded, _out_folder(out or results.parent))}")


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
    summary = build_clipart_benchmark(captions, _out_folder(out), cfg, show_progress=progress, force=force)
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
        return lambda: run_pipeline(pipeline, show_progress=progress)
    for key, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(key, value)
    from flows.pipeline import run_spec

    return lambda: run_spec(str(spec), show_progress=progress)


@app.command("run")
@reports_input_errors
def run(
    spec: Path = typer.Argument(..., help="pipelines/<name>.yaml"),
    engine: Engine = typer.Option(Engine.prefect, "--engine",
                                  help="prefect: a flow with a subflow per stage; local: in this process"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Run every stage of a pipeline spec in order, skipping stages already complete."""
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


@spec_app.command("check")
@reports_input_errors
def spec_check(spec: Path = typer.Argument(..., help="pipelines/<name>.yaml")) -> None:
    """Validate a spec and print it with every default filled in."""
    pipeline = load_spec(spec)
    typer.echo(json.dumps(pipeline.model_dump(mode="json"), indent=2))
