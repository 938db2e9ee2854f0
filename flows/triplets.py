"""The triplet stage as a Prefect flow: one cached, retried task per batch of captions.

The cache policy is the task's inputs plus "its part is still on disk": a second run over
the same batches makes no LLM calls and starts no task, while a part deleted by hand is
made again instead of being trusted to a cache entry. A batch whose requests all failed
(a server restart, say) raises and Prefect retries it.

The batch tasks can run on Dask worker processes (``flows.runners.on_runner``); the
watch flow is served on an interval by ``python -m flows.serve``.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import INPUTS, CacheKeyFnPolicy
from prefect.task_runners import ThreadPoolTaskRunner

from flows.runners import RunnerKind, on_runner
from scot_data import stages
from scot_data.manifest import read_manifest
from scot_data.outdir import stage_folder
from scot_data.triplets.config import TripletsConfig
from scot_data.triplets.generate import (
    SUBFOLDERS,
    Batch,
    TripletSummary,
    finish,
    generate_triplets,
    make_run,
    prepare,
    run_batch,
)
from scot_data.triplets.records import STAGE, CaptionIn

BATCH_TASKS_IN_FLIGHT = 4


def _part_on_disk(_context: Any, parameters: dict[str, Any]) -> str:
    """A constant key while the part exists; a fresh one (a cache miss) once it is gone."""
    batch = Batch(parameters["key"], (), Path(parameters["parts_dir"]))
    return "part-on-disk" if batch.done() else f"part-missing-{time.time_ns()}"


@task(
    name="triplet-batch",
    retries=3,
    retry_delay_seconds=[5, 30, 120],
    cache_policy=INPUTS + CacheKeyFnPolicy(cache_key_fn=_part_on_disk),
    persist_result=True,
)
def batch_task(config: dict[str, Any], parts_dir: str, key: str, captions: list[dict[str, str]]) -> dict[str, Any]:
    """Answer one batch and write its part (the library skips a part already on disk)."""
    run = make_run(TripletsConfig.model_validate(config))
    batch = Batch(key, tuple(CaptionIn(**c) for c in captions), Path(parts_dir))
    return asdict(run_batch(run, batch))


@flow(name="scot-triplets", task_runner=ThreadPoolTaskRunner(max_workers=BATCH_TASKS_IN_FLIGHT))
def triplets_flow(config: dict[str, Any], captions_dir: str, out_dir: str) -> dict[str, Any]:
    """Generate triplets for a caption directory (see ``scot triplets generate``)."""
    cfg = TripletsConfig.model_validate(config)
    if not cfg.backend_entry.llm:  # parts made locally: no batch tasks to fan out
        return asdict(generate_triplets(cfg, captions_dir, out_dir, show_progress=False))
    with stage_folder(out_dir, STAGE, SUBFOLDERS):
        return _llm_batches(cfg, config, captions_dir, out_dir)


def _llm_batches(
    cfg: TripletsConfig, config: dict[str, Any], captions_dir: str, out_dir: str
) -> dict[str, Any]:
    """The LLM batches as tasks, inside the flow's hold on ``out_dir``."""
    logger = get_run_logger()
    prepared = prepare(cfg, captions_dir, out_dir)
    if isinstance(prepared, TripletSummary):
        logger.info("triplets: already complete in %s", out_dir)
        return asdict(prepared)
    batches = prepared.batches
    logger.info("triplets: %d batches, %d left", len(batches), len(prepared.todo))
    futures = [
        batch_task.submit(config, str(b.parts_dir), b.key, [asdict(c) for c in b.captions]) for b in batches
    ]
    for done, future in enumerate(futures, start=1):
        future.result()
        if done % 10 == 0 or done == len(futures):
            logger.info("triplets: %d/%d batches", done, len(futures))
    summary = finish(prepared)
    logger.info("triplets: %d accepted, %d rejected %s", summary.triplets, summary.rejects, summary.reasons)
    return asdict(summary)


@flow(name="scot-triplets-watch")
def triplets_watch_flow(
    captions_root: str,
    out_root: str,
    config: dict[str, Any],
    task_runner: RunnerKind = "threads",
    dask_workers: int = 2,
    dask_address: str | None = None,
) -> list[str]:
    """Generate triplets for every finished caption directory that has no triplets yet.

    One directory's failed run does not hold up the others: the watch run fails at the
    end, and the next run retries it.
    """
    run = on_runner(triplets_flow, task_runner, dask_workers, dask_address)
    done, failed = [], []
    for manifest in sorted(Path(captions_root).glob("**/manifest.json")):
        captions_dir = manifest.parent
        if (read_manifest(captions_dir) or {}).get("stage") != stages.CAPTIONS:
            continue
        out = Path(out_root) / captions_dir.relative_to(captions_root)
        if read_manifest(out) is None:
            state = run(config, str(captions_dir), str(out), return_state=True)
            (failed if state.is_failed() or state.is_crashed() else done).append(str(out))
    if failed:
        raise RuntimeError(f"triplets watch: {len(failed)} directories failed (retried next run): {failed}")
    return done
