"""The clip-art benchmark: CIRR layout, texts that match the scenes, determinism, resume."""

from __future__ import annotations

import colorsys
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageDraw

from scot_data.clipart.config import KINDS, ClipartBenchConfig
from scot_data.clipart.names import article, is_usable_name, normalise_name, word_vocabulary
from scot_data.clipart.scene import ClipartObject
from scot_data.errors import ScotInputError
from scot_data.evaluate.cirr import read_split
from scot_data.evaluate.clipart import (
    build_clipart_benchmark,
    candidate_drawings,
    plan_queries,
    split_objects,
    training_names,
)

FILLS = (
    (180, 20, 40),
    (20, 30, 110),
    (110, 110, 20),
    (0, 120, 120),
    (220, 170, 30),
    (140, 80, 200),
    (110, 20, 30),
    (0, 190, 210),
)
SHAPES = ("circle", "triangle", "star", "diamond", "cross")
# Held-out object names, no word shared (a query never mixes names that share a word).
NAMES = (
    "otter", "badger", "lantern", "anchor", "umbrella", "kettle", "violin", "walrus", "garlic toast",
    "paper kite", "acorn", "beetle", "compass", "drum", "easel", "falcon", "guitar", "hammer", "igloo",
    "jacket", "koala", "ladder", "mitten", "needle", "orchid", "parrot", "quill", "rocket", "saddle",
    "teapot", "unicorn", "vase", "wagon", "yacht", "zebra", "bicycle", "cactus", "dolphin", "envelope",
    "feather",
)  # fmt: skip
TRAINING_ONLY = ("otter", "paper kite")  # also held out: must never be used
SIZE = 224
# The fixture's names are test words, not all in the text tower's vocabulary (see
# test_known_words_keep_names_the_text_tower_knows for that filter).
CFG = ClipartBenchConfig(queries_per_kind=6, known_words=False, min_objects=10)
SPLITS = ("val", "test")


def _shape(
    draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], fill: tuple[int, ...]
) -> None:
    x0, y0, x1, y1 = box
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    if shape == "circle":
        draw.ellipse(box, fill=fill, outline=(0, 0, 0), width=3)
    elif shape == "triangle":
        draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=fill, outline=(0, 0, 0))
    elif shape == "diamond":
        draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=fill)
    elif shape == "cross":
        t = r / 3
        draw.rectangle((cx - t, y0, cx + t, y1), fill=fill)
        draw.rectangle((x0, cy - t, x1, cy + t), fill=fill)
    else:
        points = [(cx + (r if i % 2 == 0 else r / 2.5) * math.sin(i * math.pi / 5),
                   cy - (r if i % 2 == 0 else r / 2.5) * math.cos(i * math.pi / 5)) for i in range(10)]  # fmt: skip
        draw.polygon(points, fill=fill)


def _drawing(path: Path, shape: str, fill: tuple[int, int, int], offset: int) -> str:
    image = Image.new("RGB", (SIZE, SIZE), (255, 255, 255))
    _shape(ImageDraw.Draw(image), shape, (30 + offset, 40, 180 + offset, 190), fill)
    image.save(path)
    return str(path)


def _table(rows: list[tuple[str, str, str]]) -> pa.Table:
    return pa.table({
        "caption_id": [f"c{i}" for i in range(len(rows))],
        "image_id": [r[0] for r in rows],
        "image_uri": [r[1] for r in rows],
        "caption": [r[2] for r in rows],
        "source": ["openclipart"] * len(rows),
    })  # fmt: skip


