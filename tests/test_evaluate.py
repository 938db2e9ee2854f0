"""``scot evaluate`` / ``scot search`` end to end on tiny benchmarks in the official layouts.

A seeded tiny open_clip model embeds real PNG files. Figures are checked two ways, neither
through the scoring code under test: recomputed from the encoder directly (encode, compose,
then ranks counted by brute force here), and known by construction (a target that is a
pixel copy of its reference is found at rank 1 by image-only search where the protocol
removes the reference, and at rank 2 where it keeps it).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from scot_data.cli import app
from scot_data.combiner import Combiner, CombinerConfig, load_combiner, save_combiner
from scot_data.combiner.model import compose_queries
from scot_data.encoders import create_encoder
from scot_data.errors import ScotInputError
from scot_data.evaluate.ablate import (
    ablation_table,
    ablation_tables,
    delta_table,
    kind_table,
    load_ablation,
    markdown,
    run_ablation,
)
from scot_data.evaluate.circo import read_split as read_circo
from scot_data.evaluate.cirr import read_split as read_cirr
from scot_data.evaluate.evaluate import EvalConfig, evaluate
from scot_data.evaluate.fashioniq import read_category as read_fashioniq
from scot_data.evaluate.retriever import Retriever, faiss_available
from scot_data.evaluate.search import search
from scot_data.manifest import read_manifest, write_manifest
from tests.conftest import png_bytes

N_IMAGES = 12


def _json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _images(folder: Path, names: list[str], suffix: str = ".png") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        (folder / f"{name}{suffix}").write_bytes(png_bytes(i, size=48))


def cirr_layout(root: Path, split: str = "val", targets: bool = True) -> Path:
    names = [f"img{i}" for i in range(N_IMAGES)]
    _images(root / split, names)
    records = []
    for q in range(6):
        ref, target = names[q], names[(q * 5 + 3) % N_IMAGES]
        record = {"pairid": 100 + q, "reference": ref, "caption": f"make it number {q}", "edit_kind": "ab"[q % 2],
                  "img_set": {"id": q, "members": [ref, target, names[(q + 7) % N_IMAGES], names[(q + 9) % N_IMAGES]]}}  # fmt: skip
        if targets:
            record["target_hard"] = target
        records.append(record)
    _json(root / "captions" / f"cap.rc2.{split}.json", records)
    _json(root / "image_splits" / f"split.rc2.{split}.json", {n: f"./{split}/{n}.png" for n in names})
    return root


def brute_ranks(scores: np.ndarray, bench, exclude_reference: bool) -> list[int]:
    """1-based rank of each query's best target, counted one gallery image at a time: images
    scoring higher, or equal and listed earlier, come first; the reference is skipped when
    the protocol removes it."""
    names = list(bench.gallery)
    ranks = []
    for row, query in zip(scores, bench.queries):
        best = None
        for target in query.targets:
            t = names.index(target)
            ahead = sum(1 for c, name in enumerate(names)
                        if c != t and not (exclude_reference and name == query.reference)
                        and (row[c] > row[t] or (row[c] == row[t] and c < t)))  # fmt: skip
            best = ahead + 1 if best is None else min(best, ahead + 1)
        ranks.append(best)
    return ranks


def brute_recall(scores: np.ndarray, bench, ks=(1, 5, 10, 50), exclude_reference: bool = True) -> dict[str, float]:
    ranks = brute_ranks(scores, bench, exclude_reference)
    return {f"R@{k}": 100.0 * sum(r <= k for r in ranks) / len(ranks) for k in ks}


def brute_subset_r1(scores: np.ndarray, bench) -> float:
    """R_subset@1: the target beats every other member but the reference (earlier wins ties)."""
    names = list(bench.gallery)
    wins = 0
    for row, q in zip(scores, bench.queries):
        others = [m for m in dict.fromkeys(q.members) if m not in (q.reference, q.targets[0])]
        t = names.index(q.targets[0])
        wins += all(row[t] > row[names.index(m)] or (row[t] == row[names.index(m)] and t < names.index(m))
                    for m in others)  # fmt: skip
    return 100.0 * wins / len(bench.queries)


def brute_map(scores: np.ndarray, bench, k: int) -> float:
    """CIRCO mAP@k by its definition, over the whole gallery (the reference stays in)."""
    names = list(bench.gallery)
    total = 0.0
    for row, q in zip(scores, bench.queries):
        order = sorted(range(len(names)), key=lambda c: (-row[c], c))[:k]
        hits, ap = 0, 0.0
        for i, c in enumerate(order, start=1):
            if names[c] in q.targets:
                hits += 1
                ap += hits / i
        total += ap / min(k, len(q.targets))
    return 100.0 * total / len(bench.queries)


def direct_scores(spec: str, bench, method: str, combiner=None) -> np.ndarray:
    """The same scores computed without the cache: encode every image and text directly."""
    encoder = create_encoder(spec, device="cpu")
    pixels = torch.stack([encoder.image_transform(Image.open(path)) for path in bench.gallery.values()])
    gallery = encoder.encode_images(pixels).half().float()  # the cache's contract: float16 vectors
    index = {name: i for i, name in enumerate(bench.gallery)}
    refs = gallery[[index[q.reference] for q in bench.queries]]
    texts = encoder.encode_texts([q.text for q in bench.queries]).half().float()
    return (compose_queries(method, refs, texts, combiner) @ gallery.T).numpy()


def test_cirr_layout_metrics_match_direct_computation_and_cache_is_reused(tiny_spec, tmp_path):
    root = cirr_layout(tmp_path / "cirr")
    cfg = EvalConfig(benchmark="cirr", data=root, encoder=tiny_spec, device="cpu", num_workers=0)
    results = evaluate(cfg, tmp_path / "out", show_progress=False)
    bench = read_cirr(root, "val")
    assert results["methods"] == ["image_only", "text_only", "sum"] and results["query_count"] == 6
    for method in results["methods"]:
        scores = direct_scores(tiny_spec, bench, method)
        got = results["metrics"]["cirr"][method]
        assert {k: got[k] for k in ("R@1", "R@5", "R@10", "R@50")} == pytest.approx(brute_recall(scores, bench)), method
        assert got["R_subset@1"] == pytest.approx(brute_subset_r1(scores, bench)), method
        ranks = pq.read_table(tmp_path / "out" / "queries.parquet").column(f"rank_{method}").to_pylist()
        assert ranks == brute_ranks(scores, bench, exclude_reference=True), method
    # the reference never retrieves itself: image-only would otherwise be R@1 = 100
    assert results["metrics"]["cirr"]["image_only"]["R@1"] < 100.0
    assert set(results["by_kind"]["cirr"]) == {"a", "b"}
    sample = results["queries"][0]
    assert len(sample["top_k"]["sum"]) == 10 and sample["reference"] not in [
        h["name"] for h in sample["top_k"]["sum"]
    ]
    assert json.loads((tmp_path / "out" / "results.json").read_text())["metrics"] == results["metrics"]

    again = evaluate(cfg, tmp_path / "out", show_progress=False)
    assert again["metrics"] == results["metrics"]
    stats = json.loads((tmp_path / "out" / "cache" / "cirr-val" / "stats.json").read_text())
    assert stats["images"] == N_IMAGES and stats["texts"] == 6


def test_combiner_method_uses_the_checkpoint_and_its_encoder(tiny_spec, tmp_path):
    root = cirr_layout(tmp_path / "cirr")
    torch.manual_seed(3)
    combiner = Combiner(32).eval()
    train_dir = tmp_path / "train"
    save_combiner(train_dir / "combiner.safetensors", combiner, CombinerConfig())
    key = create_encoder(tiny_spec, device="cpu").identity.key()
    write_manifest(train_dir, "combiner", {}, [], {"combiner.safetensors": None},
                   extra={"encoder": {"spec": tiny_spec, "key": key}})  # fmt: skip
    cfg = EvalConfig(benchmark="cirr", data=root, combiner=train_dir / "combiner.safetensors", device="cpu",
                     num_workers=0)  # fmt: skip
    results = evaluate(cfg, tmp_path / "out", show_progress=False)
    assert results["encoder"] == tiny_spec and results["methods"][-1] == "combiner"
    expected = brute_recall(direct_scores(tiny_spec, read_cirr(root), "combiner", combiner), read_cirr(root))
    assert {k: results["metrics"]["cirr"]["combiner"][k] for k in expected} == pytest.approx(expected)
    delta = results["deltas"]["cirr"]["combiner"]["R@10"]
    assert delta["mean"] == pytest.approx(
        results["metrics"]["cirr"]["combiner"]["R@10"] - results["metrics"]["cirr"]["sum"]["R@10"], abs=0.051
    )
    assert delta["ci95"][0] <= delta["mean"] <= delta["ci95"][1] and "sum" not in results["deltas"]["cirr"]
    assert results["lambda"]["mean"] == pytest.approx(
        np.mean([q["lambda"] for q in results["queries"]]), abs=1e-3
    )
    assert sum(results["lambda"]["counts"]) == 6

    write_manifest(train_dir, "combiner", {}, [], {"combiner.safetensors": None},
                   extra={"encoder": {"spec": "lit-mini", "key": "another"}})  # fmt: skip
    wrong = cfg.model_copy(update={"encoder": tiny_spec})
    with pytest.raises(ScotInputError, match="trained on encoder 'lit-mini'"):
        evaluate(wrong, tmp_path / "out2", show_progress=False)


def test_cirr_test_split_writes_submission_files(tiny_spec, tmp_path):
    root = cirr_layout(tmp_path / "cirr", split="test1", targets=False)
    cfg = EvalConfig(
        benchmark="cirr", data=root, split="test1", encoder=tiny_spec, device="cpu", num_workers=0
    )
    results = evaluate(cfg, tmp_path / "out", show_progress=False)
    assert results["metrics"] == {}
    assert "cirr_test1_sum_recall.json" in results["submissions"]
    recall = json.loads((tmp_path / "out" / "cirr_test1_sum_recall.json").read_text())
    subset = json.loads((tmp_path / "out" / "cirr_test1_sum_subset.json").read_text())
    assert recall["version"] == "rc2" and recall["metric"] == "recall" and subset["metric"] == "recall_subset"
    assert len(recall["100"]) == N_IMAGES - 1 and "img0" not in recall["100"]  # gallery minus the reference
    assert len(subset["100"]) == 3 and "img0" not in subset["100"]


def test_fashioniq_per_category_and_average(tiny_spec, tmp_path):
    root = tmp_path / "fiq"
    names = [f"f{i}" for i in range(N_IMAGES)]
    _images(root / "images", names)
    for c, category in enumerate(("dress", "shirt")):
        _json(root / "image_splits" / f"split.{category}.val.json", names)
        _json(root / "captions" / f"cap.{category}.val.json", [
            {"candidate": names[q], "target": names[(q + 1 + c) % N_IMAGES], "captions": ["is red.", f"has {q} dots"]}
            for q in range(5)
        ])  # fmt: skip
    cfg = EvalConfig(benchmark="fashioniq", data=root, categories=("dress", "shirt"), encoder=tiny_spec,
                     device="cpu", num_workers=0)  # fmt: skip
    results = evaluate(cfg, tmp_path / "out", show_progress=False)
    assert set(results["metrics"]) == {"fashioniq-dress", "fashioniq-shirt", "fashioniq-average"}
    for category in ("dress", "shirt"):
        bench = read_fashioniq(root, category, "val")
        expected = brute_recall(direct_scores(tiny_spec, bench, "sum"), bench, (10, 50), exclude_reference=False)
        assert results["metrics"][f"fashioniq-{category}"]["sum"] == pytest.approx(expected)
    average = results["metrics"]["fashioniq-average"]["sum"]["R@10"]
    assert average == pytest.approx(np.mean([results["metrics"][f"fashioniq-{c}"]["sum"]["R@10"]
                                             for c in ("dress", "shirt")]))  # fmt: skip
    assert results["queries"][0]["text"] == "Is red and has 0 dots"


def test_circo_map(tiny_spec, tmp_path):
    root = tmp_path / "circo"
    names = [f"{i:012d}" for i in range(N_IMAGES)]
    _images(root / "COCO2017_unlabeled" / "unlabeled2017", names, ".jpg")
    _json(root / "annotations" / "val.json", [
        {"id": q, "reference_img_id": q, "target_img_id": q + 1, "relative_caption": f"has {q} cats",
         "shared_concept": "", "gt_img_ids": [q + 1, q + 4]}
        for q in range(4)
    ])  # fmt: skip
    cfg = EvalConfig(benchmark="circo", data=root, encoder=tiny_spec, device="cpu", num_workers=0)
    results = evaluate(cfg, tmp_path / "out", show_progress=False)
    bench = read_circo(root, "val")
    scores = direct_scores(tiny_spec, bench, "text_only")
    expected = {f"mAP@{k}": brute_map(scores, bench, k) for k in (5, 10, 25, 50)}
    assert results["metrics"]["circo"]["text_only"] == pytest.approx(expected)
    assert set(results["metrics"]["circo"]["sum"]) == {"mAP@5", "mAP@10", "mAP@25", "mAP@50"}


def test_missing_gallery_image_is_named(tiny_spec, tmp_path):
    root = cirr_layout(tmp_path / "cirr")
    (root / "val" / "img4.png").unlink()
    cfg = EvalConfig(benchmark="cirr", data=root, encoder=tiny_spec, device="cpu", num_workers=0)
    with pytest.raises(ScotInputError, match=r"could not be embedded \(first: 'img4'\).*rejects.parquet"):
        evaluate(cfg, tmp_path / "out", show_progress=False)


@pytest.mark.parametrize("use_faiss", [False, pytest.param(True, marks=pytest.mark.skipif(
    not faiss_available(), reason="faiss not installed"))])  # fmt: skip
def test_retriever_is_exact_across_chunks(use_faiss):
    rng = np.random.default_rng(0)
    gallery = rng.normal(size=(1000, 16)).astype(np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    queries = gallery[[3, 500, 999]] + 0.01 * rng.normal(size=(3, 16)).astype(np.float32)
    retriever = Retriever(
        [f"g{i}" for i in range(1000)], gallery.astype(np.float16), use_faiss=use_faiss, chunk=97
    )
    result = retriever.search(queries, k=5)
    brute = np.argsort(-(queries @ gallery.astype(np.float16).astype(np.float32).T), axis=1)[:, :5]
    assert result.rows.tolist() == brute.tolist()
    assert [ids[0] for ids in result.ids] == ["g3", "g500", "g999"]
    assert np.all(np.diff(result.scores, axis=1) <= 1e-6)


def test_search_cli_and_api_over_a_cache(tiny_spec, tmp_path):
    root = cirr_layout(tmp_path / "cirr")
    evaluate(EvalConfig(benchmark="cirr", data=root, encoder=tiny_spec, device="cpu", num_workers=0),
             tmp_path / "out", show_progress=False)  # fmt: skip
    gallery = tmp_path / "out" / "cache" / "cirr-val"
    found = search(gallery, image=root / "val" / "img5.png", k=3, device="cpu")
    assert found.method == "image_only" and found.hits[0].image_id == "img5"
    assert found.hits[0].score == pytest.approx(1.0, abs=2e-3)

    combiner = tmp_path / "c.safetensors"
    save_combiner(combiner, Combiner(32).eval(), CombinerConfig())
    result = CliRunner().invoke(app, ["search", "--gallery", str(gallery), "--image", str(root / "val" / "img5.png"),
                                      "--text", "make it red", "-k", "4", "--combiner", str(combiner), "--json",
                                      "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    output = json.loads(result.output)
    assert output["method"] == "combiner" and len(output["hits"]) == 4 and 0.0 < output["lam"] < 1.0

    missing = CliRunner().invoke(app, ["search", "--gallery", str(tmp_path), "--text", "x"])
    assert missing.exit_code == 2 and "not a finished embed directory" in missing.output


def two_split_layout(root: Path) -> Path:
    """A CIRR-layout benchmark with a val and a test split, queries labelled add / remove."""
    for split in ("val", "test"):
        cirr_layout(root, split)
        path = root / "captions" / f"cap.rc2.{split}.json"
        records = json.loads(path.read_text())
        for i, r in enumerate(records):
            r["edit_kind"] = ("add", "remove")[i % 2]
        _json(path, records)
    return root


def test_ablate_selects_on_val_and_reports_test_with_paired_deltas(tiny_spec, tmp_path):
    from scot_data.embed import EmbedConfig, embed_stage
    from tests.test_embed import _write_captions, _write_triplets, caption_rows

    rows = caption_rows(tmp_path / "src", 0, 16, tar_every=100)
    captions = _write_captions(tmp_path / "captions", rows)
    triplets = _write_triplets(tmp_path / "triplets", rows)
    cfg = EmbedConfig(encoder=tiny_spec, device="cpu", num_workers=0)
    embed_stage(cfg, captions, triplets, tmp_path / "emb", show_progress=False)
    bench_root = two_split_layout(tmp_path / "bench")
    spec = tmp_path / "ablation.yaml"
    body = {
        "name": "hard negative", "benchmark": str(bench_root), "seeds": [0, 1], "bootstrap": 200,
        "train": {"epochs": 2, "batch_size": 8, "device": "cpu", "val_fraction": 0.0},
        "variants": [
            {"label": "with", "embeddings": str(tmp_path / "emb"), "triplets": str(triplets)},
            {"label": "without", "embeddings": str(tmp_path / "emb"), "triplets": str(triplets),
             "train": {"loss": {"caption_hard_negative": False}}},
        ],
    }  # fmt: skip
    spec.write_text(yaml.safe_dump(body))
    results = run_ablation(load_ablation(spec), tmp_path / "out", show_progress=False)
    assert results["queries"] == {"val": 6, "test": 6}
    for split in ("val", "test"):
        by_label = {r["label"].split(" (")[0]: r for r in results["rows"][split]}
        assert list(by_label) == ["with", "without", "image only", "text only", "sum"]
        for row in by_label.values():
            for metric in ("R@1", "R@10", "R@50", "R_subset@1"):
                low, high = row[metric]["ci95"]
                assert low <= row[metric]["mean"] <= high
            if row["label"] != by_label["sum"]["label"]:  # every row but sum: its paired difference from sum
                delta = row["delta"]["R@10"]
                assert delta["mean"] == pytest.approx(row["R@10"]["mean"] - by_label["sum"]["R@10"]["mean"], abs=0.11)
                assert delta["ci95"][0] <= delta["mean"] <= delta["ci95"][1]
        bench = read_cirr(bench_root, split)
        direct = brute_recall(direct_scores(tiny_spec, bench, "sum"), bench)
        assert by_label["sum"]["R@1"]["mean"] == pytest.approx(direct["R@1"], abs=0.05)
        assert by_label["sum"]["delta"] == {}
    val = {r["label"]: r["R@1"]["mean"] for r in results["rows"]["val"][:2]}
    assert results["selected"] == max(val, key=val.get)  # chosen on val (first on a tie)
    assert (tmp_path / "out" / "without" / "seed-1" / "combiner.safetensors").exists()  # the label as a folder
    counts = {"add": 3, "remove": 3}
    for row in results["rows"]["test"]:  # the kinds' R@1, weighted by their queries, make the whole
        whole = sum(counts[k] * row["by_kind"][k]["R@1"] for k in counts) / 6
        assert whole == pytest.approx(row["R@1"]["mean"], abs=0.1)
    tables = ablation_tables(results)
    assert [t["title"] for t in tables] == ["Ablation: hard negative (test)", "Δ vs sum (test)",
                                            "By edit kind (test): R@1 [95% interval] / R@10", "Δ vs sum (val)"]  # fmt: skip
    assert ablation_table(results)["rows"][0][0].startswith("with") and len(delta_table(results)["rows"]) == 4
    assert kind_table(results)["columns"] == ["variant", "add", "remove"]
    text = markdown(tables)
    assert "| variant | add | remove |" in text and text.count(f"{results['selected']} (selected on val)") == 4
    again = run_ablation(load_ablation(spec), tmp_path / "out", show_progress=False)
    assert again["rows"] == results["rows"]  # finished runs are reused, scores reproduce
    spec.write_text(yaml.safe_dump({**body, "report_split": "val"}))
    with pytest.raises(ScotInputError, match="select_split and report_split must differ"):
        load_ablation(spec)


def test_ablate_trains_on_a_weighted_mix_written_under_the_variant(tiny_spec, tmp_path):
    from scot_data.embed import EmbedConfig, embed_stage
    from tests.test_embed import _write_captions, _write_triplets, caption_rows

    rows = caption_rows(tmp_path / "src", 0, 16, tar_every=100)
    captions = _write_captions(tmp_path / "captions", rows)
    blue = _write_triplets(tmp_path / "blue", rows)
    green = _write_triplets(tmp_path / "green", rows[:8], modification="make it green")
    cfg = EmbedConfig(encoder=tiny_spec, device="cpu", num_workers=0)
    embed_stage(cfg, captions, blue, tmp_path / "emb", show_progress=False)
    embed_stage(cfg, captions, green, tmp_path / "both", show_progress=False, reuse=[tmp_path / "emb"])
    mixed = {"label": "mixed", "embeddings": str(tmp_path / "both"), "mix_total": 12,
             "mix": [{"triplets": str(blue), "weight": 0.5}, {"triplets": str(green), "weight": 0.5}]}  # fmt: skip
    spec = {"name": "mix", "benchmark": str(two_split_layout(tmp_path / "bench")), "seeds": [0], "bootstrap": 100,
            "train": {"epochs": 1, "batch_size": 4, "device": "cpu", "val_fraction": 0.0}, "variants": [mixed]}  # fmt: skip
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(spec))
    results = run_ablation(load_ablation(tmp_path / "a.yaml"), tmp_path / "out", show_progress=False)
    table = pq.read_table(tmp_path / "out" / "mixed" / "triplets" / "triplets.parquet")
    assert sorted(table.column("modification").to_pylist()) == ["make it blue"] * 6 + ["make it green"] * 6
    assert results["rows"]["test"][0]["label"].startswith("mixed") and read_manifest(tmp_path / "out" / "mixed" / "seed-0")
    both = {**mixed, "triplets": str(blue)}
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({**spec, "variants": [both]}))
    with pytest.raises(ScotInputError, match="'mixed': give either triplets or mix"):
        load_ablation(tmp_path / "b.yaml")


def test_a_training_folder_is_a_combiner_path(tmp_path):
    save_combiner(tmp_path / "combiner.safetensors", Combiner(32).eval(), CombinerConfig())
    assert load_combiner(tmp_path).dim == 32


def test_target_captions_give_the_target_caption_row(tiny_spec, tmp_path):
    root = cirr_layout(tmp_path / "cirr")
    records = json.loads((root / "captions" / "cap.rc2.val.json").read_text())
    for r in records:
        r["target_caption"] = f"picture {r['target_hard']}"
    _json(root / "captions" / "cap.rc2.val.json", records)
    cfg = EvalConfig(benchmark="clipart", data=root, encoder=tiny_spec, device="cpu", num_workers=0)
    results = evaluate(cfg, tmp_path / "out", show_progress=False)
    bench = read_cirr(root)
    encoder = create_encoder(tiny_spec, device="cpu")
    gallery = (
        encoder.encode_images(
            torch.stack([encoder.image_transform(Image.open(p)) for p in bench.gallery.values()])
        )
        .half()
        .float()
    )
    captions = encoder.encode_texts([q.target_caption for q in bench.queries]).half().float()
    expected = brute_recall((captions @ gallery.T).numpy(), bench)
    got = results["metrics"]["clipart"]["target_caption"]
    assert {k: got[k] for k in expected} == pytest.approx(expected)


def test_encoder_recall_on_a_caption_table(tiny_spec, tmp_path):
    from scot_data.evaluate.recall import text_to_image_recall
    from tests.test_embed import _write_captions, caption_rows

    rows = caption_rows(tmp_path / "src", 1, 12, tar_every=100)
    table = _write_captions(tmp_path / "captions", rows) / "captions.parquet"
    report = text_to_image_recall(table, tiny_spec, show_progress=False)
    assert report.captions == report.images == 12 and report.chance["R@10"] == pytest.approx(
        10 / 12, abs=1e-4
    )
    encoder = create_encoder(tiny_spec)
    gallery = encoder.encode_images(
        torch.stack([encoder.image_transform(Image.open(r["image_uri"])) for r in rows])
    )
    scores = encoder.encode_texts([r["caption"] for r in rows]) @ gallery.T
    own = scores.diagonal()[:, None]
    expected = ((scores > own).sum(dim=1) < 5).float().mean().item()
    assert report.recall["R@5"] == pytest.approx(expected, abs=1e-4)
    assert report.recall["R@1"] <= report.recall["R@5"] <= report.recall["R@10"]


# --- ranks known by construction: each target is a pixel copy of its reference --------------

COPIES = 4


def _copies(folder: Path, originals: list[str], copies: list[str], suffix: str = ".png") -> None:
    """``originals`` as distinct images, and ``copies[i]`` with the pixels of ``originals[i]``."""
    _images(folder, originals, suffix)
    for original, copy in zip(originals, copies):
        (folder / f"{copy}{suffix}").write_bytes((folder / f"{original}{suffix}").read_bytes())


def copy_cirr_layout(root: Path, split: str = "val") -> Path:
    """A CIRR-layout split whose every target is a pixel copy of its reference."""
    originals = [f"d{i}" for i in range(10)]
    _copies(root / split, originals, [f"copy{q}" for q in range(COPIES)])
    names = originals + [f"copy{q}" for q in range(COPIES)]
    _json(root / "image_splits" / f"split.rc2.{split}.json", {n: f"./{split}/{n}.png" for n in names})
    _json(root / "captions" / f"cap.rc2.{split}.json", [
        {"pairid": q, "reference": f"d{q}", "target_hard": f"copy{q}", "caption": "same again",
         "img_set": {"members": [f"d{q}", f"copy{q}", f"d{q + 4}", f"d{q + 5}"]}} for q in range(COPIES)
    ])  # fmt: skip
    return root


def test_protocols_by_construction_reference_removed_or_kept(tiny_spec, tmp_path):
    """Image-only search scores a pixel copy exactly like the reference. Where the protocol
    removes the reference (CIRR) the copy is rank 1; where it keeps it (CIRCO, FashionIQ) the
    reference, listed first in the gallery, wins the tie and the copy is rank 2."""
    originals = [f"d{i}" for i in range(10)]
    names = originals + [f"copy{q}" for q in range(COPIES)]
    cirr = copy_cirr_layout(tmp_path / "cirr")
    circo = tmp_path / "circo"
    ids = [i + 1 for i in range(10)]  # copies get ids 20.. so they sort after their references
    _copies(circo / "COCO2017_unlabeled" / "unlabeled2017", [f"{i:012d}" for i in ids],
            [f"{20 + q:012d}" for q in range(COPIES)], ".jpg")  # fmt: skip
    _json(circo / "annotations" / "val.json", [
        {"id": q, "reference_img_id": ids[q], "target_img_id": 20 + q, "relative_caption": "same again",
         "gt_img_ids": [20 + q]} for q in range(COPIES)
    ])  # fmt: skip
    fiq = tmp_path / "fiq"
    _copies(fiq / "images", originals, [f"copy{q}" for q in range(COPIES)])
    _json(fiq / "image_splits" / "split.dress.val.json", names)
    _json(fiq / "captions" / "cap.dress.val.json", [
        {"candidate": f"d{q}", "target": f"copy{q}", "captions": ["same", "again"]} for q in range(COPIES)
    ])  # fmt: skip
    expected = {"cirr": (1, {"R@1": 100.0, "R_subset@1": 100.0}),
                "circo": (2, {"mAP@5": 50.0, "mAP@50": 50.0}),
                "fashioniq": (2, {"R@10": 100.0})}  # fmt: skip
    roots = {"cirr": cirr, "circo": circo, "fashioniq": fiq}
    for name, (rank, metrics) in expected.items():
        cfg = EvalConfig(benchmark=name, data=roots[name], categories=("dress",) if name == "fashioniq" else (),
                         encoder=tiny_spec, device="cpu", num_workers=0)  # fmt: skip
        results = evaluate(cfg, tmp_path / f"out-{name}", show_progress=False)
        part = next(iter(results["metrics"]))
        got = results["metrics"][part]["image_only"]
        assert {k: got[k] for k in metrics} == metrics, name
        table = pq.read_table(tmp_path / f"out-{name}" / "queries.parquet").to_pydict()
        assert table["rank_image_only"] == [rank] * COPIES, name
        assert table["targets"] == [[t] for t in (results["queries"][i]["targets"][0] for i in range(COPIES))]
        assert table["lambda"] == [None] * COPIES


def test_worst_queries_are_where_the_combiner_ranks_below_sum(tiny_spec, tmp_path):
    root = cirr_layout(tmp_path / "cirr")
    train_dir = tmp_path / "train"
    torch.manual_seed(5)
    save_combiner(train_dir / "combiner.safetensors", Combiner(32).eval(), CombinerConfig())
    cfg = EvalConfig(benchmark="cirr", data=root, combiner=train_dir / "combiner.safetensors", encoder=tiny_spec,
                     device="cpu", num_workers=0, worst_queries=3)  # fmt: skip
    results = evaluate(cfg, tmp_path / "out", show_progress=False)
    table = pq.read_table(tmp_path / "out" / "queries.parquet").to_pydict()
    loss = {q: c - s for q, c, s in zip(table["query_id"], table["rank_combiner"], table["rank_sum"])}
    shown = [q["query_id"] for q in results["worst_queries"]]
    expected = [q for q in sorted(loss, key=lambda q: -loss[q]) if loss[q] > 0][:3]
    assert expected and shown == expected
    for card in results["worst_queries"]:
        assert card["ranks"] == {"combiner": loss_rank(table, card["query_id"], "combiner"),
                                 "sum": loss_rank(table, card["query_id"], "sum")}  # fmt: skip
    assert all(lam is not None and 0.0 < lam < 1.0 for lam in table["lambda"])
    html = (tmp_path / "out" / "report.html")
    from scot_data.evaluate.report import write_report

    text = write_report(results, tmp_path / "out").read_text()
    assert html.exists() and ("Where the Combiner loses most to sum" in text) == bool(expected)


def loss_rank(table: dict, query_id: str, method: str) -> int:
    return table[f"rank_{method}"][table["query_id"].index(query_id)]


def test_select_variant_can_set_aside_variants_below_sum() -> None:
    from scot_data.evaluate.ablate import select_variant

    def row(label: str, r1: float, r50_high: float) -> dict:
        delta = {"R@1": {"high": 3.0}, "R@50": {"high": r50_high}}
        return {"label": label, "R@1": {"mean": r1}, "delta": delta}

    rows = [row("steady", 9.0, 2.0), row("trade", 11.0, -4.5), {"label": "sum", "baseline": "sum"}]
    assert select_variant(rows, "R@1") == "trade"
    assert select_variant(rows, "R@1", not_below_sum=True) == "steady"
    assert select_variant([rows[1]], "R@1", not_below_sum=True) == "trade"  # none qualifies: all of them
    assert select_variant([rows[2]], "R@1") is None
