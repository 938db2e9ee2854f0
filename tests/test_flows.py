"""The Prefect flows run the library stages for real (a temporary local Prefect server)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_captions_flow_then_cached_rerun(prefect_harness, coco_dir: Path, tmp_path: Path) -> None:
    from flows.captions import captions_flow

    config = {
        "format": "coco",
        "input": str(coco_dir / "annotations/captions_train2017.json"),
        "images": str(coco_dir / "train2017"),
    }
    first = captions_flow(config, str(tmp_path / "out"))
    assert first["rows"] == 5 and first["rejects"] == 8 and not first["skipped"]
    second = captions_flow(config, str(tmp_path / "out"))
    assert second["skipped"] and second["rows"] == 5


def test_pipeline_flow_runs_spec(prefect_harness, coco_dir: Path, tmp_path: Path) -> None:
    from flows.pipeline import pipeline_flow

    spec = tmp_path / "spec.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "flowtest",
                "output_dir": str(tmp_path / "run"),
                "captions": {
                    "format": "coco",
                    "input": str(coco_dir / "annotations/captions_train2017.json"),
                    "images": str(coco_dir / "train2017"),
                },
                "encoder": {"backend": "lit-mini"},
            }
        )
    )
    result = pipeline_flow(str(spec))
    assert result["captions"]["rows"] == 5
    assert result["encoder"] == "pending"
    assert pq.read_metadata(tmp_path / "run/captions/captions.parquet").num_rows == 5
