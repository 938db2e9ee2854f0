"""The Prefect flows run the library stages for real (a temporary local Prefect server)."""

from __future__ import annotations

from pathlib import Path

import httpx
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
                "evaluate": {"benchmarks": []},
            }
        )
    )
    result = pipeline_flow(str(spec))
    assert result["captions"]["rows"] == 5
    assert result["evaluate"] == "pending"
    assert pq.read_metadata(tmp_path / "run/captions/captions.parquet").num_rows == 5


def test_triplets_flow_maps_batches_and_caches(prefect_harness, tmp_path: Path) -> None:
    from flows.triplets import triplets_flow, triplets_watch_flow
    from tests.test_triplets import REPO, free_port, make_captions, start_server, stop_server

    captions = make_captions(tmp_path, [f"a red kite number {i}" for i in range(10)] + ["a cat [bad-json]"])
    port = free_port()
    server = start_server(port)
    config = {"endpoints": [f"http://127.0.0.1:{port}/v1"], "model": "scripted", "batch_size": 3,
              "retry_backoff": 0.05, "prompt": str(REPO / "pipelines/prompts/v1.yaml")}  # fmt: skip
    out = tmp_path / "out"

    def served() -> int:
        return httpx.get(f"http://127.0.0.1:{port}/stats").json()["chat_requests"]

    try:
        first = triplets_flow(config, str(captions), str(out))
        assert first["triplets"] == 10 and first["rejects"] == 1 and first["parts"] == 4
        assert served() == 11
        (out / "manifest.json").unlink()
        second = triplets_flow(config, str(captions), str(out))
        assert second["triplets"] == 10 and served() == 11  # cached tasks: no LLM call
        (out / "manifest.json").unlink()
        for part in (out / "parts").glob("*"):
            part.unlink()
        third = triplets_flow(config, str(captions), str(out))
        assert third["triplets"] == 10 and served() == 22  # deleted parts are made again
        produced = triplets_watch_flow(str(tmp_path), str(tmp_path / "watched"), config)
        assert produced == [str(tmp_path / "watched" / "captions")]
        assert triplets_watch_flow(str(tmp_path), str(tmp_path / "watched"), config) == []
    finally:
        stop_server(server)
