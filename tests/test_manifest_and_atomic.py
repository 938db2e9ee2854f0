"""Atomic writes, manifests and the completeness check that drives resume and skip."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from scot_data import ids
from scot_data.atomic import TMP_MARK, atomic_path, atomic_write_json
from scot_data.captions.config import CocoCaptions
from scot_data.captions.ingest import ingest_captions, select
from scot_data.captions.records import Candidate, LocalImage
from scot_data.manifest import is_complete, read_manifest
from scot_data.outdir import remove_own_temporaries


def test_atomic_path_leaves_nothing_on_error(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_mode_and_content(tmp_path: Path) -> None:
    path = atomic_write_json(tmp_path / "a" / "x.json", {"b": 1, "a": [1, 2]})
    assert json.loads(path.read_text()) == {"a": [1, 2], "b": 1}
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_own_temporaries_removed_only_where_named(tmp_path: Path) -> None:
    """Scot's temporaries go, in the folder and its named subfolders only; a user's
    ``*.tmp-*`` file and a temporary in an unnamed subfolder stay."""
    for sub in ("parts", "theirs"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / f"captions.parquet{TMP_MARK}abc").write_bytes(b"partial")
    (tmp_path / f"stats.json{TMP_MARK}x").write_bytes(b"partial")
    (tmp_path / "report.tmp-final.docx").write_bytes(b"a person's file")
    (tmp_path / "keep.parquet").write_bytes(b"whole")
    assert remove_own_temporaries(tmp_path, ["parts"]) == 2
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == [
        "keep.parquet", "report.tmp-final.docx", f"theirs/captions.parquet{TMP_MARK}abc"]


def test_stable_ids_and_seeded_sample() -> None:
    assert ids.stable_id("ab", "c") != ids.stable_id("a", "bc")
    assert ids.caption_id("coco", "1.jpg", "a dog") == ids.caption_id("coco", "1.jpg", "a dog")
    assert len(ids.image_id("coco", "1.jpg")) == ids.ID_HEX_CHARS

    def candidate(i: int) -> Candidate:
        key = f"{i}.jpg"
        return Candidate(ids.caption_id("s", key, "c"), ids.image_id("s", key), key, "c", "s", LocalImage(key), "f", str(i))

    pool = [candidate(i) for i in range(100)]
    small, _, _ = select(pool, limit=10, seed=3)
    large, _, _ = select(list(reversed(pool)), limit=30, seed=3)
    other, _, _ = select(pool, limit=10, seed=4)
    assert len(small) == 10 and len(large) == 30
    assert {c.caption_id for c in small} <= {c.caption_id for c in large}
    assert {c.caption_id for c in small} != {c.caption_id for c in other}
    assert [c.record for c in small] == sorted((c.record for c in small), key=int)


def test_manifest_guards_completeness(coco_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cfg = CocoCaptions(input=coco_dir / "annotations/captions_train2017.json", images=coco_dir / "train2017")
    ingest_captions(cfg, out, show_progress=False)
    manifest = read_manifest(out)
    assert manifest is not None
    fingerprint = manifest["fingerprint"]
    assert is_complete(out, "captions", fingerprint)
    assert not is_complete(out, "triplets", fingerprint)
    assert not is_complete(out, "captions", "0" * 64)

    with open(out / "captions.parquet", "ab") as handle:
        handle.write(b"tampered")
    assert not is_complete(out, "captions", fingerprint)
    rerun = ingest_captions(cfg, out, show_progress=False)
    assert not rerun.skipped and rerun.rows == 5
    assert is_complete(out, "captions", fingerprint)


def test_workers_do_not_change_output(coco_dir: Path, tmp_path: Path) -> None:
    base = {"input": coco_dir / "annotations/captions_train2017.json", "images": coco_dir / "train2017"}
    one = ingest_captions(CocoCaptions(**base, workers=1, part_size=2), tmp_path / "a", show_progress=False)
    two = ingest_captions(CocoCaptions(**base, workers=2, part_size=2), tmp_path / "b", show_progress=False)
    assert (tmp_path / "a/captions.parquet").read_bytes() == (tmp_path / "b/captions.parquet").read_bytes()
    assert one.candidates == 7 and one.parts == two.parts == 4  # ceil(7 candidates / 2)
    assert read_manifest(tmp_path / "a")["fingerprint"] == read_manifest(tmp_path / "b")["fingerprint"]
