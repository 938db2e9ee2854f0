"""The triplet stage against a scripted OpenAI-compatible server, and the template backend."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from scot_data.captions.config import TableCaptions
from scot_data.captions.ingest import ingest_captions
from scot_data.errors import ScotInputError
from scot_data.triplets.client import FAILURES_BEFORE_COOLDOWN, Completion, Endpoint, EndpointPool
from scot_data.triplets.config import TripletsConfig
from scot_data.triplets.generate import (
    PARTS_DIR,
    Batch,
    answer_batch,
    generate_triplets,
    make_run,
    write_part,
)
from scot_data.triplets.journal import read_journal
from scot_data.triplets.prompts import load_prompt
from scot_data.triplets.records import CaptionIn
from scot_data.triplets.template import template_edit
from tests.conftest import png_bytes
from tests.scripted_openai_server import free_port, server_stats, start_server, stop_server

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def server() -> Iterator[str]:
    port = free_port()
    process = start_server(port)
    yield f"http://127.0.0.1:{port}/v1"
    stop_server(process)


def make_captions(tmp_path: Path, captions: list[str]) -> Path:
    (tmp_path / "img").mkdir(exist_ok=True)
    paths = []
    for i in range(len(captions)):
        (tmp_path / "img" / f"{i}.png").write_bytes(png_bytes(i))
        paths.append(f"img/{i}.png")
    pacsv.write_csv(pa.table({"image": paths, "caption": captions}), tmp_path / "pairs.csv")
    out = tmp_path / "captions"
    ingest_captions(TableCaptions(input=tmp_path / "pairs.csv", workers=1), out, show_progress=False)
    return out


FAULTS = {
    "a dog on the grass": "ok",
    "a cat [bad-json]": "bad json",
    "a bus [missing]": "missing field: modified_caption",
    "a tree [identical]": "modified caption equals caption",
    "a kite [long]": "modification too long",
    "a horse [500x2]": "ok",
    "a boat [429x1]": "ok",
    "a lamp [hang]": "ok",
    "a violin [drop]": "ok",
}


def llm_config(endpoints: list[str], **overrides) -> TripletsConfig:
    base = dict(endpoints=endpoints, model="scripted", timeout=2.0, retry_backoff=0.05, batch_size=4,
                concurrency=4, prompt=REPO / "pipelines/prompts/v1.yaml")  # fmt: skip
    return TripletsConfig(**{**base, **overrides})


def test_every_answer_ends_as_triplet_or_reject(server: str, tmp_path: Path) -> None:
    captions = make_captions(tmp_path, list(FAULTS))
    summary = generate_triplets(llm_config([server]), captions, tmp_path / "out", show_progress=False)

    triplets = pq.read_table(tmp_path / "out/triplets.parquet").to_pylist()
    rejects = pq.read_table(tmp_path / "out/rejects.parquet").to_pylist()
    outcome = {t["caption"]: "ok" for t in triplets}
    outcome |= {r["caption"]: r["reason"].split(" (")[0].split(": E")[0] for r in rejects}
    assert {c: (o if not o.startswith("bad json") else "bad json") for c, o in outcome.items()} == FAULTS
    bad = next(r for r in rejects if r["caption"] == "a cat [bad-json]")
    assert bad["raw"] == '{"modification": "make it'
    good = next(t for t in triplets if t["caption"] == "a dog on the grass")
    assert (good["modification"], good["modified_caption"], good["edit_type"]) == (
        "make it red", "a dog on the grass in red", "color")  # fmt: skip
    assert good["llm_model"] == "scripted" and good["prompt_version"] == "v1"
    assert summary.triplets == 5 and summary.rejects == 4
    assert summary.requests == 9  # every caption answered once; failed tries count as attempts
    assert summary.attempts == 9 + 2 + 1 + 1 + 1  # 500 twice, 429 once, one hang, one cut connection
    assert summary.prompt_tokens == 20 * 9 and summary.completion_tokens == 12 * 9


def test_second_run_is_skipped_and_sends_nothing(server: str, tmp_path: Path) -> None:
    captions = make_captions(tmp_path, ["a red car", "two dogs"])
    cfg = llm_config([server])
    first = generate_triplets(cfg, captions, tmp_path / "out", show_progress=False)
    second = generate_triplets(cfg.model_copy(update={"endpoints": ["http://127.0.0.1:9/v1"]}), captions,
                               tmp_path / "out", show_progress=False)  # fmt: skip
    assert second.skipped and second.triplets == first.triplets == 2


def test_dead_endpoint_is_rotated_out(server: str, tmp_path: Path) -> None:
    captions = make_captions(tmp_path, [f"a picture number {i}" for i in range(12)])
    dead = f"http://127.0.0.1:{free_port()}/v1"
    cfg = llm_config([dead, server], max_attempts=6)
    summary = generate_triplets(cfg, captions, tmp_path / "out", show_progress=False)
    assert summary.triplets == 12 and summary.rejects == 0
    assert summary.attempts > summary.requests


def test_a_hung_request_holds_up_only_its_own_batch(server: str, tmp_path: Path) -> None:
    """Batches keep starting while two of them wait out a request's timeout (2 s): every
    other part is written before theirs. A fixed window of two batches waited for them."""
    texts = [f"a kite number {i}" + (" [hang]" if i in (0, 4) else "") for i in range(24)]
    summary = generate_triplets(llm_config([server]), make_captions(tmp_path, texts), tmp_path / "out",
                                show_progress=False)  # fmt: skip
    assert summary.triplets == 24 and summary.attempts == 26
    parts = sorted((tmp_path / "out" / PARTS_DIR).glob("*.triplets.parquet"), key=lambda p: p.stat().st_mtime_ns)
    held_up = [p for p in parts if "[hang]" in " ".join(pq.read_table(p, columns=["caption"]).column(0).to_pylist())]
    assert len(parts) == 6 and parts[-2:] == held_up


def test_failures_in_flight_during_a_cooldown_are_one_strike() -> None:
    """Hundreds of requests sent together that time out together put a single endpoint out
    for the base cool-down, not the cap; a failure after the cool-down doubles it."""
    pool = EndpointPool([Endpoint("http://127.0.0.1:9/v1", client=None)], base_cooldown=2.0)  # type: ignore[arg-type]
    endpoint = pool.endpoints[0]
    for _ in range(FAILURES_BEFORE_COOLDOWN + 250):
        pool.failed(endpoint)
    assert endpoint.cooldown == 2.0
    endpoint.available_at = time.monotonic()  # the cool-down is over
    for _ in range(FAILURES_BEFORE_COOLDOWN):
        pool.failed(endpoint)
    assert endpoint.cooldown == 4.0


def test_missing_endpoint_fails_before_any_work(tmp_path: Path) -> None:
    captions = make_captions(tmp_path, ["a red car"])
    cfg = llm_config([f"http://127.0.0.1:{free_port()}/v1"])
    with pytest.raises(ScotInputError, match="no usable LLM endpoint"):
        generate_triplets(cfg, captions, tmp_path / "out", show_progress=False)
    assert not (tmp_path / "out" / PARTS_DIR).exists()


def test_wrong_model_fails_fast(server: str, tmp_path: Path) -> None:
    captions = make_captions(tmp_path, ["a red car"])
    with pytest.raises(ScotInputError, match=r"does not serve 'gpt-x' \(serves scripted\)"):
        generate_triplets(llm_config([server], model="gpt-x"), captions, tmp_path / "out", show_progress=False)


def test_prompt_messages_and_schema() -> None:
    prompt = load_prompt(REPO / "pipelines/prompts/v1.yaml")
    messages = prompt.messages("a lamp")
    assert messages[0]["role"] == "system"
    assert [m["role"] for m in messages[1:-1]] == ["user", "assistant"] * len(prompt.examples)
    assert messages[-1] == {"role": "user", "content": "Caption: a lamp"}
    schema = prompt.response_format("json_schema")["json_schema"]["schema"]
    assert schema["required"] == ["modification", "modified_caption", "edit_type"]
    assert set(schema["properties"]["edit_type"]["enum"]) >= {"color", "object", "count", "scene", "style"}
    assert prompt.response_format("json_object") == {"type": "json_object"}
    assert len(prompt.sha256) == 64


def test_template_backend(tmp_path: Path) -> None:
    texts = ["a red apple on a table", "two dogs playing", "a violin", "a lamp (furniture)"]
    captions = make_captions(tmp_path, texts)
    cfg = TripletsConfig(backend="template", batch_size=2)
    summary = generate_triplets(cfg, captions, tmp_path / "out", show_progress=False)
    rows = pq.read_table(tmp_path / "out/triplets.parquet").to_pylist()
    assert summary.triplets == 4 and summary.requests == 0
    for row in rows:
        assert row["modified_caption"] != row["caption"] and row["llm_model"] == "template"
        if row["edit_type"] == "color":
            assert "red" not in row["modified_caption"]
        if row["edit_type"] == "count":
            assert "two" not in row["modified_caption"]
        if row["edit_type"] == "scene":
            assert row["modified_caption"].startswith(row["caption"]) and "background" in row["modified_caption"]
    again = generate_triplets(cfg, captions, tmp_path / "again", show_progress=False)
    assert pq.read_table(tmp_path / "again/triplets.parquet").to_pylist() == rows
    assert again.triplets == 4


def test_template_edit_is_deterministic_per_caption() -> None:
    caption = CaptionIn("c1", "i1", "three cats on a green sofa")
    objects = ["cat", "dog", "lamp"]
    assert template_edit(caption, 0, objects) == template_edit(caption, 0, objects)
    kinds = {template_edit(CaptionIn(f"c{i}", "i", caption.caption), 0, objects)[2] for i in range(60)}
    assert kinds == {"color", "count", "scene"}  # "cats" is not the object word "cat"


def generate_command(captions: Path, out: Path, endpoint: str) -> list[str]:
    return [sys.executable, "-m", "scot_data", "triplets", "generate", "--captions", str(captions),
            "--out", str(out), "--endpoint", endpoint, "--model", "scripted", "--batch-size", "5",
            "--concurrency", "2", "--no-progress"]  # fmt: skip


@pytest.mark.slow
def test_kill_9_then_resume_same_triplet_ids(tmp_path: Path) -> None:
    captions = make_captions(tmp_path, [f"a drawing number {i}" for i in range(120)])
    port = free_port()
    server_process = start_server(port, delay=0.03)
    endpoint = f"http://127.0.0.1:{port}/v1"
    try:
        resumed = tmp_path / "resumed"
        process = subprocess.Popen(generate_command(captions, resumed, endpoint), cwd=REPO)
        deadline = time.monotonic() + 60
        while len(list((resumed / PARTS_DIR).glob("*.triplets.parquet"))) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert not (resumed / "manifest.json").exists()
        subprocess.run(generate_command(captions, resumed, endpoint), cwd=REPO, check=True)
        asked = server_stats(endpoint)["chat_requests"]
        reference = tmp_path / "reference"
        subprocess.run(generate_command(captions, reference, endpoint), cwd=REPO, check=True)
    finally:
        stop_server(server_process)

    def rows(out: Path) -> list[tuple[str, str]]:
        table = pq.read_table(out / "triplets.parquet").to_pylist()
        return sorted((r["triplet_id"], r["modified_caption"]) for r in table)

    assert rows(resumed) == rows(reference)
    assert len(rows(resumed)) == len({r[0] for r in rows(resumed)}) == 120
    assert len(list((resumed / PARTS_DIR).glob("*.triplets.parquet"))) == 24
    assert not list((resumed / PARTS_DIR).glob("*.answers.jsonl"))  # journals go once their parts are written
    # Answers are journalled as they arrive: only the 2 requests in flight at the kill are asked twice
    # (without the journal, every answer of the up to 2 batches of 5 in flight was).
    assert 120 <= asked <= 120 + 2


class _CountingClient:
    """Answers every caption with a colour edit, remembering which captions it was asked about."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def complete(self, messages: list[dict[str, str]], **_: object) -> Completion:
        caption = messages[-1]["content"].removeprefix("Caption: ")
        self.asked.append(caption)
        answer = {"modification": "make it red", "modified_caption": f"a red {caption}", "edit_type": "color"}
        return Completion(json.dumps(answer), "stop", 40, 12, 1)


