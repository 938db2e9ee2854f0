"""The triplet flow end to end through the real vLLM CPU server and structured outputs.

The model is the tiny random-weight Llama the test builds offline: its words are noise,
but every answer must still be schema-valid JSON, so the plumbing is proven whole.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from scot_data.llm.server import VLLMServer, VLLMServerConfig, free_port
from tests.test_llm_server import needs_smollm2, needs_vllm
from tests.test_triplets import REPO, make_captions

pytestmark = [pytest.mark.slow, pytest.mark.vllm, needs_vllm, needs_smollm2]

VALIDATOR_REASONS = {
    "modified caption equals caption",
    "modification too long",
    "modified caption too long",
    "modification copies a caption",
}


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
              "prompt": str(REPO / "pipelines/prompts/v1.yaml"), "sampling": {"max_tokens": 120}}  # fmt: skip
    with VLLMServer(launch), prefect_test_harness(server_startup_timeout=120):
        summary = triplets_flow(config, str(captions), str(tmp_path / "out"))

    triplets = pq.read_table(tmp_path / "out/triplets.parquet").to_pylist()
    rejects = pq.read_table(tmp_path / "out/rejects.parquet").to_pylist()
    assert summary["requests"] == 6 and summary["triplets"] + summary["rejects"] == 6
    assert len(triplets) + len(rejects) == 6
    # Structured output: every answer parsed; only the content checks may reject.
    assert {r["reason"] for r in rejects} <= VALIDATOR_REASONS, rejects
    edit_types = {"color", "object", "count", "attribute", "add", "remove", "scene", "style"}
    assert all(t["edit_type"] in edit_types and t["llm_model"] == "tiny" for t in triplets)
    assert summary["completion_tokens"] > 0 and summary["prompt_tokens"] > 6 * 100