def make_captions_dir(root: Path) -> Path:
    """40 shape objects held out (2 also in training), plus drawings and names the build must skip."""
    images = root / "images"
    images.mkdir(parents=True)
    holdout = []
    for i, name in enumerate(NAMES):
        shape, key = SHAPES[i % len(SHAPES)], name.replace(" ", "-")
        uri = _drawing(images / f"{key}.png", shape, FILLS[i % len(FILLS)], i % 7 * 4)
        holdout.append((key, uri, f"{name.title()} (shape, test). A {shape}."))
    holdout.append(("otter-2", _drawing(images / "otter-2.png", "circle", (200, 0, 0), 10), "an otter (x)"))
    holdout.append(("badger-2", _drawing(images / "badger-2.png", "star", (0, 0, 0), 10), "the badger (x)"))
    blank = Image.new("RGB", (SIZE, SIZE), (255, 255, 255))
    ImageDraw.Draw(blank).ellipse((100, 100, 104, 104), fill=(0, 0, 0))
    blank.save(images / "blank.png")
    Image.new("RGB", (SIZE, SIZE), (30, 30, 200)).save(images / "panel.png")
    holdout += [
        ("blank", str(images / "blank.png"), "lonely dot (shape)"),
        ("panel", str(images / "panel.png"), "blue panel (shape)"),
        ("plural", str(images / "acorn.png"), "acorn stars (shape)"),
        ("long", str(images / "acorn.png"), "a very long star name (shape)"),
        ("digits", str(images / "acorn.png"), "star 2000 (shape)"),
    ]
    training = [
        ("t1", "x", f"{TRAINING_ONLY[0]} (shape)"),
        ("t2", "x", f"{TRAINING_ONLY[1]} (shape). A star."),
    ]
    out = root / "captions"
    out.mkdir()
    pq.write_table(_table(holdout), out / "holdout.parquet")
    pq.write_table(_table(training + [("t3", "x", "garden gnome (garden)")]), out / "captions.parquet")
    return out


def _names() -> set[str]:
    return set(NAMES) - set(TRAINING_ONLY)


def _tree_digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


@pytest.fixture(scope="module")
def captions_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_captions_dir(tmp_path_factory.mktemp("clipart-src"))


