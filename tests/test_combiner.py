"""The Combiner: model, SCOT loss, trainer (resume, checkpoints) and benchmark metrics/readers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from scot_data.combiner import (
    Combiner,
    CombinerConfig,
    LossConfig,
    ScotLoss,
    TrainConfig,
    cirr_submission,
    compose_queries,
    fashioniq_average,
    fashioniq_text,
    load_combiner,
    read_circo,
    read_cirr,
    read_fashioniq,
    score_circo,
    score_cirr,
    score_fashioniq,
    train_combiner,
)
from scot_data.combiner.metrics import (
    average_precision_at_k,
    exclude_columns,
    map_at_k,
    recall_at_k,
    subset_recall_at_k,
)
from scot_data.combiner.synthetic import write_synthetic_cache
from scot_data.combiner.train import make_split, nearest_images, read_metrics
from scot_data.embed.view import load_embeddings, load_training_view
from scot_data.errors import ScotInputError
from scot_data.triplets.records import TARGET_IMAGE_COLUMN


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Small matrices on a shared 2-core machine: two OpenMP threads spin-wait and ran 40x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------ model


def test_combiner_shapes_unit_norm_and_lambda_range():
    torch.manual_seed(0)
    model = Combiner(16, CombinerConfig(projection_factor=4, hidden_factor=8)).eval()
    out = model(torch.randn(5, 16), torch.randn(5, 16))
    assert out.query.shape == (5, 16) and out.lam.shape == (5,)
    assert torch.allclose(out.query.norm(dim=-1), torch.ones(5), atol=1e-6)
    assert ((out.lam > 0) & (out.lam < 1)).all()
    assert model.image_projection[0].weight.shape == (64, 16)
    assert model.combiner_layer[0].weight.shape == (128, 128)


def test_baseline_queries():
    image, text = torch.eye(3)[:2], torch.eye(3)[1:]
    summed = compose_queries("sum", image, text)
    assert torch.allclose(summed, (image + text) / math.sqrt(2))
    assert torch.equal(compose_queries("image_only", image, text), image)
    with pytest.raises(ValueError):
        compose_queries("combiner", image, text)


# ------------------------------------------------------------------ loss

DIAG = 1 / math.sqrt(2)


def _loss_example() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Queries e1..e3, targets e1..e3, captions normalize(e_i + e_{i+1}): q_i . c_i = 1/sqrt 2."""
    eye = torch.eye(3)
    captions = (eye + eye.roll(1, dims=1)) * DIAG
    return eye, eye.clone(), captions


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"caption_hard_negative": False}, -math.log(math.e**2 / (math.e**2 + 2))),
        ({"caption_hard_negative": True}, -math.log(math.e**2 / (math.e**2 + 2 + math.e ** (2 * DIAG)))),
        (
            {"batch_caption_negatives": True},
            -math.log(math.e**2 / (math.e**2 + 2 + 2 * math.e ** (2 * DIAG) + 1)),
        ),
        (
            {"caption_hard_negative": True, "symmetric": True},
            (-math.log(math.e**2 / (math.e**2 + 2 + math.e ** (2 * DIAG)))
             - math.log(math.e**2 / (math.e**2 + 2))) / 2,
        ),
    ],
)
def test_loss_matches_hand_computation(options, expected):
    loss = ScotLoss(LossConfig(temperature=0.5, **options))
    assert float(loss(*_loss_example())) == pytest.approx(expected, rel=1e-6)


def test_learnable_temperature_is_a_parameter():
    loss = ScotLoss(LossConfig(temperature=0.5, learnable_temperature=True))
    assert [name for name, _ in loss.named_parameters()] == ["log_scale"]
    assert float(loss.scale.detach()) == pytest.approx(2.0)


# ------------------------------------------------------------------ training


def small_cfg(**overrides) -> TrainConfig:
    values = dict(epochs=12, batch_size=64, lr=1e-3, val_fraction=0.2, device="cpu", checkpoint_every=20,
                  combiner={"dropout": 0.1})  # fmt: skip
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("synthetic")
    return write_synthetic_cache(root, images=300, per_image=4, dim=32, seed=1)


