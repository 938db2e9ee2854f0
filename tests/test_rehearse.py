"""The paper-scale rehearsal (``bench/rehearse.py``) at 2K triplets: the real ``scot run``
through Prefect on a COCO-shaped input, the stand-in LLM host dealing its 2% fault mix,
then ``scot publish`` to moto S3 and ``scot verify`` there. One subprocess (~50 s here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]
N = 2000


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("rehearse")
    command = [sys.executable, "-m", "bench.rehearse", "--triplets", str(N), "--out", str(out), "--timeout", "2"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return json.loads((out / "rehearse.json").read_text()), out


def test_every_stage_finishes_and_counts_add_up(rehearsal: tuple[dict, Path]) -> None:
    report, out = rehearsal
    assert report["status"] == dict.fromkeys(("captions", "triplets", "embed", "train"), "done")
    images, captions = report["input"]["images"], report["input"]["captions"]
    assert captions == 5 * images and 2.0 * N < captions < 2.1 * N  # COCO's 591,753 captions per 290,000 sampled
    checks = report["checks"]
    assert checks["sampled"] == N and checks["triplets"] + checks["rejects"] == N and checks["accounted"]
    assert checks["answered_once"] and checks["server_chat_requests"] == N + checks["retries"]
    costs = {row["stage"]: row for row in report["stages"]}
    assert list(costs) == ["captions", "triplets", "embed", "train", "publish"]
    assert costs["triplets"]["items"] == N and costs["captions"]["items"] > 2 * N
    embed = json.loads((out / "run" / "embed" / "stats.json").read_text())
    assert embed["images_embedded"] == images and costs["embed"]["items"] == images + embed["texts_embedded"]
    for row in costs.values():
        assert row["seconds"] > 0 and row["items_per_second"] > 0 and row["peak_rss_mib"] > 100
        assert row["bytes_written"] > 0 and row["cpu_seconds"] >= 0
    epoch = report["train_epoch"]  # no --train-max-triplets: every training triplet, so measured
    assert epoch["epoch"] == "measured" and epoch["triplets_trained"] == epoch["triplets_train_full"] < N
    assert epoch["epoch_seconds"] == round(epoch["triplets_train_full"] / epoch["samples_per_second"], 1)
    models = set(pq.read_table(out / "run" / "triplets" / "triplets.parquet").column("llm_model").to_pylist())
    assert models == {"mistralai/Mistral-7B-Instruct-v0.3"}  # coco-290k's model name, served by the stand-in


def test_the_fault_mix_was_retried_or_rejected(rehearsal: tuple[dict, Path]) -> None:
    """Each injected transport fault (500, hang past the timeout, cut connection) cost exactly
    one retry, and each garbage answer is a reject: nothing else failed."""
    checks = rehearsal[0]["checks"]
    faults = checks["faults_served"]
    assert set(faults) == {"500", "bad-json", "hang", "drop"} and 0.01 * N < sum(faults.values()) < 0.03 * N
    assert checks["retries"] == faults["500"] + faults["hang"] + faults["drop"]
    assert checks["rejects"] == faults["bad-json"] and checks["garbage_rejected"]


def test_the_published_copy_verifies(rehearsal: tuple[dict, Path]) -> None:
    report, out = rehearsal
    publish = report["publish"]
    assert publish["publish_exit"] == 0 and publish["verify_exit"] == 0 and report["checks"]["published_verifies"]
    files = len(json.loads((out / "run" / "embed" / "manifest.json").read_text())["outputs"]) + 1
    assert f"{files} uploaded" in publish["publish_output"] and publish["verify_output"].endswith(": ok")
