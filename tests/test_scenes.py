"""Scene captions and scene triplets built from training clip-art objects."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image

from scot_data.clipart.scene import ClipartObject, Placed, Scene, scene_caption
from scot_data.manifest import read_manifest
from scot_data.scenes.config import ScenesConfig
from scot_data.scenes.stage import build_scenes
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


def test_several_edits_per_scene_keep_the_scenes_and_first_edits(tmp_path):
    """Edits 2..k add triplets over the same reference images; the one-edit build is their prefix."""
    captions = training_dir(tmp_path)
    one = build_scenes(captions, tmp_path / "one", CFG, show_progress=False)
    four = build_scenes(captions, tmp_path / "four", CFG.model_copy(update={"edits_per_scene": 4}),
                        show_progress=False)  # fmt: skip
    def scenes(build: str) -> list[dict]:
        return pq.read_table(tmp_path / build / "captions" / "captions.parquet").drop(["image_uri"]).to_pylist()

    assert scenes("one") == scenes("four")
    assert four.scenes == one.scenes == 30 and 3 * 30 < four.triplets <= 4 * 30
    first = pq.read_table(tmp_path / "one" / "triplets" / "triplets.parquet").to_pylist()
    every = pq.read_table(tmp_path / "four" / "triplets" / "triplets.parquet").to_pylist()
    by_scene: dict[str, list[dict]] = {}
    for t in every:
        by_scene.setdefault(t["image_id"], []).append(t)
    assert [edits[0] for edits in by_scene.values()] == first
    for edits in by_scene.values():
        assert len({t["modified_caption"] for t in edits}) == len(edits)  # distinct targets
        assert len({t["edit_type"] for t in edits}) >= min(3, len(edits))  # kinds vary before repeating
        for t in edits:
            two = " and " in t["caption"].split(" on a")[0]
            assert t["edit_type"] in (("replace", "remove", "background", "recolour") if two
                                      else ("add", "background", "recolour"))  # fmt: skip
            assert t["caption"] != t["modified_caption"]
            if t["edit_type"] == "background":
                assert t["modified_caption"].split(" on a")[0] == t["caption"].split(" on a")[0]
            if t["edit_type"] == "recolour" and two:
                tinted = next(w for w in t["modification"].split() if w in t["modified_caption"].split())
                assert tinted  # the recoloured object is named, not "it"
    assert sum(four.edit_types.values()) == four.triplets


def test_rendered_targets_are_caption_rows_named_by_the_triplets(tmp_path):
    captions = training_dir(tmp_path)
    cfg = CFG.model_copy(update={"edits_per_scene": 2, "render_targets": True})
    summary = build_scenes(captions, tmp_path / "t", cfg, show_progress=False)
    scenes = pq.read_table(tmp_path / "t" / "captions" / "captions.parquet").to_pylist()
    triplets = pq.read_table(tmp_path / "t" / "triplets" / "triplets.parquet").to_pylist()
    by_image = {s["image_id"]: s for s in scenes}
    assert len(by_image) == len(scenes) == summary.images_rendered > 30
    references = {t["image_id"] for t in triplets}
    assert len(references) == 30
    for t in triplets:
        target = by_image[t["target_image_id"]]
        assert target["caption"] == t["modified_caption"] and t["target_image_id"] != t["image_id"]
        assert Path(target["image_uri"]).is_file()
    plain = build_scenes(captions, tmp_path / "p", cfg.model_copy(update={"render_targets": False}),
                         show_progress=False)  # fmt: skip
    assert plain.triplets == summary.triplets
    assert "target_image_id" not in pq.read_schema(tmp_path / "p" / "triplets" / "triplets.parquet").names
