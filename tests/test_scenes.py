"""Scene captions and scene triplets built from training clip-art objects."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image

from scot_data.captions.scenes import ScenesConfig, build_scenes
from scot_data.evaluate.clipart import ClipartObject, Placed, Scene, scene_caption
from scot_data.manifest import read_manifest
from tests.test_clipart_bench import NAMES, make_captions_dir

CFG = ScenesConfig(count=30, known_words=False)


def training_dir(tmp_path: Path) -> Path:
    """The clip-art fixture's drawings as *training* captions; a few names only held out."""
    captions = make_captions_dir(tmp_path)
    rows = pq.read_table(captions / "holdout.parquet")
    names = [r["caption"] for r in rows.to_pylist()]
    held = {i for i, caption in enumerate(names) if caption.lower().startswith(("violin", "guitar"))}
    pq.write_table(
        rows.take([i for i in range(rows.num_rows) if i not in held]), captions / "captions.parquet"
    )
    pq.write_table(rows.take(sorted(held)), captions / "holdout.parquet")
    return captions


def test_scene_caption_names_tints_and_background():
    a, b = ClipartObject("lamp", "i1", "x"), ClipartObject("umbrella", "i2", "x")
    assert (
        scene_caption(Scene((Placed(a, "red"), Placed(b)), "blue"))
        == "a red lamp and an umbrella on a blue background"
    )
    assert scene_caption(Scene((Placed(b),))) == "an umbrella"


def test_scenes_are_finished_stage_directories_with_consistent_edits(tmp_path):
    captions = training_dir(tmp_path)
    summary = build_scenes(captions, tmp_path / "scenes", CFG, show_progress=False)
    assert summary.scenes == summary.triplets == 30 and sum(summary.edit_types.values()) == 30
    assert read_manifest(tmp_path / "scenes" / "captions")["stage"] == "captions"
    assert read_manifest(tmp_path / "scenes" / "triplets")["stage"] == "triplets"
    scenes = pq.read_table(tmp_path / "scenes" / "captions" / "captions.parquet").to_pylist()
    triplets = pq.read_table(tmp_path / "scenes" / "triplets" / "triplets.parquet").to_pylist()
    by_image = {s["image_id"]: s for s in scenes}
    for t in triplets:
        assert by_image[t["image_id"]]["caption"] == t["caption"] != t["modified_caption"]
        assert "violin" not in t["caption"] + t["modified_caption"] + t["modification"]  # held out
        if t["edit_type"] == "remove":
            assert t["caption"].startswith(t["modified_caption"].split(" on a")[0] + " and ")
        if t["edit_type"] == "add":
            assert t["modified_caption"].startswith(t["caption"].split(" on a")[0] + " and ")
    for scene in scenes:
        with Image.open(scene["image_uri"]) as image:
            assert image.size == (224, 224) and image.mode == "RGB"
    assert any(name in scenes[0]["caption"] for name in NAMES)


def test_rebuild_is_skipped_and_builds_are_deterministic(tmp_path):
    captions = training_dir(tmp_path)
    build_scenes(captions, tmp_path / "a", CFG, show_progress=False)
    assert build_scenes(captions, tmp_path / "a", CFG, show_progress=False).skipped
    build_scenes(captions, tmp_path / "b", CFG, show_progress=False)
    for table in ("triplets/triplets.parquet",):
        assert pq.read_table(tmp_path / "a" / table).equals(pq.read_table(tmp_path / "b" / table))
    images = [sorted(p.read_bytes() for p in (tmp_path / d / "captions" / "images").iterdir()) for d in "ab"]
    assert images[0] == images[1]
