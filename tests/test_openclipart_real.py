"""The openclipart reader on the real Debian collection (installed by the set-up)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from scot_data.captions.config import OpenclipartCaptions
from scot_data.captions.ingest import ingest_captions, select
from scot_data.captions.readers.openclipart import scan_openclipart
from tests.conftest import REAL_CLIPART

pytestmark = pytest.mark.skipif(not REAL_CLIPART.is_dir(), reason="needs Debian openclipart-svg")


@pytest.fixture(scope="module")
def scanned() -> list:
    return list(scan_openclipart(OpenclipartCaptions()))


def test_whole_collection_metadata(scanned: list) -> None:
    candidates, rejects, duplicates = select(scanned, limit=None, seed=0)
    symlinks = sum(1 for p in REAL_CLIPART.rglob("*.svg") if p.is_symlink())
    files = sum(1 for p in REAL_CLIPART.rglob("*.svg") if p.is_file() and not p.is_symlink())
    assert len(candidates) >= 7000
    assert len({c.image_id for c in candidates}) == len(candidates) <= files
    assert 0 < duplicates <= symlinks
    captions = Counter(c.caption for c in candidates)
    # Collection names are never used as captions: the file name stands in for them.
    assert not any("gramastar" in c or "Flat Icon Collection" in c or "Lemon SVG" in c for c in captions)
    assert all(any(ch.isalpha() for ch in c) for c in captions)
    no_title = [r for r in rejects if r.reason.startswith("no descriptive title")]
    assert len(no_title) < 0.05 * files


def test_sample_renders(tmp_path: Path) -> None:
    summary = ingest_captions(OpenclipartCaptions(limit=40, seed=1, workers=2, part_size=8), tmp_path, show_progress=False)
    rows = pq.read_table(tmp_path / "captions.parquet").to_pylist()
    assert len(rows) == summary.rows and 30 <= summary.rows <= 40
    assert summary.parts == 5
    for row in rows[:10]:
        with Image.open(row["image_uri"]) as image:
            assert image.size == (224, 224) and image.mode == "RGB"
            low, high = zip(*image.getextrema(), strict=True)
            assert min(low) < 250, "a render must draw something on the white canvas"
