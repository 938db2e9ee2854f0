"""The Combiner: model, SCOT loss, trainer (resume, checkpoints); benchmark metrics are in test_metrics.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from scot_data import ids
from scot_data.combiner import Combiner, CombinerConfig, compose_queries, load_combiner
from scot_data.embed.view import load_embeddings
from scot_data.errors import ScotInputError
from scot_data.manifest import describe_outputs, read_manifest
from scot_data.outdir import LOCK_FILE
from scot_data.train import LossConfig, ScotLoss, TrainConfig, TrainSummary, train_combiner
from scot_data.train.stage import make_split, nearest_images, read_metrics
from scot_data.train.synthetic import write_synthetic_cache
from scot_data.train.view import load_training_view
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
    assert manifest["stage"] == "train" and "combiner.safetensors" in manifest["outputs"]
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
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file() and p.name != LOCK_FILE]
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


def held_out_recall(
    embeddings: Path, triplets: Path, out: Path, cfg: TrainConfig
) -> tuple[dict[str, float], int, int]:
    """R@1 of each query method on the held-out triplets, recomputed apart from the trainer
    from the Combiner saved in ``out``; the number of those triplets; the gallery size (their
    distinct targets).

    The split follows its documented rule (an image is held out when its seeded rank, as a
    fraction of 16**20, is below ``val_fraction``); targets, ranking and the baselines are
    float64 numpy. Only the Combiner's forward pass is shared with the trainer.
    """
    view = load_training_view(embeddings, triplets)
    bound = cfg.val_fraction * 16**ids.ID_HEX_CHARS
    held = np.array([int(ids.sample_rank(cfg.seed, f"val:{i}"), 16) < bound for i in view.image_ids])
    images, texts = view.images.astype(np.float64), view.texts.astype(np.float64)
    v, tm = view.v_index[held], view.tm_index[held]
    if cfg.target == "text":
        targets, bank = view.tu_index[held], texts
    elif cfg.target == "rendered":
        targets, bank = view.target_v_index[held], images
    else:  # the image nearest to the modified caption, never the reference
        scores = texts[view.tu_index[held]] @ images.T
        scores[np.arange(len(v)), v] = -np.inf
        targets, bank = scores.argmax(axis=1), images
    gallery = np.unique(targets)
    with torch.no_grad():
        combined = load_combiner(out)(*(torch.from_numpy(x).float() for x in (images[v], texts[tm])))
    queries = {"combiner": combined.query.double().numpy(), "sum": images[v] + texts[tm],
               "image_only": images[v], "text_only": texts[tm]}  # fmt: skip
    hits = {name: gallery[(q @ bank[gallery].T).argmax(axis=1)] == targets for name, q in queries.items()}
    return {name: float(h.mean()) for name, h in hits.items()}, len(v), len(gallery)


def assert_recorded_recall(summary: TrainSummary, recomputed: dict[str, float], queries: int) -> None:
    """The summary's split and recalls equal the recomputation (recalls to one query: float32
    and float64 may order a near-tie differently)."""
    assert summary.triplets_val == queries
    one_query = 1.01 / queries
    assert summary.val_recall_at_1 == pytest.approx(recomputed["combiner"], abs=one_query)
    assert summary.val_baselines == pytest.approx({k: r for k, r in recomputed.items() if k != "combiner"},
                                                  abs=one_query)  # fmt: skip


def test_max_triplets_trims_train_only_and_image_target_learns(cache, tmp_path):
    full = train_combiner(small_cfg(epochs=1), *cache, tmp_path / "full", show_progress=False)
    cfg = small_cfg(max_triplets=200, target="image")
    trimmed = train_combiner(cfg, *cache, tmp_path / "t", show_progress=False)
    assert trimmed.triplets_train == 200 and trimmed.triplets_val == full.triplets_val
    recomputed, queries, gallery = held_out_recall(*cache, tmp_path / "t", cfg)
    assert_recorded_recall(trimmed, recomputed, queries)
    # Image targets are learnable from 200 triplets: far above chance and above the sum.
    assert recomputed["combiner"] > 10 / gallery and recomputed["combiner"] > recomputed["sum"] + 0.1


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
    manifest = read_manifest(out)  # as the stage that wrote the column would record it
    manifest["outputs"].update(describe_outputs(out, {"triplets.parquet": len(targets)}))
    (out / "manifest.json").write_text(json.dumps(manifest))
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
    cfg = small_cfg(epochs=1, target="rendered")
    summary = train_combiner(cfg, embeddings, with_targets, tmp_path / "r", show_progress=False)
    assert summary.dropped == {"target_image_missing_or_rejected": 1}
    recomputed, queries, _ = held_out_recall(embeddings, with_targets, tmp_path / "r", cfg)
    assert_recorded_recall(summary, recomputed, queries)
    with pytest.raises(ScotInputError, match="target_image_id"):
        train_combiner(small_cfg(epochs=1, target="rendered"), *cache, tmp_path / "no", show_progress=False)


def test_nearest_image_never_the_reference():
    images = torch.eye(4)
    queries = torch.tensor([[1.0, 0.5, 0, 0], [1.0, 0.2, 0.4, 0]])
    assert nearest_images(images, queries, torch.tensor([1, 0])).tolist() == [0, 2]
