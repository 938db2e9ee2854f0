"""kill -9 in the middle of the caption stage, then run again: same output, nothing twice."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from scot_data.atomic import TMP_MARK
from scot_data.captions.config import OpenclipartCaptions
from scot_data.captions.ingest import PARTS_DIR, ingest_captions
from tests.conftest import REAL_CLIPART

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not REAL_CLIPART.is_dir(), reason="needs Debian openclipart-svg"),
]

LIMIT, PART_SIZE = 200, 10


def ingest_command(out: Path) -> list[str]:
    return [
        sys.executable, "-m", "scot_data", "captions", "ingest", "--format", "openclipart",
        "--input", str(REAL_CLIPART), "--out", str(out), "--limit", str(LIMIT), "--seed", "7",
        "--workers", "1", "--part-size", str(PART_SIZE), "--no-progress",
    ]  # fmt: skip


def kill_after_parts(out: Path, parts: int, timeout: float = 120.0) -> None:
    """Start the CLI, wait until ``parts`` parts are on disk, then SIGKILL it."""
    process = subprocess.Popen(ingest_command(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = list((out / PARTS_DIR).glob("part-*[0-9a-f].parquet")) if (out / PARTS_DIR).exists() else []
        if len(done) >= parts:
            break
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "manifest.json").exists(), "the run finished before it could be killed"


def content(out: Path) -> list[tuple[str, str, str, str]]:
    rows = pq.read_table(out / "captions.parquet").to_pylist()
    return [(r["caption_id"], r["image_id"], r["caption"], Path(r["image_uri"]).name) for r in rows]


def test_kill_9_then_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    resumed = tmp_path / "resumed"
    kill_after_parts(resumed, parts=3)
    on_disk = {p.name for p in (resumed / PARTS_DIR).iterdir() if TMP_MARK not in p.name}

    result = subprocess.run(ingest_command(resumed), capture_output=True, text=True, check=True)
    assert "parts_reused" in result.stdout

    reference = tmp_path / "reference"
    summary = ingest_captions(
        OpenclipartCaptions(limit=LIMIT, seed=7, workers=1, part_size=PART_SIZE), reference, show_progress=False
    )
    assert content(resumed) == content(reference)
    ids = [row[0] for row in content(resumed)]
    assert len(ids) == len(set(ids)) == summary.rows
    assert summary.rows <= LIMIT
    assert len([n for n in on_disk if not n.endswith(".rejects.parquet")]) >= 3
    assert not list(resumed.rglob(f"*{TMP_MARK}*"))
    assert not (resumed / PARTS_DIR).exists()


def test_resume_reuses_finished_parts(tmp_path: Path) -> None:
    out = tmp_path / "out"
    kill_after_parts(out, parts=2)
    finished = {p.name for p in (out / PARTS_DIR).glob("part-*.rejects.parquet")}
    cfg = OpenclipartCaptions(limit=LIMIT, seed=7, workers=1, part_size=PART_SIZE)
    summary = ingest_captions(cfg, out, show_progress=False)
    assert summary.parts == -(-LIMIT // PART_SIZE)
    assert summary.parts_reused >= len(finished) >= 2
    again = ingest_captions(cfg, out, show_progress=False)
    assert again.skipped and again.rows == summary.rows
