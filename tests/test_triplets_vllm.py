"""The triplet flow end to end through the real vLLM CPU server and structured outputs.

The model is the tiny random-weight Llama the test builds offline: its words are noise,
but every answer must still be schema-valid JSON, so the plumbing is proven whole.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from scot_data.llm.server import VLLMServer, VLLMServerConfig, free_port
from scot_data.triplets.prompts import MAX_REPEAT, load_prompt
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