@pytest.fixture(scope="module")
def built(captions_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clipart-bench")
    build_clipart_benchmark(captions_dir, out, CFG, show_progress=False)
    return out


def _records(out: Path, split: str = "val") -> list[dict]:
    return json.loads((out / "captions" / f"cap.rc2.{split}.json").read_text())


def _objects_of(out: Path, split: str) -> set[str]:
    """Every object name in the split's texts and target captions (read from the files)."""
    return {name for r in _records(out, split) for name in _names() if name in r["target_caption"] + r["caption"]}


def test_names_and_articles() -> None:
    assert normalise_name("Apple  Bitten (food, fruit). Apple with a bite.") == "apple bitten"
    assert normalise_name("A teapot (kitchen)") == "teapot" and normalise_name("a (x)") == "a"
    assert normalise_name("aiga no smoking (symbol)") == "aiga no smoking"
    assert is_usable_name("garlic toast", 3) and is_usable_name("cactus", 3)
    assert not is_usable_name("dead frogs", 3) and not is_usable_name("a b c d", 3)
    assert not is_usable_name("robot 2000", 3)
    assert [article(w) for w in ("apple", "pear", "unicorn", "hour glass", "orange background")] == [
        "an apple", "a pear", "a unicorn", "an hour glass", "an orange background"
    ]  # fmt: skip


def test_unseen_objects_only(captions_dir: Path) -> None:
    excluded = training_names(captions_dir / "captions.parquet")
    drawings = candidate_drawings(captions_dir / "holdout.parquet", excluded, 3)
    assert set(drawings) == _names() | {"lonely dot", "blue panel"} and len(drawings["badger"]) == 2


@pytest.mark.parametrize("split", SPLITS)
def test_reads_as_cirr_and_oracle_scores_100(built: Path, split: str) -> None:
    from scot_data.evaluate.registry import get_benchmark

    bench = read_split(built, split=split, name="clipart")
    assert len(bench.queries) == CFG.queries_per_kind * len(KINDS)
    targets = bench.columns([q.targets[0] for q in bench.queries])
    scores = np.zeros((len(bench.queries), len(bench.gallery)))
    scores[np.arange(len(targets)), targets] = 1.0
    values = get_benchmark("clipart").query_values(bench, scores)
    assert values["R@1"].tolist() == [1.0] * len(targets) and values["R_subset@1"].mean() == 1.0


def test_val_and_test_use_disjoint_objects_and_images(built: Path) -> None:
    val, test = (_objects_of(built, split) for split in SPLITS)
    assert val and test and not val & test
    listings = [json.loads((built / "image_splits" / f"split.rc2.{s}.json").read_text()) for s in SPLITS]
    assert not set(listings[0]) & set(listings[1])
    stats = json.loads((built / "stats.json").read_text())
    assert set(stats["objects"]["val"]) == val and set(stats["objects"]["test"]) == test
    assert stats["queries"] == {s: dict.fromkeys(KINDS, 6) for s in SPLITS}


def test_objects_are_dealt_by_share_and_seed() -> None:
    objects = [ClipartObject(n, n.replace(" ", "-"), "unused") for n in sorted(_names())]
    parts = split_objects(objects, CFG)
    assert [len(parts[s]) for s in SPLITS] == [round(0.4 * len(objects)), len(objects) - round(0.4 * len(objects))]
    assert sorted(o.name for part in parts.values() for o in part) == sorted(o.name for o in objects)
    assert split_objects(list(reversed(objects)), CFG)["val"] == [o for o in reversed(objects) if o in parts["val"]]
    other = split_objects(objects, CFG.model_copy(update={"seed": 1}))
    assert {o.name for o in other["val"]} != {o.name for o in parts["val"]}


def test_layout_members_and_images(built: Path) -> None:
    records = _records(built)
    split = json.loads((built / "image_splits" / "split.rc2.val.json").read_text())
    both = split | json.loads((built / "image_splits" / "split.rc2.test.json").read_text())
    assert {kind: sum(r["edit_kind"] == kind for r in records) for kind in KINDS} == dict.fromkeys(KINDS, 6)
    for r in records:
        members = r["img_set"]["members"]
        assert len(members) == len(set(members)) == 6 and r["reference"] != r["target_hard"]
        assert members[r["img_set"]["reference_rank"]] == r["reference"]
        assert members[r["img_set"]["target_rank"]] == r["target_hard"]
        assert set(members) <= set(split) and r["target_soft"] == {r["target_hard"]: 1.0}
    for name, rel in split.items():
        assert name.startswith("clipart-") and len(name) == len("clipart-") + 20
        with Image.open(built / rel) as image:
            assert image.size == (SIZE, SIZE) and image.mode == "RGB"
    assert sorted(p.name for p in (built / "images").iterdir()) == sorted(f"{n}.png" for n in both)
    stats = json.loads((built / "stats.json").read_text())
    assert stats["objects_available"] == len(_names()) and set().union(*stats["objects"].values()) <= _names()


def test_texts_name_the_edited_parts() -> None:
    objects = [ClipartObject(n, n.replace(" ", "-"), "unused") for n in sorted(_names())]
    for query in plan_queries(objects, CFG):
        ref, target = query.reference.items, query.target.items
        if query.kind == "replace":
            assert ref[1].obj.name in query.text and target[1].obj.name in query.text
            assert ref[0] == target[0] and ref[1] != target[1]
        elif query.kind in ("add", "remove"):
            extra = target[1] if query.kind == "add" else ref[1]
            assert extra.obj.name in query.text and len(ref) + len(target) == 3
        elif query.kind == "background":
            assert query.target.background in query.text and ref == target
        else:
            assert target[0].tint in query.text and ref[0].obj == target[0].obj and ref[0].tint is None


def _colour_in(text: str) -> str:
    found = [c for c in CFG.colours if c in text.split()]
    assert len(found) == 1, text
    return found[0]


def _hue(rgb: tuple[int, int, int]) -> float:
    return colorsys.rgb_to_hsv(*(c / 255 for c in rgb))[0] * 360


def test_colours_show_in_targets(built: Path) -> None:
    for r in _records(built):
        if r["edit_kind"] not in ("background", "recolour"):
            continue
        colour = CFG.rgb(_colour_in(r["caption"]))
        pixels = np.asarray(Image.open(built / "images" / f"{r['target_hard']}.png")).reshape(-1, 3)
        if r["edit_kind"] == "background":
            assert tuple(pixels[0]) == colour
            continue
        ink = pixels[pixels.min(axis=1) < 235]
        hues = np.array([_hue(tuple(p)) for p in ink[:: max(1, len(ink) // 500)]])
        off = np.abs((hues - _hue(colour) + 180) % 360 - 180)
        assert np.median(off) < 10, r["caption"]


def test_training_names_never_in_texts(built: Path) -> None:
    texts = " | ".join(r["caption"] for r in _records(built))
    for name in (*TRAINING_ONLY, "lonely dot", "blue panel", "acorn stars"):
        assert name not in texts


def test_rebuild_is_skipped(built: Path, captions_dir: Path) -> None:
    summary = build_clipart_benchmark(captions_dir, built, CFG, show_progress=False)
    assert summary.skipped and summary.images_rendered == 0
    assert summary.queries == {s: dict.fromkeys(KINDS, 6) for s in SPLITS}


def test_deterministic_and_resumes(built: Path, captions_dir: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    first = build_clipart_benchmark(captions_dir, again, CFG, show_progress=False)
    assert first.images_rendered == first.gallery_images
    assert _tree_digests(again) == _tree_digests(built)
    lost = sorted((again / "images").iterdir())[3]
    lost_bytes = lost.read_bytes()
    lost.unlink()
    (again / "manifest.json").unlink()
    resumed = build_clipart_benchmark(captions_dir, again, CFG, show_progress=False)
    assert not resumed.skipped and resumed.images_rendered == 1
    assert lost.read_bytes() == lost_bytes and _tree_digests(again) == _tree_digests(built)


def test_missing_holdout_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "captions").mkdir()
    with pytest.raises(ScotInputError, match=r"holdout\.parquet"):
        build_clipart_benchmark(tmp_path / "captions", tmp_path / "out", CFG, show_progress=False)


def test_too_few_objects(captions_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ScotInputError, match=r"holdout\.parquet: split 'val' gets 15 of 38 usable unseen objects, "
                                             r"need at least 16"):
        build_clipart_benchmark(captions_dir, tmp_path, CFG.model_copy(update={"min_objects": 16}))


def test_known_words_keep_names_the_text_tower_knows(tmp_path: Path) -> None:
    vocabulary = word_vocabulary()
    assert {"violin", "guitar", "umbrella"} <= vocabulary and not {"rpswb", "scolapasta"} & vocabulary
    assert is_usable_name("garlic toast", 3, vocabulary) and not is_usable_name("kgoldrunner", 3, vocabulary)
    captions_dir = make_captions_dir(tmp_path)
    known = candidate_drawings(captions_dir / "holdout.parquet", set(TRAINING_ONLY), 3, vocabulary)
    everything = candidate_drawings(captions_dir / "holdout.parquet", set(TRAINING_ONLY), 3)
    assert set(known) < set(everything)
    assert set(known) == {n for n in everything if all(w in vocabulary for w in n.split())}


def test_target_caption_table_lists_each_target_scene_once(built: Path, tmp_path: Path) -> None:
    from scot_data.evaluate.clipart import target_caption_table

    records = _records(built)
    table = target_caption_table(built).to_pylist()
    assert [r["image_id"] for r in table] == list(dict.fromkeys(r["target_hard"] for r in records))
    caption_of = {r["target_hard"]: r["target_caption"] for r in records}
    for row in table:
        assert row["caption"] == caption_of[row["image_id"]] and Path(row["image_uri"]).is_file()
    assert {r["caption"] for r in target_caption_table(built, "test").to_pylist()} == {
        r["target_caption"] for r in _records(built, "test")}
    with pytest.raises(ScotInputError, match=r"rc2\.train\.json: missing"):
        target_caption_table(built, "train")
