"""Benchmark readers and metrics on hand-made score matrices, and the paired bootstrap.

Every expected value is worked out by hand in a comment beside it, never by the code under
test: ranks, ties (the gallery's order breaks them), K past the gallery's end, a target
outside its img_set, a query without ground truth, CIRCO keeping the reference.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from scot_data.errors import ScotInputError
from scot_data.evaluate import circo, cirr, fashioniq
from scot_data.evaluate.benchmark import Benchmark, Query
from scot_data.evaluate.evaluate import average_parts
from scot_data.evaluate.metrics import (
    average_precision_at_k,
    average_precisions,
    exclude_columns,
    first_target_ranks,
    hits_at_k,
    subset_target_ranks,
)
from scot_data.evaluate.registry import BENCHMARKS, get_benchmark, protocol_table
from scot_data.evaluate.stats import interval_text, paired_difference

SCORES = np.array([[0.1, 0.9, 0.5, 0.3], [0.6, 0.7, 0.1, 0.9]])


def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


# ------------------------------------------------------------------ metrics, by hand


def test_ranks_with_and_without_reference_exclusion():
    # q0: target 2 ranks 2nd (after col 1); q1: target 0 ranks 3rd (cols 3, 1 first).
    assert first_target_ranks(SCORES, [[2], [0]]).tolist() == [1, 2]
    assert {k: v.tolist() for k, v in hits_at_k(np.array([1, 2]), (1, 2, 3)).items()} == {
        1: [0.0, 0.0], 2: [1.0, 0.0], 3: [1.0, 1.0]}  # fmt: skip
    # Excluding references (q0: col 1, q1: col 3): q0 ranks 1st, q1 2nd.
    assert first_target_ranks(exclude_columns(SCORES, [1, 3]), [[2], [0]]).tolist() == [0, 1]


def test_several_targets_take_the_best_placed_one():
    # q1's targets 2 (rank 4th) and 1 (rank 2nd): the best is 2nd.
    assert first_target_ranks(SCORES, [[2, 3], [2, 1]]).tolist() == [1, 1]


def test_ties_are_broken_by_gallery_order():
    flat = np.zeros((3, 5))
    # All scores equal: the ranking is the gallery order, so target column c ranks c-th.
    assert first_target_ranks(flat, [[0], [3], [4]]).tolist() == [0, 3, 4]
    tie = np.array([[0.5, 0.9, 0.9, 0.1]])
    # Columns 1 and 2 tie at the top: column 1 (listed first) wins, column 2 is 2nd.
    assert first_target_ranks(tie, [[2]]).tolist() == [1]
    assert first_target_ranks(tie, [[1]]).tolist() == [0]


def test_k_past_the_gallery_counts_every_query():
    ranks = first_target_ranks(SCORES, [[0], [2]])  # 4-image gallery: ranks 3 and 3 (0-based)
    assert hits_at_k(ranks, (50,))[50].tolist() == [1.0, 1.0]
    # AP@50 on a 4-image gallery: q0 relevant {0} found 4th -> (1/4) / min(50, 1) = 0.25.
    assert average_precisions(SCORES[:1], [{0}], (50,))[50].tolist() == [0.25]


def test_cirr_subset_protocol_drops_the_reference():
    # q0 members {1, 2, 3} minus reference 1 -> {2: .5, 3: .3}: rank 1.
    # q1 members {3, 2, 0} minus reference 3 -> {2: .1, 0: .6}: rank 1 (col 1, scored .7, is not a member).
    assert subset_target_ranks(SCORES, [2, 0], [[1, 2, 3], [3, 2, 0]], [1, 3]).tolist() == [0, 0]
    # q1 with member 1 kept: .7 beats the target's .6 -> rank 2.
    assert subset_target_ranks(SCORES, [2, 0], [[1, 2, 3], [3, 1, 0]], [1, 3]).tolist() == [0, 1]


def test_circo_average_precision_by_hand():
    # ranked 5, 2, 7, 1 with relevant {2, 1, 9}: hits at 2 and 4 -> (1/2 + 2/4) / min(4, 3) = 1/3.
    assert average_precision_at_k([5, 2, 7, 1], {2, 1, 9}, 4) == pytest.approx(1 / 3)
    assert average_precision_at_k([5, 2, 7, 1], {2, 1, 9}, 2) == pytest.approx(0.5 / 2)
    scores = np.zeros((1, 10))
    scores[0, [5, 2, 7, 1]] = [4, 3, 2, 1]
    found = average_precisions(scores, [{2, 1, 9}], (2, 4))
    assert found[2].tolist() == [0.25] and found[4].tolist() == pytest.approx([1 / 3])
    with pytest.raises(ValueError, match="at least one relevant"):
        average_precision_at_k([5, 2], set(), 2)


# ------------------------------------------------------------------ readers and protocols


def test_fashioniq_reader_joins_two_captions_and_keeps_the_reference(tmp_path):
    assert fashioniq.fashioniq_text(["is blue.", "has short sleeves "]) == "Is blue and has short sleeves"
    _write(tmp_path / "captions" / "cap.dress.val.json", [
        {"candidate": "a", "target": "b", "captions": ["is red", "longer."]},
        {"candidate": "b", "target": "c", "captions": ["is green", "shorter"]},
    ])  # fmt: skip
    _write(tmp_path / "image_splits" / "split.dress.val.json", ["a", "b", "c"])
    bench = fashioniq.read_category(tmp_path, "dress", "val")
    assert [q.text for q in bench.queries] == ["Is red and longer", "Is green and shorter"]
    assert bench.names == ["a", "b", "c"] and bench.gallery["a"] == tmp_path / "images" / "a.png"
    entry = get_benchmark("fashioniq")
    scores = np.array([[0.0, 1.0, 0.5], [0.0, 1.0, 0.5]])  # q0 finds b 1st; q1 ranks c 2nd behind its reference b
    assert (entry.score(bench, scores)[1] + 1).tolist() == [1, 2]
    assert {k: v.tolist() for k, v in entry.query_values(bench, scores).items()} == {
        "R@10": [1.0, 1.0], "R@50": [1.0, 1.0]}  # fmt: skip
    parts = {"dress": {"sum": {"R@10": 10.0}}, "shirt": {"sum": {"R@10": 20.0}}, "toptee": {"sum": {"R@10": 60.0}}}
    assert average_parts(parts) == {"sum": {"R@10": 30.0}}


def _cirr_fixture(root: Path, split: str, with_targets: bool, members1: list[str] | None = None) -> None:
    names = [f"img{i}" for i in range(55)]
    records = [
        {"pairid": 7, "reference": "img1", "target_hard": "img2", "caption": "make it red",
         "img_set": {"id": 0, "members": ["img1", "img2", "img3"]}},
        {"pairid": 9, "reference": "img3", "target_hard": "img0", "caption": "two of them",
         "img_set": {"id": 1, "members": members1 or ["img3", "img2", "img0"]}},
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
    bench = cirr.read_split(tmp_path, "val")
    assert [q.query_id for q in bench.queries] == ["7", "9"]
    assert bench.queries[1].members == ("img3", "img2", "img0")
    assert bench.gallery["img4"] == tmp_path / "val" / "img4.png"
    values = get_benchmark("cirr").query_values(bench, _cirr_scores())
    # reference removed: q0 target img2 1st (img1 excluded); q1 target img0 2nd (img1 .7 ahead, img3 excluded)
    assert values["R@1"].tolist() == [1.0, 0.0] and values["R@5"].tolist() == [1.0, 1.0]
    assert values["R_subset@1"].tolist() == [1.0, 1.0]
    assert (get_benchmark("cirr").score(bench, _cirr_scores())[1] + 1).tolist() == [1, 2]


def test_cirr_target_outside_its_img_set_names_the_query(tmp_path):
    _cirr_fixture(tmp_path, "val", with_targets=True, members1=["img3", "img2", "img5"])
    bench = cirr.read_split(tmp_path, "val")
    with pytest.raises(ScotInputError, match=r"cirr val: query 9: target 'img0' is not one of its img_set members"):
        get_benchmark("cirr").query_values(bench, _cirr_scores())


def test_cirr_submission_format(tmp_path):
    _cirr_fixture(tmp_path, "test1", with_targets=False)
    bench = cirr.read_split(tmp_path, "test1")
    entry = get_benchmark("cirr")
    files = entry.submission(bench, entry.protocol_scores(bench, _cirr_scores()), "sum")
    recall, subset = files["cirr_test1_sum_recall.json"], files["cirr_test1_sum_subset.json"]
    assert recall["version"] == "rc2" and recall["metric"] == "recall"
    assert subset["version"] == "rc2" and subset["metric"] == "recall_subset"
    assert set(recall) == {"version", "metric", "7", "9"} and set(subset) == set(recall)
    assert len(recall["7"]) == 50 and len(set(recall["7"])) == 50 and "img1" not in recall["7"]
    assert recall["7"][:3] == ["img2", "img3", "img0"]
    assert subset["7"] == ["img2", "img3"] and subset["9"] == ["img0", "img2"]
    json.dumps(recall)


def _circo_fixture(root: Path, gt: list[int]) -> None:
    _write(root / "annotations" / "val.json", [
        {"id": 0, "reference_img_id": 5, "target_img_id": gt[0] if gt else None, "relative_caption": "is a cat",
         "shared_concept": "", "gt_img_ids": gt},
    ])  # fmt: skip
    _write(root / "COCO2017_unlabeled" / "annotations" / "image_info_unlabeled2017.json",
           {"images": [{"id": i, "file_name": f"{i:012d}.jpg"} for i in range(10)]})  # fmt: skip


def test_circo_keeps_the_reference_in_the_ranking(tmp_path):
    _circo_fixture(tmp_path, [2, 1, 9])
    bench = circo.read_split(tmp_path, "val")
    assert bench.queries[0].targets == ("2", "1", "9") and bench.queries[0].reference == "5"
    assert bench.gallery["3"].name == "000000000003.jpg"
    scores = np.zeros((1, 10))
    scores[0, [5, 2, 7, 1]] = [5, 3, 2, 1]  # the reference (5) stays: ranking 5, 2, 7, 1
    values = get_benchmark("circo").query_values(bench, scores)
    # hits at 2 and 4 -> (1/2 + 2/4) / min(5, 3) = 1/3 (removing the reference would give (1 + 2/3) / 3)
    assert values["mAP@5"].tolist() == pytest.approx([1 / 3])
    assert (get_benchmark("circo").score(bench, scores)[1] + 1).tolist() == [2]
    files = get_benchmark("circo").submission(bench, scores, "sum")
    assert files["circo_val_sum.json"]["0"][:4] == ["5", "2", "7", "1"]


def test_circo_query_without_ground_truth_names_the_query(tmp_path):
    _circo_fixture(tmp_path, [])
    bench = circo.read_split(tmp_path, "val")
    assert not bench.has_targets()
    with pytest.raises(ScotInputError, match="circo val: query 0 has no ground truth"):
        get_benchmark("circo").query_values(bench, np.zeros((1, 10)))


def test_a_target_outside_the_gallery_names_the_query():
    bench = Benchmark("x", "val", [Query("q7", "a", "t", ("zz",))], {"a": Path("a"), "b": Path("b")})
    with pytest.raises(ScotInputError, match=r"x val \(query q7\): 'zz' is not in the gallery"):
        get_benchmark("fashioniq").query_values(bench, np.zeros((1, 2)))


def test_readers_name_the_missing_file(tmp_path):
    with pytest.raises(ScotInputError, match=r"cap\.rc2\.val\.json"):
        cirr.read_split(tmp_path, "val")


def test_registry_is_the_one_list_of_benchmarks():
    from scot_data.evaluate.config import BenchmarkConfig
    from scot_data.evaluate.evaluate import EvalConfig

    assert list(BENCHMARKS) == ["fashioniq", "cirr", "circo", "clipart"]
    assert [row[:2] for row in protocol_table()] == [["fashioniq", "no"], ["cirr", "yes"], ["circo", "no"],
                                                     ["clipart", "yes"]]  # fmt: skip
    assert [n for n, e in BENCHMARKS.items() if e.build is not None] == ["clipart"]
    for name in BENCHMARKS:  # the spec and the evaluator accept exactly the registered names
        BenchmarkConfig(name=name, data=Path("d"))
        EvalConfig(benchmark=name, data=Path("d"))
    with pytest.raises(ValueError):
        BenchmarkConfig(name="coco", data=Path("d"))
    with pytest.raises(ValueError, match="only a benchmark with a builder"):
        BenchmarkConfig(name="cirr", data=Path("d"), build=True)
    with pytest.raises(ScotInputError, match="unknown benchmark 'coco'; known: fashioniq, cirr, circo, clipart"):
        get_benchmark("coco")


# ------------------------------------------------------------------ paired bootstrap


def test_identical_methods_differ_by_exactly_zero():
    hits = np.array([1.0, 0.0, 1.0, 1.0] * 25)
    same = paired_difference(hits, hits)
    assert (same.mean, same.low, same.high, same.excludes_zero) == (0.0, 0.0, 0.0, False)
    alone = paired_difference(np.ones(40))
    assert (alone.mean, alone.low, alone.high) == (100.0, 100.0, 100.0)


def test_pairing_finds_a_small_consistent_gain_that_separate_intervals_miss():
    rng = np.random.default_rng(0)
    b = (rng.random(400) < 0.5).astype(float)
    a = b.copy()
    a[np.flatnonzero(b == 0)[:16]] = 1.0  # A = B plus 16 more hits out of 400: +4 points, never worse
    paired = paired_difference(a, b)
    assert paired.mean == 4.0 and paired.excludes_zero and paired.low > 0
    alone_a, alone_b = paired_difference(a), paired_difference(b)
    assert alone_a.low < alone_b.high  # unpaired, the two intervals overlap


def test_seeds_widen_the_interval_and_report_their_spread():
    queries = 300
    base = np.zeros(queries)
    steady = np.tile((np.arange(queries) % 5 == 0).astype(float), (3, 1))  # 20% on every seed
    noisy = steady.copy()
    noisy[0, :30], noisy[2, 30:60] = 1.0, 1.0  # seed means 28.0, 20.0, 28.0 (hits on rows already hit overlap)
    per_seed = noisy.mean(axis=1) * 100
    steady_interval, noisy_interval = paired_difference(steady, base), paired_difference(noisy, base)
    assert steady_interval.seed_sd == 0.0
    assert noisy_interval.seed_sd == pytest.approx(float(np.std(per_seed, ddof=1)), abs=0.05)
    assert noisy_interval.mean == pytest.approx(float(per_seed.mean()), abs=0.05)
    assert noisy_interval.high - noisy_interval.low > steady_interval.high - steady_interval.low


def test_interval_text_marks_differences_that_exclude_zero():
    assert interval_text({"mean": 2.0, "ci95": [0.5, 3.5], "excludes_zero": True}, signed=True) == "+2.0 [+0.5, +3.5]*"
    assert interval_text({"mean": -0.0, "ci95": [-1.0, 1.0], "excludes_zero": False}, signed=True) == "+0.0 [-1.0, +1.0]"
    assert interval_text({"mean": 12.3, "ci95": [10.1, 14.2], "excludes_zero": True}) == "12.3 [10.1, 14.2]"


def test_readme_protocol_table_is_the_registry():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    for row in protocol_table():
        assert "| " + " | ".join(row) + " |" in readme, row