def test_journalled_answers_are_not_asked_again(tmp_path: Path) -> None:
    """A batch cut short (its journal holds two answers and a line torn by a kill) asks only
    for the other captions, and ends with the part an uninterrupted batch makes."""
    run = make_run(TripletsConfig(endpoints=["http://127.0.0.1:9/v1"], model="scripted", batch_size=4))
    captions = tuple(CaptionIn(f"c{i}", f"i{i}", f"drawing number {i}") for i in range(4))
    whole = Batch("whole", captions, tmp_path)
    first = _CountingClient()
    expected = asyncio.run(answer_batch(first, run, whole))  # type: ignore[arg-type]
    lines = whole.path("answers").read_text().splitlines()
    assert len(first.asked) == len(lines) == 4

    cut = Batch("cut", captions, tmp_path)
    cut.path("answers").write_text("\n".join(lines[:2]) + "\n" + lines[2][: len(lines[2]) // 2])
    second = _CountingClient()
    triplets, rejects, stats = asyncio.run(answer_batch(second, run, cut))  # type: ignore[arg-type]
    journalled = {json.loads(line)["caption_id"] for line in lines[:2]}
    assert sorted(second.asked) == sorted(c.caption for c in captions if c.caption_id not in journalled)
    assert (triplets, rejects, asdict(stats)) == (expected[0], expected[1], asdict(expected[2]))
    assert stats.requests == 4 and stats.prompt_tokens == 4 * 40  # journalled answers count as asked once
    assert len(read_journal(cut.path("answers"))) == 4  # the torn line's answer was journalled afresh
    write_part(cut, triplets, rejects, stats)
    assert cut.done() and not cut.path("answers").exists()
