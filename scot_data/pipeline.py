"""``scot run SPEC``: the stages of a spec in order, each skipped when already complete.

Each stage reads earlier stages' directories under the spec's output folder and writes its
own; a stage is complete when its manifest matches the current inputs and options, so a
re-run (or a run after ``kill -9``) does only what is left.

What a stage reads follows from the sections a spec has. With a ``scenes`` section the run
trains on scenes: the triplet stage rewrites the scene captions, and embed and train read
the scene captions (one caption table holds every reference image of the training set).
Training triplets are the mix when there is one, else the triplet stage's, else the scenes'
template edits. The lit heads are fitted on the objects and the scenes, and embed takes the
fit's image-tower features instead of running the tower again (one pass per image).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import rich

from scot_data import stages
from scot_data.captions.ingest import ingest_captions
from scot_data.embed.stage import embed_stage
from scot_data.errors import ScotInputError
from scot_data.fit_lit.config import FEATURES_FILE, FitLitConfig
from scot_data.fit_lit.features import image_features_for
from scot_data.fit_lit.stage import fit_lit_from_captions
from scot_data.llm.embedded import llm_endpoint
from scot_data.manifest import read_manifest
from scot_data.memory import release_freed_memory
from scot_data.mix.stage import mix_triplets
from scot_data.scenes.stage import build_scenes
from scot_data.spec import PipelineSpec
from scot_data.train.stage import train_combiner
from scot_data.triplets.generate import generate_triplets, stage_complete

STAGE_ORDER = (stages.CAPTIONS, stages.SCENES, stages.TRIPLETS, stages.MIX, stages.EMBED, stages.TRAIN,
               stages.EVALUATE)  # fmt: skip
COUNT_KEYS = ("rows", "images", "images_from_tower_features", "scenes", "captions", "triplets", "rejects",
              "duplicates", "texts", "steps", "val_recall_at_1")  # fmt: skip


@dataclass
class StageResult:
    """What happened to one stage of a run."""

    stage: str
    status: str
    seconds: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, Any]:
        """The few figures of the summary worth a glance (the run table shows only these)."""
        return {key: value for key, value in self.summary.items() if key in COUNT_KEYS}


class PipelineObserver(Protocol):
    """What watches a run stage by stage (``scot run``'s live view).

    ``live`` says the observer draws a live display on rich's global console while the run
    lasts: the stages must then draw their own bars on that console, where they nest.
    """

    live: bool

    def stage_started(self, stage: str) -> None: ...

    def stage_finished(self, result: StageResult) -> None: ...

    def stage_failed(self, stage: str, seconds: float, error: BaseException) -> None: ...


# Ambient rather than a parameter: the Prefect engine runs the stage loop inside a flow,
# and a flow's parameters must be JSON for the API, which a live display is not.
_OBSERVER: ContextVar[PipelineObserver | None] = ContextVar("scot_pipeline_observer", default=None)


@contextmanager
def observed_by(observer: PipelineObserver | None) -> Iterator[None]:
    """Report every stage run in this context (by either engine) to ``observer``."""
    token = _OBSERVER.set(observer)
    try:
        yield
    finally:
        _OBSERVER.reset(token)


def _shares_live_display() -> bool:
    observer = _OBSERVER.get()
    return observer is not None and observer.live


def stage_dir(spec: PipelineSpec, stage: str) -> Path:
    """The output folder of ``stage`` for this spec."""
    return spec.out / stage


def training_captions(spec: PipelineSpec) -> Path:
    """The caption table the training set's reference images come from."""
    if spec.scenes is not None:
        return stage_dir(spec, stages.SCENES) / stages.CAPTIONS
    return stage_dir(spec, stages.CAPTIONS)


def triplet_tables(spec: PipelineSpec) -> dict[str, Path]:
    """The run's triplet tables by the stage that writes them (the mix's possible sources)."""
    tables = {}
    if spec.scenes is not None:
        tables[stages.SCENES] = stage_dir(spec, stages.SCENES) / stages.TRIPLETS
    if spec.triplets is not None:
        tables[stages.TRIPLETS] = stage_dir(spec, stages.TRIPLETS)
    return tables


def training_triplets(spec: PipelineSpec) -> Path | None:
    """The triplets the Combiner trains on: the mix, else the triplet stage's, else the scenes'."""
    if spec.mix is not None:
        return stage_dir(spec, stages.MIX)
    tables = triplet_tables(spec)
    return tables.get(stages.TRIPLETS, tables.get(stages.SCENES))


def _run_captions(spec: PipelineSpec, show_progress: bool) -> dict[str, Any]:
    out = stage_dir(spec, stages.CAPTIONS)
    return asdict(ingest_captions(spec.captions, out, show_progress=show_progress))


def _run_scenes(spec: PipelineSpec, show_progress: bool) -> dict[str, Any]:
    """Training objects composed into scenes: ``<out>/scenes/captions`` and ``/triplets``."""
    summary = build_scenes(stage_dir(spec, stages.CAPTIONS), stage_dir(spec, stages.SCENES), spec.scenes,
                           show_progress=show_progress)  # fmt: skip
    return asdict(summary)


def _run_mix(spec: PipelineSpec, show_progress: bool) -> dict[str, Any]:
    """The weighted sample of the run's triplet tables that the Combiner trains on."""
    assert spec.mix is not None
    tables = triplet_tables(spec)
    sources = [(tables[name], weight) for name, weight in spec.mix.sources.items()]
    summary = mix_triplets(sources, stage_dir(spec, stages.MIX), total=spec.mix.total, seed=spec.mix.seed)
    return asdict(summary)


def _run_triplets(spec: PipelineSpec, show_progress: bool) -> dict[str, Any]:
    """The triplet stage; its embedded LLM server is started only when there is work."""
    cfg, captions, out = spec.triplets, training_captions(spec), stage_dir(spec, stages.TRIPLETS)
    assert cfg is not None
    if stage_complete(cfg, captions, out):
        return asdict(generate_triplets(cfg, captions, out, show_progress=show_progress))
    with llm_endpoint(cfg, log_file=spec.out / "logs" / "vllm.log") as live:
        return asdict(generate_triplets(live, captions, out, show_progress=show_progress))


def _run_embed(spec: PipelineSpec, show_progress: bool) -> dict[str, Any]:
    """The training captions + triplets -> ``<out>/embed``, after fitting the lit heads on
    the run's objects (and scenes) into ``<out>/fit-lit`` when the section asks for it; the
    fit's image-tower features then stand in for a second pass of the tower."""
    cfg = spec.embed
    assert cfg is not None
    features = None
    if cfg.fit_lit:
        # fit_lit draws on stderr by default, which would tear a live view of the whole
        # run: under one, its bars go to the view's console, where they nest.
        console = rich.get_console() if _shares_live_display() else None
        captions = [stage_dir(spec, stages.CAPTIONS)]
        if spec.scenes is not None:
            captions.append(training_captions(spec))
        fit_config = FitLitConfig(encoder=cfg.encoder.backend)
        fit = fit_lit_from_captions(captions, stage_dir(spec, stages.FIT_LIT), fit_config,
                                    show_progress=show_progress, console=console)  # fmt: skip
        cfg = cfg.model_copy(update={"encoder": cfg.encoder.model_copy(update={"weights": fit.heads})})
        features = partial(image_features_for, stage_dir(spec, stages.FIT_LIT) / FEATURES_FILE)
    summary = embed_stage(cfg, training_captions(spec), training_triplets(spec),
                          stage_dir(spec, stages.EMBED), show_progress=show_progress,
                          tower_features=features)  # fmt: skip
    return asdict(summary)


def _run_train(spec: PipelineSpec, show_progress: bool) -> dict[str, Any]:
    """The Combiner, trained from the embedding cache and the triplets."""
    assert spec.train is not None
    triplets = training_triplets(spec)
    if spec.embed is None or triplets is None:
        raise ScotInputError("the train stage needs the spec's embed section and triplets (or scenes)")
    summary = train_combiner(spec.train, stage_dir(spec, stages.EMBED), triplets,
                             stage_dir(spec, stages.TRAIN), show_progress=show_progress)  # fmt: skip
    return asdict(summary)


def _run_evaluate(spec: PipelineSpec, show_progress: bool) -> dict[str, Any]:
    """Each benchmark of the spec (built first when asked) on each of its splits, with the
    run's Combiner when it has one; results.json, queries.parquet and report.html per split
    under ``<out>/evaluate/<name>-<split>``. The summary keys tables by "<part> <split>"."""
    from scot_data.evaluate.evaluate import EvalConfig, evaluate
    from scot_data.evaluate.gallery import encoder_cache
    from scot_data.evaluate.registry import get_benchmark
    from scot_data.evaluate.report import write_report

    assert spec.evaluate is not None
    summary: dict[str, Any] = {"metrics": {}, "deltas": {}, "reports": []}
    if not spec.evaluate.benchmarks:
        return summary
    combiner = stage_dir(spec, stages.TRAIN) / "combiner.safetensors" if spec.train is not None else None
    embeddings = read_manifest(stage_dir(spec, stages.EMBED))
    if embeddings is None:
        raise ScotInputError(f"{stage_dir(spec, stages.EMBED)}: the evaluate stage needs the embed stage's output")
    encoder = embeddings["encoder"]["spec"]
    cache = encoder_cache(stage_dir(spec, stages.EVALUATE) / "cache", encoder)
    for bench in spec.evaluate.benchmarks:
        entry = get_benchmark(bench.name)
        if bench.build and entry.build is not None:
            entry.build(stage_dir(spec, stages.CAPTIONS), bench.data, bench.queries_per_kind, show_progress)
        for split in bench.splits:
            out = stage_dir(spec, stages.EVALUATE) / f"{bench.name}-{split}"
            cfg = EvalConfig(benchmark=bench.name, data=bench.data, split=split, combiner=combiner, encoder=encoder,
                             device=spec.embed.device if spec.embed else "auto")  # fmt: skip
            results = evaluate(cfg, out, cache, show_progress=show_progress)
            summary["metrics"].update({f"{part} {split}": m for part, m in results["metrics"].items()})
            summary["deltas"].update({f"{part} {split}": d for part, d in results["deltas"].items()})
            summary["reports"].append(str(write_report(results, out)))
    return summary


RUNNERS: dict[str, Callable[[PipelineSpec, bool], dict[str, Any]]] = {
    stages.CAPTIONS: _run_captions,
    stages.SCENES: _run_scenes,
    stages.TRIPLETS: _run_triplets,
    stages.MIX: _run_mix,
    stages.EMBED: _run_embed,
    stages.TRAIN: _run_train,
    stages.EVALUATE: _run_evaluate,
}


def configured_stages(spec: PipelineSpec) -> list[str]:
    """The stages this spec asks for, in run order."""
    return [stage for stage in STAGE_ORDER if getattr(spec, stage) is not None]


def run_stages(spec: PipelineSpec, run_stage: Callable[[str], dict[str, Any]]) -> list[StageResult]:
    """Run each configured stage through ``run_stage`` (in process, or a Prefect subflow),
    timing it and reporting it to the observer in context. What a stage freed is handed back
    before the next starts (``memory``): they share this process."""
    observer = _OBSERVER.get()
    results = []
    for stage in configured_stages(spec):
        if results:
            release_freed_memory()
        if observer is not None:
            observer.stage_started(stage)
        started = time.perf_counter()
        try:
            summary = run_stage(stage)
        except BaseException as error:
            if observer is not None:
                observer.stage_failed(stage, time.perf_counter() - started, error)
            raise
        status = "skipped (complete)" if summary.get("skipped") else "done"
        results.append(StageResult(stage, status, round(time.perf_counter() - started, 2), summary))
        if observer is not None:
            observer.stage_finished(results[-1])
    return results


def run_pipeline(spec: PipelineSpec, show_progress: bool = True) -> list[StageResult]:
    """Run every configured stage in order, in this process, and report each one."""
    return run_stages(spec, lambda stage: RUNNERS[stage](spec, show_progress))


@contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP (a closed terminal) into KeyboardInterrupt while a run lasts,
    so they unwind it like Ctrl-C. The embedded vLLM server runs in its own session and
    would outlive a plain signal death, holding its port; unwinding runs the ``finally``
    that stops it (and the exit hooks that stop Prefect's temporary server)."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {signum: signal.signal(signum, interrupt) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
