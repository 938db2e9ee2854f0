"""The embedding-cache stage as a Prefect flow: image shards and texts as separate tasks.

The flow plans once (which also clears what a killed run left behind), then submits one
task per shard of the images still to do, and one for the texts. Each task plans again in
its own process (cheap once the encoder is loaded, and the encoder is kept per process),
so only paths, a config dict and a row range cross task boundaries: the tasks can run on
Dask worker processes (``--task-runner dask``, see ``flows/runners.py``).

A shard is the images whose first captions row lies in a range the flow fixed up front,
so shards are disjoint even while they run side by side or are retried. Parts are named by
their encoder and ids and written atomically, so parts from different workers land side
by side and ``finish`` merges them by id; a part already on disk is not redone. The
library skips a finished identical run, so the tasks add retries rather than result
caching; ``finish`` writes the WebDataset shards and the manifest last.

Run: ``python -m flows.embed CAPTIONS TRIPLETS OUT [--encoder SPEC] [--image-shards N]
[--task-runner dask --dask-workers N | --dask-address HOST:PORT]``.
"""

from __future__ import annotations

import argparse
import multiprocessing
from dataclasses import asdict, fields
from itertools import pairwise
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task

from flows.runners import RunnerKind, add_runner_arguments, on_runner, runner_options
from scot_data import stages
from scot_data.embed.config import EmbedConfig
from scot_data.embed.layout import STAGE, SUBFOLDERS
from scot_data.embed.stage import (
    EmbedSummary,
    PhaseStats,
    embed_images,
    embed_texts,
    finish,
    prepare,
)
from scot_data.encoders.factory import EncoderSpec
from scot_data.images import ImageItem
from scot_data.manifest import read_manifest
from scot_data.outdir import stage_folder

RowRange = tuple[int, int]


def _task_config(config: dict[str, Any]) -> EmbedConfig:
    """The config, decoding images in-process where DataLoader processes cannot start.

    Dask worker processes are daemonic unless started otherwise (``flows.runners`` starts
    its local ones non-daemonic), and a daemonic process may not have children.
    """
    cfg = EmbedConfig.model_validate(config)
    if cfg.num_workers and multiprocessing.current_process().daemon:
        get_run_logger().warning("daemonic worker process: decoding images in-process (num_workers=0)")
        return cfg.model_copy(update={"num_workers": 0})
    return cfg


