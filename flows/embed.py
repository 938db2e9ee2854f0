"""The embedding-cache stage as a Prefect flow: images and texts as separate tasks.

Each task plans the run itself (cheap once the encoder is loaded, and the encoder is kept
for the process), so only paths and a config dict cross task boundaries. The library
skips a finished identical run and resumes from the parts on disk, so the tasks add
retries rather than result caching; ``finish`` writes the shards and the manifest last.

Run: ``python -m flows.embed CAPTIONS TRIPLETS OUT [ENCODER_SPEC]``.
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from typing import Any

from prefect import flow, get_run_logger, task

from scot_data.embed.config import EmbedConfig
from scot_data.embed.stage import EmbedSummary, embed_images, embed_texts, finish, prepare


def _plan(config: dict[str, Any], captions_dir: str, triplets_dir: str | None, out_dir: str) -> Any:
    return prepare(EmbedConfig.model_validate(config), captions_dir, triplets_dir, out_dir)


@task(name="embed-images", retries=2, retry_delay_seconds=5)
def images_task(
    config: dict[str, Any], captions_dir: str, triplets_dir: str | None, out_dir: str
) -> dict[str, Any]:
    """Embed the images not yet in ``out_dir`` (part by part, resumable)."""
    plan = _plan(config, captions_dir, triplets_dir, out_dir)
    return {} if isinstance(plan, EmbedSummary) else asdict(embed_images(plan, show_progress=False))


@task(name="embed-texts", retries=2, retry_delay_seconds=5)
def texts_task(
    config: dict[str, Any], captions_dir: str, triplets_dir: str | None, out_dir: str
) -> dict[str, Any]:
    """Embed the texts not yet in ``out_dir``."""
    plan = _plan(config, captions_dir, triplets_dir, out_dir)
    return {} if isinstance(plan, EmbedSummary) else asdict(embed_texts(plan, show_progress=False))


@task(name="embed-finish", retries=1)
def finish_task(
    config: dict[str, Any], captions_dir: str, triplets_dir: str | None, out_dir: str,
    images: dict[str, Any], texts: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """Shards, rejects, stats, manifest (last)."""
    from scot_data.embed.stage import PhaseStats

    plan = _plan(config, captions_dir, triplets_dir, out_dir)
    if isinstance(plan, EmbedSummary):
        return asdict(plan)
    image_stats = PhaseStats(**images) if images else None
    return asdict(finish(plan, image_stats, PhaseStats(**texts) if texts else None))


@flow(name="scot-embed")
def embed_flow(
    config: dict[str, Any], captions_dir: str, triplets_dir: str | None, out_dir: str
) -> dict[str, Any]:
    """Embed a caption (and triplet) directory into ``out_dir`` (see ``scot embed``)."""
    logger = get_run_logger()
    plan = _plan(config, captions_dir, triplets_dir, out_dir)
    if isinstance(plan, EmbedSummary):
        logger.info("embed: already complete in %s", out_dir)
        return asdict(plan)
    logger.info("embed: %d images and %d texts to embed", len(plan.images_todo), len(plan.texts_todo))
    images = images_task(config, captions_dir, triplets_dir, out_dir)
    logger.info("embed: images %s", images)
    texts = texts_task(config, captions_dir, triplets_dir, out_dir)
    logger.info("embed: texts %s", texts)
    summary = finish_task(config, captions_dir, triplets_dir, out_dir, images, texts)
    logger.info(
        "embed: %s images, %s texts, %s rejects %s, %s shards", summary["images"], summary["texts"],
        summary["rejects"], summary["reject_reasons"], summary["shards"],
    )  # fmt: skip
    return summary


if __name__ == "__main__" and len(sys.argv) >= 4:
    spec = sys.argv[4] if len(sys.argv) > 4 else "lit-mini"
    config = EmbedConfig(encoder=spec).model_dump(mode="json")
    print(embed_flow(config, sys.argv[1], sys.argv[2], sys.argv[3]))
