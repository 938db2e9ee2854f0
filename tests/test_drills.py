"""Failure drills: kill -9 at every stage, an LLM server that dies, a full disk, a dead endpoint.

Each drill breaks a run the way production breaks it and then holds the code to what
``atomic.py`` and ``manifest.py`` promise: no partial file under a final name, no manifest
that lists a missing or altered file, a later stage that refuses unfinished input, and a
re-run that ends exactly where an uninterrupted run ends. Runs that get killed are real
processes (``tests/drill_scot.py``: ``scot`` plus the tiny test encoder), on tiny data.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import yaml
from safetensors.numpy import load_file

from scot_data.atomic import TMP_MARK
from scot_data.captions.config import TableCaptions
from scot_data.captions.ingest import ingest_captions
from scot_data.embed.shards import read_blocks
from scot_data.embed.view import load_embeddings
from scot_data.errors import ScotInputError
from scot_data.hashing import sha256_file
from scot_data.manifest import MANIFEST_NAME, read_manifest
from scot_data.pipeline import run_pipeline
from scot_data.spec import load_spec
from scot_data.train.stage import TrainConfig, train_combiner
from scot_data.triplets.config import TripletsConfig
from scot_data.triplets.generate import PARTS_DIR, generate_triplets
from scot_data.verify import verify
from tests.conftest import TINY, png_bytes
from tests.test_triplets import free_port, start_server, stop_server

REPO = Path(__file__).resolve().parents[1]
DRILL = REPO / "tests" / "drill_scot.py"
PROMPT = REPO / "pipelines" / "prompts" / "v1.yaml"
COLOURS, OBJECTS = ("red", "blue", "green", "yellow"), ("car", "dog", "lamp", "boat", "tree", "kite")

# Every stage after captions, small enough for a 2-core machine; checkpoints every 2 steps
# so a kill in training has a checkpoint to resume from.
PIPELINE = {
    "triplets": {"backend": "template", "batch_size": 2},
    "embed": {"encoder": {"backend": "open_clip", "model": TINY}, "device": "cpu", "image_batch_size": 4},
    "train": {"epochs": 3, "batch_size": 4, "device": "cpu", "checkpoint_every": 2, "val_fraction": 0.2},
    "evaluate": {"benchmarks": []},
}
STAGE_DIRS = {"captions": "captions", "triplets": "triplets", "embed": "embed", "train": "train"}
# Finished files in the stage folder before the kill: past the first part or checkpoint.
KILL_AFTER_FILES = {"captions": 3, "triplets": 3, "embed": 3, "train": 5}
# The library's stage loop in the ``scot`` process itself: the drills test what the stages
# leave on disk, and the Prefect engine would add its server's start and stage retries.
RUN_OPTIONS = ("--engine", "local", "--no-progress")


# ------------------------------------------------------------------------------ helpers


def write_pairs(root: Path, count: int) -> Path:
    """``count`` distinct 64-px images and captions as a table (the ``table`` format's input)."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    paths, captions = [], []
    for i in range(count):
        (root / "img" / f"{i}.png").write_bytes(png_bytes(i, size=64))
        paths.append(f"img/{i}.png")
        captions.append(f"a {COLOURS[i % len(COLOURS)]} {OBJECTS[i % len(OBJECTS)]} number {i}")
    pacsv.write_csv(pa.table({"image": paths, "caption": captions}), root / "pairs.csv")
    return root / "pairs.csv"


def write_spec(path: Path, pairs: Path, out: Path, sections: dict[str, Any]) -> Path:
    """A pipeline spec over ``pairs`` into ``out``: captions in parts of 2, plus ``sections``."""
    captions = {"format": "table", "input": str(pairs), "workers": 1, "part_size": 2}
    path.write_text(yaml.safe_dump({"name": "drill", "output_dir": str(out), "captions": captions, **sections}))
    return path


def drill_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), **extra}


