"""A whole pipeline spec as one Prefect flow, each available stage a subflow.

Each subflow runs the same library stage runner as ``scot run`` (so both skip complete
stages and resume partial ones the same way). Run: ``python -m flows.pipeline pipelines/demo.yaml``.
"""

from __future__ import annotations

import sys
from typing import Any

from prefect import flow, get_run_logger

from scot_data.pipeline import RUNNERS, STAGE_ORDER
from scot_data.spec import load_spec


@flow(name="scot-stage", flow_run_name="{stage}", retries=1, retry_delay_seconds=10)
def stage_flow(spec_path: str, stage: str) -> dict[str, Any]:
    """One stage of the spec (its summary is the flow's result)."""
    return RUNNERS[stage](load_spec(spec_path), False)


@flow(name="scot-pipeline")
def pipeline_flow(spec_path: str) -> dict[str, Any]:
    """Run the spec's stages in order."""
    spec = load_spec(spec_path)
    logger = get_run_logger()
    results: dict[str, Any] = {}
    for stage in STAGE_ORDER:
        if getattr(spec, stage) is None:
            continue
        results[stage] = stage_flow(spec_path, stage)
        logger.info("stage %s: %s", stage, {k: v for k, v in results[stage].items() if isinstance(v, int)})
    return results


if __name__ == "__main__":
    pipeline_flow(sys.argv[1])