def test_training_lowers_loss_and_beats_sum_on_held_out(cache, tmp_path):
    summary = train_combiner(small_cfg(), *cache, tmp_path / "out", show_progress=False)
    losses = [r["loss"] for r in read_metrics(tmp_path / "out") if "loss" in r]
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])
    assert summary.triplets_val > 50 and summary.triplets_train + summary.triplets_val == 1200
    assert summary.val_recall_at_1 > summary.val_baselines["sum"] + 0.3
    assert summary.val_recall_at_1 > summary.val_baselines["text_only"] + 0.3
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["stage"] == "combiner" and "combiner.safetensors" in manifest["outputs"]
    combiner = load_combiner(tmp_path / "out" / "combiner.safetensors")
    assert combiner.dim == 32
    again = train_combiner(small_cfg(), *cache, tmp_path / "out", show_progress=False)
    assert again.skipped and again.val_recall_at_1 == summary.val_recall_at_1


def test_resume_reaches_the_same_weights(cache, tmp_path):
    cfg = small_cfg(epochs=3, loss={"learnable_temperature": True})
    whole = train_combiner(cfg, *cache, tmp_path / "whole", show_progress=False)
    first = train_combiner(cfg, *cache, tmp_path / "cut", show_progress=False, stop_after_steps=17)
    assert first.steps == 17 and not (tmp_path / "cut" / "manifest.json").exists()
    with open(tmp_path / "cut" / "metrics.jsonl", "a") as log:  # what a kill -9 mid-write leaves
        log.write('{"step": 18, "epoch": 0, "loss": 1.0}\n{"step": 19, "ep')
    resumed = train_combiner(cfg, *cache, tmp_path / "cut", show_progress=False)
    assert resumed.resumed_from_step == 17 and resumed.steps == whole.steps
    a = load_file(str(tmp_path / "whole" / "combiner.safetensors"))
    b = load_file(str(tmp_path / "cut" / "combiner.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    metrics = [(tmp_path / name / "metrics.jsonl").read_text() for name in ("whole", "cut")]
    assert metrics[0] == metrics[1]


def test_checkpoints_of_another_config_are_not_resumed(cache, tmp_path):
    train_combiner(small_cfg(epochs=2), *cache, tmp_path / "out", show_progress=False, stop_after_steps=3)
    changed = train_combiner(small_cfg(epochs=2, lr=5e-4), *cache, tmp_path / "out", show_progress=False)
    fresh = train_combiner(small_cfg(epochs=2, lr=5e-4), *cache, tmp_path / "fresh", show_progress=False)
    assert changed.resumed_from_step is None and changed.steps == fresh.steps
    weights = [load_file(str(tmp_path / d / "combiner.safetensors")) for d in ("out", "fresh")]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[1])
    metrics = [(tmp_path / d / "metrics.jsonl").read_text() for d in ("out", "fresh")]
    assert metrics[0] == metrics[1]  # the stale run's records are gone


def test_checkpoints_hold_no_pickle(cache, tmp_path):
    train_combiner(small_cfg(epochs=2), *cache, tmp_path / "out", show_progress=False, stop_after_steps=5)
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert {p.suffix for p in files} <= {".safetensors", ".json", ".jsonl"}
    for path in files:
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as handle:
                assert list(handle.keys())
        else:
            for line in path.read_text().splitlines() if path.suffix == ".jsonl" else [path.read_text()]:
                json.loads(line)
    optimizer = next((tmp_path / "out").rglob("optimizer.safetensors"))
    assert any(".exp_avg" in k for k in load_file(str(optimizer)))


def test_max_triplets_trims_train_only_and_image_target_runs(cache, tmp_path):
    full = train_combiner(small_cfg(epochs=1), *cache, tmp_path / "full", show_progress=False)
    trimmed = train_combiner(small_cfg(epochs=1, max_triplets=200, target="image"), *cache, tmp_path / "t",
                             show_progress=False)  # fmt: skip
    assert trimmed.triplets_train == 200 and trimmed.triplets_val == full.triplets_val
    assert 0.0 <= trimmed.val_recall_at_1 <= 1.0


def _with_target_images(triplets: Path, out: Path, shift: int) -> tuple[Path, list[str]]:
    """A copy of ``triplets`` whose rows name a target image: the image ``shift`` rows on, and
    one absent id (that triplet must be dropped)."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    shutil.copytree(triplets, out)
    table = pq.read_table(out / "triplets.parquet")
    order = sorted(set(table.column("image_id").to_pylist()))
    targets = [order[(order.index(i) + shift) % len(order)] for i in table.column("image_id").to_pylist()]
    targets[0] = "no-such-image"
    pq.write_table(table.append_column(TARGET_IMAGE_COLUMN, pa.array(targets)), out / "triplets.parquet")
    return out, targets


def test_rendered_targets_train_towards_the_named_image(cache, tmp_path):
    embeddings, triplets = cache
    with_targets, targets = _with_target_images(triplets, tmp_path / "triplets", shift=1)
    view = load_training_view(embeddings, with_targets)
    assert view.dropped == {"target_image_missing_or_rejected": 1} and len(view) == len(targets) - 1
    image_ids = load_embeddings(embeddings, "images").ids.to_pylist()
    assert [image_ids[r] for r in view.target_v_index] == targets[1:]
    images, texts = torch.from_numpy(view.images.astype(np.float32)), torch.from_numpy(view.texts.astype(np.float32))
    split = make_split(view, np.arange(len(view)), images, texts, "rendered")
    assert torch.equal(split.target_bank, images)
    assert torch.equal(split.batch(torch.arange(3))[2], images[torch.from_numpy(view.target_v_index[:3])])
    summary = train_combiner(small_cfg(epochs=1, target="rendered"), embeddings, with_targets, tmp_path / "r",
                             show_progress=False)  # fmt: skip
    assert summary.dropped == {"target_image_missing_or_rejected": 1} and 0.0 <= summary.val_recall_at_1 <= 1.0
    with pytest.raises(ScotInputError, match="target_image_id"):
        train_combiner(small_cfg(epochs=1, target="rendered"), *cache, tmp_path / "no", show_progress=False)


def test_nearest_image_never_the_reference():
    images = torch.eye(4)
    queries = torch.tensor([[1.0, 0.5, 0, 0], [1.0, 0.2, 0.4, 0]])
    assert nearest_images(images, queries, torch.tensor([1, 0])).tolist() == [0, 2]


# ------------------------------------------------------------------ metrics, by hand

SCORES = np.array([[0.1, 0.9, 0.5, 0.3], [0.6, 0.7, 0.1, 0.9]])


def test_recall_with_and_without_reference_exclusion():
    # q0: target 2 ranks 2nd (after col 1); q1: target 0 ranks 3rd (cols 3, 1 first).
    assert recall_at_k(SCORES, [2, 0], (1, 2, 3)) == {1: 0.0, 2: 50.0, 3: 100.0}
    # Excluding references (q0: col 1, q1: col 3): q0 ranks 1st, q1 2nd.
    assert recall_at_k(exclude_columns(SCORES, [1, 3]), [2, 0], (1, 2)) == {1: 50.0, 2: 100.0}


def test_cirr_subset_protocol_drops_the_reference():
    # q0 members {1, 2, 3} minus reference 1 -> {2: .5, 3: .3}: rank 1.
    # q1 members {3, 2, 0} minus reference 3 -> {2: .1, 0: .6}: rank 1 (col 1, scored .7, is not a member).
    assert subset_recall_at_k(SCORES, [2, 0], [[1, 2, 3], [3, 2, 0]], [1, 3], (1, 2)) == {1: 100.0, 2: 100.0}
    # q1 with member 1 kept: .7 beats the target's .6 -> rank 2.
    assert subset_recall_at_k(SCORES, [2, 0], [[1, 2, 3], [3, 1, 0]], [1, 3], (1, 2)) == {1: 50.0, 2: 100.0}


def test_circo_average_precision_by_hand():
    # ranked 5, 2, 7, 1 with relevant {2, 1, 9}: hits at 2 and 4 -> (1/2 + 2/4) / min(4, 3) = 1/3.
    assert average_precision_at_k([5, 2, 7, 1], {2, 1, 9}, 4) == pytest.approx(1 / 3)
    assert average_precision_at_k([5, 2, 7, 1], {2, 1, 9}, 2) == pytest.approx(0.5 / 2)
    scores = np.zeros((1, 10))
    scores[0, [5, 2, 7, 1]] = [4, 3, 2, 1]
    assert map_at_k(scores, [{2, 1, 9}], (2, 4)) == pytest.approx({2: 25.0, 4: 100 / 3})


# ------------------------------------------------------------------ readers on the official layouts


def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def test_fashioniq_reader_joins_two_captions_and_scores(tmp_path):
    assert fashioniq_text(["is blue.", "has short sleeves "]) == "Is blue and has short sleeves"
    _write(tmp_path / "captions" / "cap.dress.val.json", [
        {"candidate": "a", "target": "b", "captions": ["is red", "longer."]},
        {"candidate": "b", "target": "c", "captions": ["is green", "shorter"]},
    ])  # fmt: skip
    _write(tmp_path / "image_splits" / "split.dress.val.json", ["a", "b", "c"])
    bench = read_fashioniq(tmp_path, "dress", "val")
    assert [q.text for q in bench.queries] == ["Is red and longer", "Is green and shorter"]
    assert bench.names == ["a", "b", "c"] and bench.gallery["a"] == tmp_path / "images" / "a.png"
    scores = np.array([[0.0, 1.0, 0.5], [0.0, 1.0, 0.5]])  # q0 finds b (right), q1 ranks c 2nd
    metrics = score_fashioniq(scores, bench)
    assert metrics == {"R@10": 100.0, "R@50": 100.0}
    per_category = {"dress": {"R@10": 10.0}, "shirt": {"R@10": 20.0}, "toptee": {"R@10": 60.0}}
    assert fashioniq_average(per_category) == {"R@10": 30.0}


def _cirr_fixture(root: Path, split: str, with_targets: bool) -> None:
    names = [f"img{i}" for i in range(55)]
    records = [
        {"pairid": 7, "reference": "img1", "target_hard": "img2", "caption": "make it red",
         "img_set": {"id": 0, "members": ["img1", "img2", "img3"]}},
        {"pairid": 9, "reference": "img3", "target_hard": "img0", "caption": "two of them",
         "img_set": {"id": 1, "members": ["img3", "img2", "img0"]}},
    ]  # fmt: skip
    if not with_targets:
        for r in records:
            r.pop("target_hard")
    _write(root / "captions" / f"cap.rc2.{split}.json", records)
    _write(root / "image_splits" / f"split.rc2.{split}.json", {n: f"./{split}/{n}.png" for n in names})


def _cirr_scores() -> np.ndarray:
    scores = np.zeros((2, 55))
    scores[:, :4] = SCORES
    return scores


def test_cirr_reader_and_metrics(tmp_path):
    _cirr_fixture(tmp_path, "val", with_targets=True)
    bench = read_cirr(tmp_path, "val")
    assert [q.query_id for q in bench.queries] == ["7", "9"]
    assert bench.queries[1].members == ("img3", "img2", "img0")
    assert bench.gallery["img4"] == tmp_path / "val" / "img4.png"
    metrics = score_cirr(_cirr_scores(), bench)
    assert metrics["R@1"] == 50.0 and metrics["R@5"] == 100.0
    assert metrics["R_subset@1"] == 100.0


def test_cirr_submission_format(tmp_path):
    _cirr_fixture(tmp_path, "test1", with_targets=False)
    bench = read_cirr(tmp_path, "test1")
    recall, subset = cirr_submission(_cirr_scores(), bench)
    assert recall["version"] == "rc2" and recall["metric"] == "recall"
    assert subset["version"] == "rc2" and subset["metric"] == "recall_subset"
    assert set(recall) == {"version", "metric", "7", "9"} and set(subset) == set(recall)
    assert len(recall["7"]) == 50 and len(set(recall["7"])) == 50 and "img1" not in recall["7"]
    assert recall["7"][:3] == ["img2", "img3", "img0"]
    assert subset["7"] == ["img2", "img3"] and subset["9"] == ["img0", "img2"]
    json.dumps(recall)


def test_circo_reader_and_map(tmp_path):
    _write(tmp_path / "annotations" / "val.json", [
        {"id": 0, "reference_img_id": 5, "target_img_id": 2, "relative_caption": "is a cat",
         "shared_concept": "", "gt_img_ids": [2, 1, 9]},
    ])  # fmt: skip
    _write(tmp_path / "COCO2017_unlabeled" / "annotations" / "image_info_unlabeled2017.json",
           {"images": [{"id": i, "file_name": f"{i:012d}.jpg"} for i in range(10)]})  # fmt: skip
    bench = read_circo(tmp_path, "val")
    assert bench.queries[0].targets == ("2", "1", "9") and bench.queries[0].reference == "5"
    assert bench.gallery["3"].name == "000000000003.jpg"
    scores = np.zeros((1, 10))
    scores[0, [5, 2, 7, 1]] = [5, 3, 2, 1]  # the reference (5) is excluded: ranking 2, 7, 1
    metrics = score_circo(scores, bench)
    # hits at 1 and 3: (1 + 2/3) / 3
    assert metrics["mAP@5"] == pytest.approx(100 * (1 + 2 / 3) / 3)


def test_readers_name_the_missing_file(tmp_path):
    with pytest.raises(ScotInputError, match=r"cap\.rc2\.val\.json"):
        read_cirr(tmp_path, "val")
