"""The resume drill (``bench/resume_drill.py``) at 1K triplets: ``scot run`` killed with
SIGKILL midway through the triplet stage and again midway through the embed stage, then run
to the end, equals the uninterrupted rehearsal file for file, and redid only the work that
was in flight. One subprocess (~100 s here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
N, PART_ROWS = 1000, 64
# What a resumed run counts of itself: requests it made (the stand-in deals each caption's
# fault once, so redone captions need no retry) and vectors it embedded.
RESUME_COUNTS = {"attempts", "images_embedded", "texts_embedded"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def drill(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("drill") / "out"
    command = [sys.executable, "-m", "bench.resume_drill", "--triplets", str(N), "--out", str(out), "--timeout", "2",
               "--embed-part-rows", str(PART_ROWS), "--train-max-triplets", "300"]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return json.loads((out / "drill.json").read_text())


def test_killed_midway_in_both_stages(drill: dict) -> None:
    legs = {leg["name"]: leg for leg in drill["legs"]}
    assert [leg["killed_in"] for leg in drill["legs"]] == ["triplets", "embed", None]
    assert legs["leg-1"]["exit_code"] == legs["leg-2"]["exit_code"] == -9 and legs["leg-3"]["exit_code"] == 0
    batches, image_parts = (int(point.split(" of ")[1].split()[0]) for point in drill["kill_points"].values())
    assert 0 < legs["leg-1"]["parts_at_kill"] < batches and 0 < legs["leg-2"]["parts_at_kill"] < image_parts
    assert legs["leg-1"]["outlived_kill"] == legs["leg-2"]["outlived_kill"] == []  # Prefect's server ended too


def test_resumed_run_equals_the_uninterrupted_one(drill: dict) -> None:
    """Every Parquet table, shard and checkpoint has A's bytes (a checkpoint's safetensors
    header may order its keys differently: then its tensors are equal); the only JSON fields
    that differ are the resumed run's counts of its own work; no temporary is left."""
    assert drill["data_files"] > 50 and drill["data_files_same_content"] == drill["data_files"]
    unequal = [d["file"] for d in drill["digests"] if d["sha256_a"] != d["sha256_b"]]
    assert all(name.endswith(".safetensors") for name in unequal)
    assert drill["json_differences"] and set().union(*drill["json_differences"].values()) <= RESUME_COUNTS
    assert "missing" not in drill["compare_runs"].split("\n", 1)[1] and drill["temporaries_left"] == []


def test_only_the_work_in_flight_was_redone(drill: dict) -> None:
    """No finished part was written again or its captions asked again: the requests B made
    beyond A's are at most those in flight at the kill (``concurrency``, one batch: answers
    are journalled as they arrive), and the embed kill cost no request and no vector."""
    redone, legs = drill["redone"], drill["legs"]
    assert redone["triplets_parts_reused"] == redone["triplets_parts_at_kill"] == legs[0]["parts_at_kill"]
    assert redone["triplets_parts_rewritten"] == redone["embed_parts_rewritten"] == 0
    assert 0 <= redone["requests_redone"] <= drill["concurrency"] <= drill["batch_size"]
    assert drill["requests_redone_within_one_batch"]
    assert legs[2]["requests_so_far"] == legs[1]["requests_so_far"]
    assert redone["embed_rows_at_kill"] >= PART_ROWS and redone["embed_rows_redone"] == 0
