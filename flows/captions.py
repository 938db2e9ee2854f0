"""The caption stage as a Prefect flow.

The library already skips a complete stage and resumes a partial one, so the task adds
retries (a flaky network filesystem, a killed worker) rather than result caching.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from pydantic import TypeAdapter

from scot_data.captions.config import CaptionsConfig
from scot_data.captions.ingest import ingest_captions


@task(name="ingest-captions", retries=2, retry_delay_seconds=5)
def ingest_task(config: dict[str, Any], out_dir: str) -> dict[str, Any]:
    """Validate the config and run the stage; returns the stage summary."""
    cfg = TypeAdapter(CaptionsConfig).validate_python(config)
    return asdict(ingest_captions(cfg, Path(out_dir), show_progress=False))


@flow(name="scot-captions")
def captions_flow(config: dict[str, Any], out_dir: str) -> dict[str, Any]:
    """Ingest a caption collection into ``out_dir`` (see ``scot captions ingest``)."""
    summary = ingest_task(config, out_dir)
    get_run_logger().info(
        "captions: %s rows, %s rejects %s, %s s%s",
        summary["rows"],
        summary["rejects"],
        summary["reject_reasons"],
        summary["seconds"],
        " (already complete)" if summary["skipped"] else "",
    )
    return summary