def scot(*args: str | Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``scot ARGS`` (with the tiny encoder) to completion."""
    command = [sys.executable, str(DRILL), *map(str, args)]
    return subprocess.run(command, check=False, env=drill_env(**env), capture_output=True, text=True, timeout=600)


def scot_run(spec: Path) -> list[str]:
    """The plain ``scot run SPEC`` command line (no test encoder needed)."""
    return [sys.executable, "-m", "scot_data", "run", str(spec), *RUN_OPTIONS]


def start_scot(*args: str | Path, **env: str) -> subprocess.Popen[bytes]:
    """``scot ARGS`` in its own process group, so a kill takes its DataLoader workers too."""
    command = [sys.executable, str(DRILL), *map(str, args)]
    return subprocess.Popen(command, env=drill_env(**env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)  # fmt: skip


def files_in(directory: Path) -> list[Path]:
    """Every file under ``directory`` now (os.walk shrugs off folders that vanish meanwhile)."""
    return [Path(root) / name for root, _, names in os.walk(directory) for name in names]


def temporaries(directory: Path) -> list[Path]:
    return [p for p in files_in(directory) if TMP_MARK in p.name]


def kill_9_when(process: subprocess.Popen[bytes], ready: Callable[[], bool], timeout: float = 300) -> None:
    """SIGKILL the process group as soon as ``ready()``; fail if the run ends first."""
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if process.poll() is not None:
                stderr = process.stderr.read().decode() if process.stderr else ""
                pytest.fail(f"the run ended (exit {process.returncode}) before the kill point:\n{stderr[-2000:]}")
            assert time.monotonic() < deadline, "the kill point was never reached"
            time.sleep(0.01)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=60)


def mid_write(directory: Path, finished: int) -> Callable[[], bool]:
    """True once ``finished`` files are done in ``directory`` and another one is half-written."""

    def ready() -> bool:
        files = files_in(directory)
        half = sum(TMP_MARK in p.name for p in files)
        return half > 0 and len(files) - half >= finished

    return ready


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def vectors(embeddings: Path, kind: str) -> dict[str, str]:
    """id -> digest of its float16 vector, for ``images`` or ``texts``."""
    loaded = load_embeddings(embeddings, kind)
    return {i: digest(row.tobytes()) for i, row in zip(loaded.ids.to_pylist(), loaded.matrix)}


def embeddings_content(embeddings: Path, shards: bool = True) -> dict[str, Any]:
    """What an embeddings folder holds by content (and its WebDataset shards' bytes)."""
    found: dict[str, Any] = {kind: vectors(embeddings, kind) for kind in ("images", "texts")}
    if shards:
        found["shards"] = {p.name: sha256_file(p) for p in sorted((embeddings / "wds").glob("*.tar"))}
    return found


def pipeline_content(out: Path) -> dict[str, Any]:
    """Everything a whole run produced, by content: tables as rows, vectors, Combiner tensors."""
    tensors = load_file(str(out / "train" / "combiner.safetensors"))
    return {
        "captions": pq.read_table(out / "captions" / "captions.parquet").to_pylist(),
        "triplets": pq.read_table(out / "triplets" / "triplets.parquet").to_pylist(),
        "triplet_rejects": pq.read_table(out / "triplets" / "rejects.parquet").to_pylist(),
        **embeddings_content(out / "embed"),
        "combiner": {name: digest(t.tobytes()) for name, t in sorted(tensors.items())},
    }


def assert_sound(out: Path) -> None:
    """No temporary file anywhere; every manifest's files present and intact (``scot verify``)."""
    assert temporaries(out) == []
    manifests = [p.parent for p in files_in(out) if p.name == MANIFEST_NAME]
    assert manifests
    for directory in manifests:
        assert verify(directory) == [], directory


def assert_whole(directory: Path) -> None:
    """Every file under a final name reads to its end: a write cut short left none."""
    for path in files_in(directory):
        if path.suffix == ".parquet":
            pq.read_table(path)
        elif path.suffix == ".tar":
            with open(path, "rb") as handle:
                assert list(read_blocks(str(path), handle))


# --------------------------------------------------------------- 1. kill -9 at each stage


@pytest.fixture(scope="module")
def pipeline_reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The inputs of the kill drills and what an uninterrupted ``scot run`` makes of them."""
    root = tmp_path_factory.mktemp("pipeline")
    pairs = write_pairs(root, 24)
    result = scot("run", write_spec(root / "spec.yaml", pairs, root / "out", PIPELINE), *RUN_OPTIONS)
    assert result.returncode == 0, result.stderr
    return pairs, pipeline_content(root / "out")


@pytest.mark.slow
@pytest.mark.parametrize("stage", list(STAGE_DIRS))
def test_kill_9_in_each_stage_then_rerun_matches_uninterrupted_run(
    stage: str, pipeline_reference: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """A kill mid-write in any stage: earlier stages stay finished, the killed one has no
    manifest, and ``scot run`` again gives byte-equal tables, vectors, shards and weights."""
    pairs, reference = pipeline_reference
    out = tmp_path / "out"
    spec = write_spec(tmp_path / "spec.yaml", pairs, out, PIPELINE)
    killed = out / STAGE_DIRS[stage]
    # Each rename into the stage's folder waits 0.3 s: the stage lasts long enough to be hit.
    process = start_scot("run", spec, *RUN_OPTIONS, DRILL_SLOW_DIR=f"{killed}{os.sep}", DRILL_SLOW_SECONDS="0.3")
    kill_9_when(process, mid_write(killed, KILL_AFTER_FILES[stage]))

    assert read_manifest(killed) is None
    assert temporaries(killed), "the kill should land while a file is half-written"
    for earlier in list(STAGE_DIRS)[: list(STAGE_DIRS).index(stage)]:
        assert verify(out / STAGE_DIRS[earlier]) == []

    result = scot("run", spec, *RUN_OPTIONS)
    assert result.returncode == 0, result.stderr
    assert_sound(out)
    assert pipeline_content(out) == reference
    if stage == "train":  # resumed from the checkpoint the kill left, not from scratch
        assert json.loads((killed / "summary.json").read_text())["resumed_from_step"] >= 2


# ----------------------------------------------------------- 2. the LLM server dies mid-run


def llm_sections(endpoint: str, max_attempts: int, retry_backoff: float) -> dict[str, Any]:
    """The triplet stage alone, on the scripted server: 10 parts of 4 captions, 2 in flight."""
    return {"triplets": {"backend": "llm", "endpoints": [endpoint], "model": "scripted", "prompt": str(PROMPT),
                         "batch_size": 4, "concurrency": 2, "timeout": 2.0, "max_attempts": max_attempts,
                         "retry_backoff": retry_backoff}}  # fmt: skip


def wait_for(process: subprocess.Popen[str], timeout: float) -> tuple[int, str]:
    """Exit code and stderr of a run; one still going after ``timeout`` is killed, failing the test."""
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail(f"the run was still going after {timeout:.1f} s (killed)")
    return process.returncode, stderr


def triplet_parts(triplets: Path) -> list[Path]:
    return sorted((triplets / PARTS_DIR).glob("*.triplets.parquet"))


def triplet_outcome(triplets: Path) -> tuple[list[dict[str, Any]], Counter[str]]:
    """The triplet rows (by id) and how many times each caption ended as a triplet or reject."""
    rows = sorted(pq.read_table(triplets / "triplets.parquet").to_pylist(), key=lambda r: r["triplet_id"])
    rejects = pq.read_table(triplets / "rejects.parquet").to_pylist()
    return rows, Counter(r["caption_id"] for r in rows + rejects)


@pytest.fixture
def llm_server() -> Iterator[dict[str, Any]]:
    """The scripted server (0.1 s per answer), restartable on its port; stopped at the end."""
    port = free_port()
    server = {"port": port, "endpoint": f"http://127.0.0.1:{port}/v1", "process": start_server(port, delay=0.1)}
    yield server
    stop_server(server["process"])


@pytest.mark.slow
@pytest.mark.parametrize("outage", ["outlasts_retries", "within_retries"])
def test_llm_server_killed_mid_run_then_restarted(outage: str, llm_server: dict[str, Any], tmp_path: Path) -> None:
    """The server is SIGKILLed after 2 of 10 parts. Down longer than the retries: the run ends
    incomplete (exit 1, parts kept, no manifest) and a re-run after the restart finishes. Back
    within the retries: the same run finishes. Either way every caption ends as a triplet or
    a reject exactly once, equal to an uninterrupted run."""
    pairs = write_pairs(tmp_path, 40)
    retries = (2, 0.05) if outage == "outlasts_retries" else (10, 0.2)
    out = tmp_path / "out"
    spec = write_spec(tmp_path / "spec.yaml", pairs, out, llm_sections(llm_server["endpoint"], *retries))
    process = subprocess.Popen(scot_run(spec), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(triplet_parts(out / "triplets")) < 2:
        if process.poll() is not None or time.monotonic() > deadline:
            wait_for(process, timeout=0.1)
            pytest.fail("the run never wrote 2 parts")
        time.sleep(0.01)
    llm_server["process"].kill()
    llm_server["process"].wait()
    assert len(triplet_parts(out / "triplets")) < 10, "the run finished before the server was killed"

    if outage == "outlasts_retries":
        returncode, stderr = wait_for(process, timeout=60)
        assert returncode == 1, stderr
        assert "incomplete:" in stderr and "batches unanswered" in stderr
        assert read_manifest(out / "triplets") is None and len(triplet_parts(out / "triplets")) >= 2
        llm_server["process"] = start_server(llm_server["port"], delay=0.1)
        rerun = subprocess.run(scot_run(spec), check=False, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr
    else:
        llm_server["process"] = start_server(llm_server["port"], delay=0.1)
        returncode, stderr = wait_for(process, timeout=120)
        assert returncode == 0, stderr

    reference = tmp_path / "reference"
    run_pipeline(load_spec(write_spec(tmp_path / "ref.yaml", pairs, reference,
                                      llm_sections(llm_server["endpoint"], 2, 0.05))), show_progress=False)  # fmt: skip
    rows, outcome = triplet_outcome(out / "triplets")
    captions = pq.read_table(out / "captions" / "captions.parquet").column("caption_id").to_pylist()
    assert outcome == Counter(captions) and set(outcome.values()) == {1}
    assert rows == triplet_outcome(reference / "triplets")[0]
    assert_sound(out)


# ------------------------------------------------------------------ 3. a full disk in a shard


@dataclass(frozen=True)
class EmbedInputs:
    """Caption and triplet stages over 12 and over 24 images, and the embeddings of the 24."""

    half: tuple[Path, Path]
    full: tuple[Path, Path]
    reference: Path


def caption_and_triplet_stages(root: Path, count: int) -> tuple[Path, Path]:
    pairs = write_pairs(root, count)
    ingest_captions(TableCaptions(input=pairs, workers=1), root / "captions", show_progress=False)
    generate_triplets(TripletsConfig(backend="template"), root / "captions", root / "triplets", show_progress=False)
    return root / "captions", root / "triplets"


def embed_args(stages: tuple[Path, Path], out: Path) -> list[str | Path]:
    """``scot embed`` without DataLoader workers (their shared memory would meet the limit too)."""
    captions, triplets = stages
    return ["embed", "--captions", captions, "--triplets", triplets, "--encoder", f"open_clip:{TINY}",
            "--out", out, "--workers", "0", "--device", "cpu", "--no-progress"]  # fmt: skip


@pytest.fixture(scope="module")
def embed_inputs(tmp_path_factory: pytest.TempPathFactory) -> EmbedInputs:
    root = tmp_path_factory.mktemp("embed")
    full = caption_and_triplet_stages(root / "full", 24)
    reference = root / "reference"
    result = scot(*embed_args(full, reference))
    assert result.returncode == 0, result.stderr
    return EmbedInputs(caption_and_triplet_stages(root / "half", 12), full, reference)


def shard_limit(reference: Path) -> int:
    """A file-size limit that every Parquet part of the reference fits and no shard does."""
    limit = min(p.stat().st_size for p in (reference / "wds").glob("*.tar")) - 1
    assert max(p.stat().st_size for p in files_in(reference) if p.suffix == ".parquet") < limit
    return limit


def assert_disk_full_reported(result: subprocess.CompletedProcess[str]) -> None:
    """Exit code 1 and the errno with the shard it was writing."""
    assert result.returncode == 1
    assert "File too large" in result.stderr
    assert "while writing" in result.stderr and "/wds/" in result.stderr.split("while writing")[1].splitlines()[0]


@pytest.mark.slow
def test_full_disk_while_writing_a_shard_leaves_nothing_partial(embed_inputs: EmbedInputs, tmp_path: Path) -> None:
    """Writing the first WebDataset shard fails (RLIMIT_FSIZE, as a full disk does): the error
    names the shard, nothing partial has a final name, no manifest; training refuses the
    folder with one clear line; with space again the re-run equals an uninterrupted run."""
    out = tmp_path / "embeddings"
    result = scot(*embed_args(embed_inputs.full, out), DRILL_MAX_FILE_BYTES=str(shard_limit(embed_inputs.reference)))
    assert_disk_full_reported(result)
    assert temporaries(out) == [] and not list((out / "wds").glob("*.tar"))
    assert_whole(out)
    assert verify(out) == [f"{out}/{MANIFEST_NAME}: missing (the stage has not finished there)"]

    with pytest.raises(ScotInputError, match="not a finished embed directory"):
        train_combiner(TrainConfig(epochs=1, batch_size=4, device="cpu"), out, embed_inputs.full[1],
                       tmp_path / "combiner", show_progress=False)  # fmt: skip
    assert not (tmp_path / "combiner").exists()

    result = scot(*embed_args(embed_inputs.full, out))
    assert result.returncode == 0, result.stderr
    assert verify(out) == [] and temporaries(out) == []
    assert embeddings_content(out) == embeddings_content(embed_inputs.reference)


@pytest.mark.slow
def test_full_disk_in_an_incremental_run_keeps_the_previous_manifest(
    embed_inputs: EmbedInputs, tmp_path: Path
) -> None:
    """New captions arrive and the disk fills while the grown shard is written: the previous
    manifest stays, byte for byte, and every file it lists still verifies; the re-run with
    space again holds exactly the vectors of an uninterrupted run over all the captions."""
    out = tmp_path / "embeddings"
    assert scot(*embed_args(embed_inputs.half, out)).returncode == 0
    previous = (out / MANIFEST_NAME).read_bytes()

    result = scot(*embed_args(embed_inputs.full, out), DRILL_MAX_FILE_BYTES=str(shard_limit(embed_inputs.reference)))
    assert_disk_full_reported(result)
    assert (out / MANIFEST_NAME).read_bytes() == previous
    assert verify(out) == [] and temporaries(out) == []
    assert_whole(out)

    result = scot(*embed_args(embed_inputs.full, out))
    assert result.returncode == 0, result.stderr
    assert verify(out) == [] and temporaries(out) == []
    assert embeddings_content(out, shards=False) == embeddings_content(embed_inputs.reference, shards=False)


# ------------------------------------------------------------- 4. an endpoint nobody serves


def test_missing_endpoint_fails_fast_and_writes_no_triplets(tmp_path: Path) -> None:
    """``scot run`` with an LLM endpoint where nothing listens (and no ``serve:``): exit code 2,
    one line naming the endpoint, and not one file of the triplet stage. Retries that would
    take minutes (10 attempts from 5 s) show it is checked once, before any request; that
    happens when the triplet stage starts, after the caption stage."""
    endpoint = f"http://127.0.0.1:{free_port()}/v1"
    out = tmp_path / "out"
    spec = write_spec(tmp_path / "spec.yaml", write_pairs(tmp_path, 4), out, llm_sections(endpoint, 10, 5.0))
    started = time.monotonic()
    result = subprocess.run(scot_run(spec), check=False, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert time.monotonic() - started < 60
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: no usable LLM endpoint: " + endpoint)
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (out / "triplets").exists()
