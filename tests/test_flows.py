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
    result = {r.stage: r for r in pipeline_flow(str(spec))}
    assert result["captions"].status == "done" and result["captions"].summary["rows"] == 5
    assert result["evaluate"].summary == {"metrics": {}, "deltas": {}, "reports": []}
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


def test_serve_builds_three_deployments(coco_dir: Path, tmp_path: Path, monkeypatch) -> None:
    import flows.serve

    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "served", "output_dir": str(tmp_path / "run"),
        "captions": {"format": "coco", "input": str(coco_dir / "annotations/captions_train2017.json"),
                     "images": str(coco_dir / "train2017")},
        "triplets": {"model": "scripted", "endpoints": ["http://127.0.0.1:9/v1"]},
        "embed": {"encoder": "open_clip:ViT-B-32", "image_batch_size": 8},
    }))  # fmt: skip
    served = []
    monkeypatch.setattr(flows.serve, "serve", lambda *found: served.extend(found))
    flows.serve.main(["--captions-root", str(tmp_path / "in"), "--out-root", str(tmp_path / "out"),
                      "--spec", str(spec), "--every", "120", "--image-shards", "2", "--task-runner", "dask"])  # fmt: skip
    by_name = {d.name: d for d in served}
    assert list(by_name) == ["scot-pipeline", "scot-triplets-watch", "scot-embed-watch"]
    assert by_name["scot-pipeline"].schedules == [] and by_name["scot-pipeline"].parameters == {"spec_path": str(spec)}
    runner = {"task_runner": "dask", "dask_workers": 2, "dask_address": None}
    triplets = by_name["scot-triplets-watch"]
    assert triplets.parameters == {"captions_root": str(tmp_path / "in"), "out_root": str(tmp_path / "out/triplets"),
                                   "config": triplets.parameters["config"], **runner}  # fmt: skip
    assert triplets.parameters["config"]["model"] == "scripted"
    embed = by_name["scot-embed-watch"]
    assert embed.parameters == {"captions_root": str(tmp_path / "in"), "triplets_root": str(tmp_path / "out/triplets"),
                                "out_root": str(tmp_path / "out/embed"), "image_shards": 2,
                                "config": embed.parameters["config"], **runner}  # fmt: skip
    assert embed.parameters["config"]["encoder"] == {"backend": "open_clip", "model": "ViT-B-32", "weights": None}
    assert embed.parameters["config"]["image_batch_size"] == 8
    for watch in (triplets, embed):
        assert [s.schedule.interval.total_seconds() for s in watch.schedules] == [120]
        assert watch.concurrency_limit == 1


def test_embed_watch_embeds_new_triplet_dirs_once(prefect_harness, tiny_spec, tmp_path: Path) -> None:
    from flows.embed import embed_watch_flow
    from scot_data.manifest import read_manifest
    from tests.test_embed import _write_captions, _write_triplets, caption_rows, make_cfg

    rows = caption_rows(tmp_path / "src", 0, 6)
    _write_captions(tmp_path / "captions/batch-1", rows)
    _write_triplets(tmp_path / "triplets/batch-1", rows[:4])
    _write_triplets(tmp_path / "triplets/orphan", rows[:2])  # no captions beside it: skipped
    roots = [str(tmp_path / name) for name in ("captions", "triplets", "embed")]
    config = make_cfg(tiny_spec, num_workers=0).model_dump(mode="json")
    assert embed_watch_flow(*roots, config) == [str(tmp_path / "embed/batch-1")]
    assert read_manifest(tmp_path / "embed/batch-1")["stats"]["images"] == 6
    assert embed_watch_flow(*roots, config) == []
    (tmp_path / "captions/orphan").mkdir()
    (tmp_path / "captions/orphan/manifest.json").write_text('{"stage": "captions"}')  # but no captions table
    with pytest.raises(RuntimeError, match="1 directories failed"):
        embed_watch_flow(*roots, config)


def test_scot_run_prefect_matches_local_then_skips(coco_dir: Path, tmp_path: Path) -> None:
    from tests.test_cli_and_spec import coco_spec, scot, stage_rows

    local = scot("run", str(coco_spec(tmp_path, coco_dir, "local")), "--engine", "local", "--no-progress")
    assert local.returncode == 0, local.stderr
    spec = coco_spec(tmp_path, coco_dir, "prefect")
    first = scot("run", str(spec))  # the default engine
    assert first.returncode == 0, first.stderr
    assert stage_rows(first.stdout) == {"captions": "done", "triplets": "done"}, first.stdout
    assert "(prefect)" in first.stdout and "total " in first.stdout
    assert "INFO" not in first.stdout + first.stderr  # Prefect's console logs held to warnings
    for table in ("captions/captions.parquet", "triplets/triplets.parquet"):
        assert pq.read_table(tmp_path / "prefect" / table).equals(pq.read_table(tmp_path / "local" / table))
    second = scot("run", str(spec))
    assert second.returncode == 0, second.stderr
    assert stage_rows(second.stdout) == {"captions": "skipped (complete)", "triplets": "skipped (complete)"}


def test_serve_says_which_spec_sections_the_watches_ignore(coco_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    import flows.serve

    captions = {"format": "coco", "input": str(coco_dir / "annotations/captions_train2017.json"),
                "images": str(coco_dir / "train2017")}  # fmt: skip
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "scenes", "captions": captions, "scenes": {}, "triplets": {"backend": "template", "serve": {}},
        "mix": {"sources": {"scenes": 0.5, "triplets": 0.5}}, "embed": {"encoder": "lit-mini", "fit_lit": True},
    }))  # fmt: skip
    monkeypatch.setattr(flows.serve, "serve", lambda *found: None)
    flows.serve.main(["--captions-root", str(tmp_path / "in"), "--out-root", str(tmp_path / "out"), "--spec", str(spec)])
    assert capsys.readouterr().err == (
        "flows.serve: the watches ignore the spec's scenes:, mix:, embed.fit_lit, triplets.serve (they make "
        "triplets and embeddings of each new caption folder); scot-pipeline runs the whole spec\n"
    )
    plain = flows.serve.load_spec(spec).model_copy(update={"scenes": None, "mix": None, "triplets": None, "embed": None})
    assert flows.serve.ignored_by_watches(plain) == []
