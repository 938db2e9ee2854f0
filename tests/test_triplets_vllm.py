"""The triplet flow end to end through the real vLLM CPU server and structured outputs.

The model is the tiny random-weight Llama the test builds offline: its words are noise,
but every answer must still be schema-valid JSON, so the plumbing is proven whole.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from scot_data.llm.server import VLLMServer, VLLMServerConfig, free_port, group_alive
from scot_data.triplets.prompts import MAX_REPEAT, load_prompt
from tests.test_drills import (
    assert_sound,
    scot_run,
    triplet_outcome,
    triplet_parts,
    wait_for,
    write_pairs,
    write_spec,
)
from tests.test_llm_server import needs_smollm2, needs_vllm
from tests.test_triplets import REPO, make_captions

pytestmark = [pytest.mark.slow, pytest.mark.vllm, needs_vllm, needs_smollm2]

PROMPT = REPO / "pipelines/prompts/v1.yaml"
# The schema caps the modification at MAX_REPEAT characters and the modified caption at
# twice that, and noise runs to the caps (a closing quote is one token in a few hundred):
# 256 characters of noise are ~25 words, about the default limit for a 3-word caption
# (3 + 24), so the default length rules would reject some answers by chance. Here they sit
# where a word needs at least one character: out of reach of any schema-valid answer. A
# token carries at least one character too, so the object closes before MAX_TOKENS (~90
# tokens are used; the ~460-token prompt plus MAX_TOKENS fit max_model_len 1024).
SCHEMA_BOUND_CHECKS = {"max_modification_words": MAX_REPEAT, "max_caption_growth_words": 2 * MAX_REPEAT}
MAX_TOKENS = 3 * MAX_REPEAT + 40


def table(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def test_triplets_flow_through_real_vllm(tmp_path: Path) -> None:
    from prefect.testing.utilities import prefect_test_harness

    from flows.triplets import triplets_flow
    from scot_data.llm.tiny_model import build_tiny_model

    model = build_tiny_model(tmp_path / "tiny")
    captions = make_captions(tmp_path, ["a red apple on a table", "two cats on a sofa", "a yellow bus",
                                        "a snowy mountain", "a violin and a lamp", "a green frog"])  # fmt: skip
    launch = VLLMServerConfig(model=str(model), served_model_name="tiny", port=free_port(), enforce_eager=True,
                              kv_cache_gib=1, max_model_len=1024, state_dir=tmp_path / "state")  # fmt: skip
    config = {"endpoints": [launch.base_url], "model": "tiny", "batch_size": 4, "concurrency": 4,
              "prompt": str(PROMPT), "sampling": {"max_tokens": MAX_TOKENS},
              **SCHEMA_BOUND_CHECKS}  # fmt: skip
    with VLLMServer(launch), prefect_test_harness(server_startup_timeout=120):
        summary = triplets_flow(config, str(captions), str(tmp_path / "out"))

    asked = {r["caption_id"]: r["caption"] for r in table(captions / "captions.parquet")}
    triplets, rejects = table(tmp_path / "out/triplets.parquet"), table(tmp_path / "out/rejects.parquet")
    # Every caption was asked once and answered once.
    assert summary["requests"] == len(asked) == 6 and summary["completion_tokens"] > 0
    assert sorted(r["caption_id"] for r in triplets + rejects) == sorted(asked)
    assert (summary["triplets"], summary["rejects"]) == (len(triplets), len(rejects))
    # Structured output makes every answer parse; with the length rules out of reach only a
    # blank or copied field is left to reject, which noise writes only by a fluke: all kept.
    assert len(triplets) == 6, [(r["reason"], r["raw"]) for r in rejects]
    edit_types = set(load_prompt(PROMPT).edit_types)
    for t in triplets:
        assert t["caption"] == asked[t["caption_id"]] and t["edit_type"] in edit_types
        assert 0 < len(t["modification"]) <= MAX_REPEAT and 0 < len(t["modified_caption"]) <= 2 * MAX_REPEAT
        assert min(map(ord, t["modification"] + t["modified_caption"])) >= 0x20  # the pattern's characters
        assert (t["llm_model"], t["prompt_version"], t["seed"]) == ("tiny", "v1", 0)
    assert summary["prompt_tokens"] > 6 * 100


def test_real_vllm_killed_mid_run_then_restarted(tmp_path: Path) -> None:
    """The drill of tests/test_drills.py on the real server: vLLM's whole process group is
    SIGKILLed once 2 of 4 parts are written. The run ends incomplete with one line (exit 1,
    parts kept, no manifest); after a restart on the same port the re-run reuses those parts
    and finishes, every caption a triplet or a reject exactly once."""
    from scot_data.llm.tiny_model import build_tiny_model

    model = build_tiny_model(tmp_path / "tiny")
    launch = VLLMServerConfig(model=str(model), served_model_name="tiny", port=free_port(), enforce_eager=True,
                              kv_cache_gib=1, max_model_len=1024, state_dir=tmp_path / "state")  # fmt: skip
    # 8 captions in 4 parts of 2, 2 requests in flight; 2 tries 0.05 s apart: the outage outlasts them.
    triplets = {"backend": "llm", "endpoints": [launch.base_url], "model": "tiny", "prompt": str(PROMPT),
                "batch_size": 2, "concurrency": 2, "timeout": 60.0, "max_attempts": 2, "retry_backoff": 0.05,
                "sampling": {"max_tokens": MAX_TOKENS}, **SCHEMA_BOUND_CHECKS}  # fmt: skip
    out = tmp_path / "out"
    spec = write_spec(tmp_path / "spec.yaml", write_pairs(tmp_path, 8), out, {"triplets": triplets})
    parts = out / "triplets"

    server = VLLMServer(launch)
    with server:
        process = subprocess.Popen(scot_run(spec), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   text=True)  # fmt: skip
        deadline = time.monotonic() + 300
        while len(triplet_parts(parts)) < 2:
            if process.poll() is not None or time.monotonic() > deadline:
                returncode, stderr = wait_for(process, timeout=0.1)
                pytest.fail(f"the run never wrote 2 parts (exit {returncode}):\n{stderr[-2000:]}")
            time.sleep(0.01)
        assert server.process is not None
        os.killpg(server.process.pid, signal.SIGKILL)  # the API server and its engine core
        server.process.wait()
        deadline = time.monotonic() + 30
        while group_alive(server.process.pid):
            assert time.monotonic() < deadline, "vLLM's process group outlived SIGKILL"
            time.sleep(0.1)
        assert len(triplet_parts(parts)) < 4, "the run finished before the server was killed"

        returncode, stderr = wait_for(process, timeout=120)
    assert returncode == 1, stderr
    assert "Traceback" not in stderr
    assert "incomplete:" in stderr and "batches unanswered" in stderr, stderr
    assert not (parts / "manifest.json").exists()
    kept = {p: p.stat().st_mtime_ns for p in triplet_parts(parts)}
    assert 2 <= len(kept) < 4

    with VLLMServer(launch):  # the same port
        rerun = subprocess.run(scot_run(spec), check=False, cwd=REPO, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr

    stats = json.loads((parts / "stats.json").read_text())
    assert (stats["parts"], stats["parts_reused"]) == (4, len(kept))
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # reused as written, not asked again
    rows, outcome = triplet_outcome(parts)
    asked = table(out / "captions/captions.parquet")
    assert sorted(outcome) == sorted(r["caption_id"] for r in asked) and set(outcome.values()) == {1}
    assert len({r["triplet_id"] for r in rows}) == len(rows)
    assert_sound(out)
