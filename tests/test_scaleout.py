"""Scale-out: the same flows with their tasks on Dask worker processes write the same data
as one process with threads (a temporary local Prefect server, a local Dask cluster)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.conftest import TINY, TINY_CONFIG
from tests.test_embed import _write_captions, _write_triplets, caption_rows, make_cfg
from tests.test_triplets import REPO, free_port, make_captions, start_server, stop_server


@pytest.fixture(scope="module")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_on_runner_swaps_only_the_task_runner() -> None:
    from prefect_dask import DaskTaskRunner

    from flows.embed import embed_flow
    from flows.runners import on_runner

    assert on_runner(embed_flow, "threads") is embed_flow
    local = on_runner(embed_flow, "dask", dask_workers=3)
    assert isinstance(local.task_runner, DaskTaskRunner) and local.name == embed_flow.name
    assert local.task_runner.cluster_kwargs == {"n_workers": 3, "threads_per_worker": 1, "processes": True}
    assert on_runner(embed_flow, "dask", dask_address="tcp://10.0.0.1:8786").task_runner.address == "tcp://10.0.0.1:8786"
    with pytest.raises(ValueError, match="task_runner"):
        on_runner(embed_flow, "ray")  # type: ignore[arg-type]


def test_shard_rows_are_disjoint_contiguous_and_cover_every_image() -> None:
    from flows.embed import shard_rows
    from scot_data.images import ImageItem

    items = [ImageItem(f"i{row}", f"/img/{row}.png", row) for row in (0, 2, 3, 7, 8, 9, 15)]
    ranges = shard_rows(items, 3)
    assert ranges == [(0, 3), (3, 8), (8, 16)]
    assert sorted(i.row for i in items for first, end in ranges if first <= i.row < end) == [i.row for i in items]
    assert shard_rows(items[:2], 5) == [(0, 2), (2, 3)] and shard_rows([], 2) == []


@pytest.mark.slow
def test_triplet_flow_on_two_dask_workers_matches_threads(prefect_harness, tmp_path: Path) -> None:
    from flows.runners import on_runner
    from flows.triplets import triplets_flow

    captions = make_captions(tmp_path, [f"a red kite number {i}" for i in range(11)] + ["a cat [bad-json]"])
    port = free_port()
    server = start_server(port)
    config = {"endpoints": [f"http://127.0.0.1:{port}/v1"], "model": "scripted", "batch_size": 3,
              "retry_backoff": 0.05, "prompt": str(REPO / "pipelines/prompts/v1.yaml")}  # fmt: skip
    try:
        threads = triplets_flow(config, str(captions), str(tmp_path / "threads"))
        dask = on_runner(triplets_flow, "dask", dask_workers=2)(config, str(captions), str(tmp_path / "dask"))
    finally:
        stop_server(server)
    assert threads["triplets"] == dask["triplets"] == 11 and threads["rejects"] == dask["rejects"] == 1
    assert dask["parts"] == 4 and dask["parts_reused"] == 0  # every batch answered on a worker
    for name in ("triplets.parquet", "rejects.parquet"):
        single, scaled = (pq.read_table(tmp_path / run / name) for run in ("threads", "dask"))
        assert scaled.equals(single), name
    ids = pq.read_table(tmp_path / "dask/triplets.parquet", columns=["triplet_id"]).column(0).to_pylist()
    assert len(set(ids)) == 11


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run with ``count`` intra-op threads.

    Dask starts each single-threaded worker with ``OMP_NUM_THREADS=1``; with another thread
    count the float32 sums split differently and a float16 vector can differ in its last bit.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _encoder_loaded() -> bool:
    """Run on each Dask worker: did this process embed anything?"""
    from scot_data.embed import plan

    return bool(plan._ENCODERS)


def _vectors(out: Path, kind: str) -> dict[str, np.ndarray]:
    from scot_data.embed.view import load_embeddings

    embeddings = load_embeddings(out, kind)
    return dict(zip(embeddings.ids.to_pylist(), embeddings.matrix))


@pytest.mark.slow
def test_embed_flow_two_image_shards_on_dask_matches_one_process(prefect_harness, tiny_spec, tmp_path: Path) -> None:
    import open_clip
    from distributed import Client, LocalCluster

    from flows.embed import embed_flow
    from flows.runners import on_runner
    from scot_data.verify import verify

    rows = caption_rows(tmp_path / "src", 0, 16)
    captions = str(_write_captions(tmp_path / "captions", rows))
    triplets = str(_write_triplets(tmp_path / "triplets", rows[:10]))
    config = make_cfg(tiny_spec).model_dump(mode="json")
    with torch_threads(1):  # as on the Dask workers: equal bits need equal GEMM splits
        single = embed_flow(config, captions, triplets, str(tmp_path / "single"))

    model_config = tmp_path / "open-clip" / f"{TINY}.json"  # the tiny test model, made known to the workers
    model_config.parent.mkdir()
    model_config.write_text(json.dumps(TINY_CONFIG))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster, Client(cluster) as client:
        client.run(open_clip.add_model_config, str(model_config))
        sharded_flow = on_runner(embed_flow, "dask", dask_address=cluster.scheduler_address)
        sharded = sharded_flow(config, captions, triplets, str(tmp_path / "sharded"), image_shards=2)
        embedded_on = client.run(_encoder_loaded)
    assert list(embedded_on.values()) == [True, True]  # each worker process embedded a shard
    assert sharded["images"] == single["images"] == sharded["images_embedded"] == 16
    assert sharded["texts"] == single["texts"] and sharded["rejects"] == single["rejects"] == 0
    assert sharded["image_parts"] == 4 and single["image_parts"] == 4  # two shards of 8 rows: 5 + 3 each
    assert verify(tmp_path / "sharded") == []
    for kind in ("images", "texts"):
        one, two = _vectors(tmp_path / "single", kind), _vectors(tmp_path / "sharded", kind)
        assert sorted(one) == sorted(two)
        assert all(np.array_equal(one[key], two[key]) for key in one), kind