def shard_rows(items: list[ImageItem], shards: int) -> list[RowRange]:
    """Up to ``shards`` contiguous, disjoint ``[first, end)`` ranges of captions rows, each
    holding about as many of ``items`` (contiguous rows keep a tar file's images together)."""
    rows = sorted(item.row for item in items)
    if not rows:
        return []
    cuts = [rows[len(rows) * i // shards] for i in range(shards)] + [rows[-1] + 1]
    return [(first, end) for first, end in pairwise(cuts) if first < end]


@task(name="embed-images", task_run_name="embed-images-{rows}", retries=2, retry_delay_seconds=5)
def images_task(
    config: dict[str, Any], captions_dir: str, triplets_dir: str | None, out_dir: str, rows: RowRange
) -> dict[str, Any]:
    """Embed the images not yet in ``out_dir`` whose first captions row is in ``rows``."""
    plan = prepare(_task_config(config), captions_dir, triplets_dir, out_dir)
    if isinstance(plan, EmbedSummary):
        return {}
    first, end = rows
    plan.images_todo = [item for item in plan.images_todo if first <= item.row < end]
    return asdict(embed_images(plan, show_progress=False))


@task(name="embed-texts", retries=2, retry_delay_seconds=5)
def texts_task(
    config: dict[str, Any], captions_dir: str, triplets_dir: str | None, out_dir: str
) -> dict[str, Any]:
    """Embed the texts not yet in ``out_dir``."""
    plan = prepare(EmbedConfig.model_validate(config), captions_dir, triplets_dir, out_dir)
    return {} if isinstance(plan, EmbedSummary) else asdict(embed_texts(plan, show_progress=False))


def merged_stats(shards: list[dict[str, Any]]) -> PhaseStats | None:
    """One phase's stats from its shards': counts add up, the phase took as long as the
    slowest shard (they ran side by side)."""
    ran = [PhaseStats(**s) for s in shards if s]
    if not ran:
        return None
    total = PhaseStats(seconds=max(s.seconds for s in ran))
    for name in (f.name for f in fields(PhaseStats) if f.name != "seconds"):
        setattr(total, name, sum(getattr(s, name) for s in ran))
    return total


@task(name="embed-finish", retries=1)
def finish_task(
    config: dict[str, Any], captions_dir: str, triplets_dir: str | None, out_dir: str,
    images: list[dict[str, Any]], texts: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """Shards, rejects, stats, manifest (last)."""
    plan = prepare(EmbedConfig.model_validate(config), captions_dir, triplets_dir, out_dir)
    if isinstance(plan, EmbedSummary):
        return asdict(plan)
    return asdict(finish(plan, merged_stats(images), merged_stats([texts])))


@flow(name="scot-embed")
def embed_flow(
    config: dict[str, Any], captions_dir: str, triplets_dir: str | None, out_dir: str, image_shards: int = 1
) -> dict[str, Any]:
    """Embed a caption (and triplet) directory into ``out_dir`` (see ``scot embed``), the
    images in up to ``image_shards`` tasks that may run side by side."""
    with stage_folder(out_dir, STAGE, SUBFOLDERS):
        return _sharded_embed(config, captions_dir, triplets_dir, out_dir, image_shards)


def _sharded_embed(
    config: dict[str, Any], captions_dir: str, triplets_dir: str | None, out_dir: str, image_shards: int
) -> dict[str, Any]:
    """The image shards and the texts as tasks, inside the flow's hold on ``out_dir``."""
    logger = get_run_logger()
    plan = prepare(EmbedConfig.model_validate(config), captions_dir, triplets_dir, out_dir)
    if isinstance(plan, EmbedSummary):
        logger.info("embed: already complete in %s", out_dir)
        return asdict(plan)
    ranges = shard_rows(plan.images_todo, max(1, image_shards))
    logger.info("embed: %d images in %d image shards, %d texts to embed", len(plan.images_todo), len(ranges),
                len(plan.texts_todo))  # fmt: skip
    args = (config, captions_dir, triplets_dir, out_dir)
    image_futures = [images_task.submit(*args, rows) for rows in ranges]
    texts_future = texts_task.submit(*args, wait_for=image_futures)
    images = [future.result() for future in image_futures]
    logger.info("embed: images %s", merged_stats(images))
    texts = texts_future.result()
    logger.info("embed: texts %s", texts)
    summary = finish_task(*args, images, texts)
    logger.info(
        "embed: %s images, %s texts, %s rejects %s, %s WebDataset shards", summary["images"], summary["texts"],
        summary["rejects"], summary["reject_reasons"], summary["shards"],
    )  # fmt: skip
    return summary


@flow(name="scot-embed-watch")
def embed_watch_flow(
    captions_root: str,
    triplets_root: str,
    out_root: str,
    config: dict[str, Any],
    image_shards: int = 1,
    task_runner: RunnerKind = "threads",
    dask_workers: int = 2,
    dask_address: str | None = None,
) -> list[str]:
    """Embed every finished triplet directory under ``triplets_root`` that has no embeddings
    yet, with the caption directory at the same relative path under ``captions_root``.

    The layout is the one ``scot-triplets-watch`` writes, so the two watches chain: new
    caption directories -> triplets -> embeddings. A directory whose captions are missing
    is logged and skipped; one whose run fails does not hold up the others (the watch run
    fails at the end, and the next run retries it).
    """
    logger = get_run_logger()
    run = on_runner(embed_flow, task_runner, dask_workers, dask_address)
    done, failed = [], []
    for manifest in sorted(Path(triplets_root).glob("**/manifest.json")):
        triplets_dir = manifest.parent
        if (read_manifest(triplets_dir) or {}).get("stage") != stages.TRIPLETS:
            continue
        relative = triplets_dir.relative_to(triplets_root)
        captions_dir, out = Path(captions_root) / relative, Path(out_root) / relative
        if read_manifest(out) is not None:
            continue
        if (read_manifest(captions_dir) or {}).get("stage") != stages.CAPTIONS:
            logger.warning(
                "embed watch: %s has no finished captions at %s; skipped", triplets_dir, captions_dir
            )
            continue
        state = run(config, str(captions_dir), str(triplets_dir), str(out), image_shards, return_state=True)
        (failed if state.is_failed() or state.is_crashed() else done).append(str(out))
    if failed:
        raise RuntimeError(f"embed watch: {len(failed)} directories failed (retried next run): {failed}")
    return done


def main(argv: list[str] | None = None) -> None:
    """``python -m flows.embed``: one embedding run, optionally sharded over Dask workers."""
    parser = argparse.ArgumentParser(prog="python -m flows.embed", description=__doc__.split("\n\n")[0])
    parser.add_argument("captions")
    parser.add_argument("triplets")
    parser.add_argument("out")
    parser.add_argument("--encoder", default="lit-mini", help="encoder spec (default: lit-mini)")
    parser.add_argument("--image-shards", type=int, default=1, help="image tasks that may run side by side")
    add_runner_arguments(parser)
    args = parser.parse_args(argv)
    config = EmbedConfig(encoder=EncoderSpec.parse(args.encoder)).model_dump(mode="json")
    run = on_runner(embed_flow, **runner_options(args))
    print(run(config, args.captions, args.triplets, args.out, args.image_shards))


if __name__ == "__main__":
    main()
