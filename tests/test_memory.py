"""Freed memory handed back between the stages of one ``scot run`` process (``scot_data.memory``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from scot_data import pipeline
from scot_data.spec import load_spec

_PROBE = textwrap.dedent(
    """
    import psutil
    from scot_data.memory import release_freed_memory
    rss = lambda: psutil.Process().memory_info().rss
    base = rss()
    blocks = [bytes(2000) + bytes([i % 256]) for i in range(200_000)]  # ~400 MB of malloc'd 2-KB blocks
    above = bytes(3000) + b"x"  # allocated after them: free() alone cannot shrink the heap's top
    grown = rss() - base
    del blocks
    kept = rss() - base
    release_freed_memory()
    print(grown, kept, rss() - base)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is glibc's")
def test_freed_heap_goes_back_to_the_system():
    grown, kept, after = map(int, subprocess.run([sys.executable, "-c", _PROBE], capture_output=True,
                                                 text=True, check=True).stdout.split())  # fmt: skip
    assert grown > 300 * 2**20
    assert kept > 0.8 * grown  # the premise: freeing alone leaves it with the process
    assert after < 0.2 * grown


def test_released_before_every_stage_but_the_first(monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(pipeline, "release_freed_memory", lambda: calls.append("release"))
    spec = load_spec(Path(__file__).parents[1] / "pipelines" / "coco-290k.yaml")
    pipeline.run_stages(spec, lambda stage: calls.append(stage) or {})
    assert calls == ["captions", "release", "triplets", "release", "embed", "release", "train", "release", "evaluate"]
