"""``scot run SPEC``: the stages of a spec in order, each skipped when already complete.

Each stage reads the previous stage's directory under the spec's output folder and
writes its own; a stage is complete when its manifest matches the current inputs and
options, so a re-run (or a run after ``kill -9``) does only what is left.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scot_data.captions.ingest import ingest_captions
from scot_data.llm.embedded import llm_endpoint
from scot_data.spec import PipelineSpec
from scot_data.triplets.generate import generate_triplets, stage_complete

STAGE_ORDER = ("captions", "triplets", "encoder", "train", "evaluate")


@dataclass
class StageResult:
    """What happened to one stage of a run."""

    stage: str
    status: str
    seconds: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)


def stage_dir(spec: PipelineSpec, stage: str) -> Path:
    """The output folder of ``stage`` for this spec."""
    return spec.out / stage


def _run_captions(spec: PipelineSpec, show_progress: bool) -> dict[str, Any]:
    return asdict(ingest_captions(spec.captions, stage_dir(spec, "captions"), show_progress=show_progress))


def _run_triplets(spec: PipelineSpec, show_progress: bool) -> dict[str, Any]:
    """The triplet stage; its embedded LLM server is started only when there is work."""
    cfg, captions, out = spec.triplets, stage_dir(spec, "captions"), stage_dir(spec, "triplets")
    assert cfg is not None
    if stage_complete(cfg, captions, out):
        return asdict(generate_triplets(cfg, captions, out, show_progress=show_progress))
    with llm_endpoint(cfg, log_file=spec.out / "logs" / "vllm.log") as live:
        return asdict(generate_triplets(live, captions, out, show_progress=show_progress))


# Stages whose implementation has landed. A configured stage missing here is reported as
# pending: the spec is validated, nothing is pretended.
RUNNERS: dict[str, Callable[[PipelineSpec, bool], dict[str, Any]]] = {
    "captions": _run_captions,
    "triplets": _run_triplets,
}


def run_pipeline(spec: PipelineSpec, show_progress: bool = True) -> list[StageResult]:
    """Run every configured stage in order and report each one."""
    results = []
    for stage in STAGE_ORDER:
        if getattr(spec, stage) is None:
            continue
        runner = RUNNERS.get(stage)
        if runner is None:
            results.append(StageResult(stage, "pending: not implemented in this version"))
            continue
        started = time.perf_counter()
        summary = runner(spec, show_progress)
        status = "skipped (complete)" if summary.get("skipped") else "done"
        results.append(StageResult(stage, status, round(time.perf_counter() - started, 2), summary))
    return results
