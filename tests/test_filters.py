"""Semantic triplet filters, mixed training sets, and their precision on labelled triplets.

``tests/fixtures/labelled_triplets.jsonl`` holds 150 triplets SmolLM2-135M-Instruct wrote
for the demo (the first 150 of ``shards/demo/triplets/triplets.parquet`` in
``ids.sample_rank(0, triplet_id)`` order), each labelled ``good`` or ``bad`` by a person
reading it: good = the modified caption is the caption changed as a sensible modification
says; bad = copies, unrelated text, loops, no change, an instruction for a caption,
nonsense (with a short ``why``). ``similarity`` is the cosine of the caption's and the
modified caption's text embeddings from the demo cache (``shards/demo/embed``: the
lit-mini encoder, ``lit-mini@shards/demo/fit-lit/heads.safetensors``, float16), stored so
the test needs no model and gives the same numbers everywhere.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from scot_data import ids, stages
from scot_data.atomic import TMP_MARK
from scot_data.cli import app
from scot_data.embed.records import images_schema, text_id, texts_schema, to_column
from scot_data.errors import ScotInputError
from scot_data.manifest import read_manifest, write_manifest
from scot_data.mix.stage import apportion, mix_triplets, parse_source
from scot_data.train.view import load_training_view
from scot_data.triplets.checks import (
    FewShot,
    band_problem,
    edit_words_problem,
    few_shot_problem,
    repetition_problem,
)
from scot_data.triplets.filter_stage import caption_similarities, filter_triplets
from scot_data.triplets.filters import FILTERS, FilterConfig
from scot_data.triplets.labelled import (
    LABELLED_SPLIT_SEED,
    fit_band,
    labelled_half,
    labelled_report,
    score_labelled,
)
from scot_data.triplets.prompts import load_prompt
from scot_data.triplets.records import REJECTS_SCHEMA, TRIPLETS_SCHEMA, Triplet, to_table
from scot_data.verify import verify

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "labelled_triplets.jsonl"
PROMPT = REPO / "pipelines" / "prompts" / "v1.yaml"
DEMO_TRIPLETS = REPO / "shards" / "demo" / "triplets"
DEMO_EMBEDDINGS = REPO / "shards" / "demo" / "embed"
DIM = 256


@pytest.fixture(scope="module")
def shots() -> FewShot:
    return FewShot.from_prompt(load_prompt(PROMPT))


# --- each filter on hand-written cases ------------------------------------------------------


@pytest.mark.parametrize(
    ("caption", "modification", "modified"),
    [
        ("a dog lying on the grass", "replace the dog with a cat", "a cat lying on the grass"),
        (
            "two apples on a wooden table",
            "show three apples instead of two",
            "three apples on a wooden table",
        ),
        ("a lamp (furniture, light)", "add a violin next to it", "a lamp and a violin"),
        ("a man with a hat", "remove the hat", "a man"),
        ("a red apple", "put it on a red background", "a red apple on a red background"),
        ("a red car", "change the colour to blue", "a blue car"),
    ],
)
def test_edit_words_keeps_real_edits(caption: str, modification: str, modified: str) -> None:
    assert edit_words_problem(caption, modification, modified) is None


@pytest.mark.parametrize(
    ("caption", "modification", "modified", "expected"),
    [
        (
            "tacchino (bird)",
            "make it a bird eating tuna",
            "a taco made with tac chino",
            "missing from the modified",
        ),
        ("a simple pig (mammal, animal)", "make it a simple pig", "a simple pig", "names nothing"),
        ("lumaca (insect)", "remove the insect and make it a bee", "remove a bee from lumaca", "instruction"),
        ("a man with a hat", "remove the hat", "a man with a hat and a scarf", "keeps it"),
        ("a man", "take away the umbrella", "a man", "does not name"),
    ],
)
def test_edit_words_drops_non_edits(caption: str, modification: str, modified: str, expected: str) -> None:
    problem = edit_words_problem(caption, modification, modified)
    assert problem is not None and expected in problem


def test_repetition(shots: FewShot) -> None:
    assert "twice in a row" in repetition_problem("make it a star chart", "a star star chart", 3, 4)
    assert "3 times" in repetition_problem("add a bomb", "a bomb is a bomb that holds a bomb", 3, 4)
    looped = "a strobe light on the ceiling, turn it into a strobe light on the ceiling"
    assert "written 2 times" in repetition_problem("make it a strobe light", looped, 3, 4)
    assert (
        repetition_problem("add a bull to the wolf", "a bull with a wolf, a simple stylized wolf head", 3, 4)
        is None
    )


def test_few_shot_copy(shots: FewShot) -> None:
    copied = few_shot_problem("pysol", "make it a pencil sketch", "a pencil sketch of pysol", shots, 0.8)
    assert copied is not None and "copies the example" in copied
    phrase = few_shot_problem(
        "arrow (shape)", "make it a sword", "a sword of a smiling woman with long hair", shots, 0.8
    )
    assert phrase is not None and "example phrase" in phrase
    lake = few_shot_problem(
        "blue dragonfly", "add a dragonfly to the sky", "a blue dragonfly on a mountain lake", shots, 0.8
    )
    assert lake is not None
    # The example's words are fine where the caption already has them (a real colour edit of a car).
    assert (
        few_shot_problem("a red car in a street", "make it blue", "a blue car in a street", shots, 0.8)
        is None
    )
    assert (
        few_shot_problem("school in fall", "make it a school in summer", "a school in summer", shots, 0.8)
        is None
    )


def test_similarity_band() -> None:
    assert "unrelated" in band_problem(0.05, 0.2, 0.9)
    assert "no real change" in band_problem(0.95, 0.2, 0.9)
    assert band_problem(0.5, 0.2, 0.9) is None


def test_config_rejects_unknown_keys_and_an_empty_band() -> None:
    with pytest.raises(ValueError):
        FilterConfig(lowest=0.1)
    with pytest.raises(ValueError):
        FilterConfig(low=0.8, high=0.5)


# --- the stage ------------------------------------------------------------------------------


class BagOfWords:
    """A stand-in text encoder: a fixed random vector per word, summed and normalised, so a
    cosine tracks word overlap. No model, deterministic."""

    def __init__(self, name: str = "bag-of-words") -> None:
        self.identity = SimpleNamespace(model_name=name, weights_sha256="0" * 64, key=lambda: name)
        self.calls: list[list[str]] = []

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        self.calls.append(list(texts))
        rows = [sum((_word_vector(w) for w in t.lower().split()), np.zeros(DIM)) for t in texts]
        matrix = np.stack(rows)
        return torch.from_numpy(matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).float()


def _word_vector(word: str) -> np.ndarray:
    return np.random.default_rng(int(ids.stable_id("word", word)[:8], 16)).standard_normal(DIM) / np.sqrt(DIM)


CASES = {  # name -> caption, modification, modified caption, the filter that drops it (None: kept)
    "colour": ("a red car parked by the road", "make the car green", "a green car parked by the road", None),
    "object": ("a dog lying on the sofa", "replace the dog with a rabbit", "a rabbit lying on the sofa", None),
    "copy": ("an arrow", "make it a painting", "a painting of a smiling woman with long hair", "few_shot_copy"),
    "loop": ("a clock on a wall", "add a clock", "a clock clock on a wall", "repetition"),
    "same": ("a simple pig", "make it a simple pig", "a simple pig drawing", "edit_words"),
    "unrelated": ("bird (animal)", "make it a taco", "taco with salsa", "similarity_band"),
    "tiny": ("an old man with a hat sitting on a long wooden park bench near a tree", "make it a goat",
             "an old goat with a hat sitting on a long wooden park bench near a tree", "similarity_band"),
}  # fmt: skip


def write_triplets_dir(directory: Path, rows: list[Triplet], with_rejects: bool = True) -> Path:
    """A finished triplets-stage directory holding ``rows``."""
    directory.mkdir(parents=True)
    pq.write_table(to_table(rows, TRIPLETS_SCHEMA), directory / "triplets.parquet")
    files = {"triplets.parquet": len(rows)}
    if with_rejects:
        pq.write_table(to_table([], REJECTS_SCHEMA), directory / "rejects.parquet")
        files["rejects.parquet"] = 0
    write_manifest(directory, "triplets", {"made_by": "test"}, [], files)
    return directory


def triplet(name: str, caption: str, modification: str, modified: str, model: str = "test") -> Triplet:
    return Triplet(name, f"c-{name}", f"img-{name}", caption, modification, modified, "edit", model, "v1", 0)


def write_cache(directory: Path, texts: list[str], image_ids: list[str], encoder: BagOfWords) -> Path:
    """A finished embedding cache (the layout ``scot embed`` writes) with ``texts`` and images."""
    vectors = encoder.encode_texts(texts).numpy().astype(np.float16)
    text_table = pa.table({"text_id": [text_id(t) for t in texts], "text": texts, "embedding": to_column(vectors)},
                          schema=texts_schema(DIM, "bow"))  # fmt: skip
    image_vectors = np.ones((len(image_ids), DIM), np.float16) / np.sqrt(DIM)
    image_table = pa.table(
        {"image_id": image_ids, "embedding": to_column(image_vectors)}, schema=images_schema(DIM, "bow")
    )
    for kind, table in (("texts", text_table), ("images", image_table)):
        (directory / kind).mkdir(parents=True)
        pq.write_table(table, directory / kind / "part-0.parquet")
    identity = {"model_name": encoder.identity.model_name, "weights_sha256": encoder.identity.weights_sha256}
    write_manifest(directory, stages.EMBED, {}, [], {"texts/part-0.parquet": len(texts), "images/part-0.parquet": len(image_ids)},
                   extra={"parts": {"texts": ["part-0.parquet"], "images": ["part-0.parquet"]},
                          "embedding": {"dim": DIM}, "encoder": {"identity": identity}})  # fmt: skip
    return directory


@pytest.fixture
def staged(tmp_path: Path) -> SimpleNamespace:
    """The hand-written cases as a triplets directory, and a cache holding half their texts."""
    rows = [triplet(name, *case[:3]) for name, case in CASES.items()]
    source = write_triplets_dir(tmp_path / "triplets", rows)
    encoder = BagOfWords()
    texts = sorted({t for r in rows for t in (r.caption, r.modification, r.modified_caption)})
    cache = write_cache(tmp_path / "embeddings", texts[::2], [r.image_id for r in rows], encoder)
    return SimpleNamespace(
        source=source, cache=cache, encoder=encoder, rows=rows, tmp=tmp_path, all_texts=texts
    )


def test_stage_drops_each_case_under_its_filter(staged: SimpleNamespace) -> None:
    out = staged.tmp / "filtered"
    summary = filter_triplets(staged.source, out, FilterConfig(prompt=PROMPT), staged.cache, staged.encoder)
    kept = pq.read_table(out / "triplets.parquet")
    assert sorted(kept.column("triplet_id").to_pylist()) == sorted(
        n for n, c in CASES.items() if c[3] is None
    )
    reasons = {
        json.loads(r["raw"])["triplet_id"]: r["reason"]
        for r in pq.read_table(out / "rejects.parquet").to_pylist()
    }
    assert {name: reason.split(":")[0] for name, reason in reasons.items()} == {
        n: c[3] for n, c in CASES.items() if c[3]
    }
    assert summary.dropped_by == {"few_shot_copy": 1, "repetition": 1, "edit_words": 1, "similarity_band": 2}
    assert all(summary.would_drop_alone[name] >= summary.dropped_by[name] for name in FILTERS)
    assert summary.texts_cached + summary.texts_encoded == len(
        {r.caption for r in staged.rows} | {r.modified_caption for r in staged.rows}
    )
    assert summary.texts_cached > 0 and summary.texts_encoded > 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["dropped_by"] == summary.dropped_by and stats["triplets"] == 2


def test_stage_output_is_a_finished_triplets_dir(staged: SimpleNamespace) -> None:
    out = staged.tmp / "filtered"
    filter_triplets(staged.source, out, FilterConfig(prompt=PROMPT), staged.cache, staged.encoder)
    assert pq.read_schema(out / "triplets.parquet") == pq.read_schema(staged.source / "triplets.parquet")
    manifest = read_manifest(out)
    assert manifest["stage"] == "triplets" and manifest["stats"]["triplets"] == 2
    assert verify(out) == []
    full = write_cache(
        staged.tmp / "full", staged.all_texts, [r.image_id for r in staged.rows], staged.encoder
    )
    view = load_training_view(full, out, strict=True)  # the trainer's reader
    assert sorted(view.triplet_ids) == ["colour", "object"] and view.T_u.shape == (2, DIM)


def test_stage_skips_when_finished_and_reruns_when_config_changes(staged: SimpleNamespace) -> None:
    out = staged.tmp / "filtered"
    cfg = FilterConfig(prompt=PROMPT)
    first = filter_triplets(staged.source, out, cfg, staged.cache, staged.encoder)
    stamp = (out / "triplets.parquet").stat().st_mtime_ns
    again = filter_triplets(staged.source, out, cfg, staged.cache, staged.encoder)
    assert again.skipped and again.triplets == first.triplets and again.dropped_by == first.dropped_by
    assert (out / "triplets.parquet").stat().st_mtime_ns == stamp
    looser = filter_triplets(
        staged.source, out, cfg.model_copy(update={"repetition": False}), staged.cache, staged.encoder
    )
    assert not looser.skipped and "repetition" not in looser.dropped_by
    (out / "manifest.json").unlink()  # as if killed before the manifest
    (out / f"triplets.parquet{TMP_MARK}x").write_bytes(b"partial")
    redone = filter_triplets(staged.source, out, cfg, staged.cache, staged.encoder)
    assert not redone.skipped and redone.triplets == first.triplets
    assert not list(out.glob(f"*{TMP_MARK}*"))


def test_similarity_needs_no_model_when_the_cache_has_every_text(staged: SimpleNamespace) -> None:
    full = write_cache(
        staged.tmp / "full", staged.all_texts, [r.image_id for r in staged.rows], staged.encoder
    )
    staged.encoder.calls.clear()
    summary = filter_triplets(
        staged.source, staged.tmp / "out", FilterConfig(prompt=PROMPT), full, encoder=None
    )
    assert summary.texts_encoded == 0 and summary.triplets == 2 and not staged.encoder.calls


def test_similarity_refuses_missing_texts_without_encoder_and_a_foreign_encoder(
    staged: SimpleNamespace,
) -> None:
    with pytest.raises(ScotInputError, match="no --encoder"):
        filter_triplets(staged.source, staged.tmp / "a", FilterConfig(prompt=PROMPT), staged.cache)
    with pytest.raises(ScotInputError, match="not the encoder of the cache"):
        caption_similarities(["a dog"], ["a cat"], staged.cache, BagOfWords("another-model"))


def test_without_similarity_band_no_embeddings_are_needed(staged: SimpleNamespace) -> None:
    summary = filter_triplets(
        staged.source, staged.tmp / "out", FilterConfig(similarity_band=False, prompt=PROMPT)
    )
    assert summary.triplets == 4 and "similarity_band" not in summary.would_drop_alone


def test_cli_filter_and_mix(staged: SimpleNamespace) -> None:
    out, mixed = staged.tmp / "cli-filtered", staged.tmp / "cli-mix"
    result = CliRunner().invoke(app, ["triplets", "filter", "--triplets", str(staged.source), "--out", str(out),
                                      "--no-similarity-band", "--no-few-shot-copy", "--prompt", str(PROMPT)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "dropped_by" in result.output and read_manifest(out)["stats"]["filters"] == [
        "repetition",
        "edit_words",
    ]
    result = CliRunner().invoke(app, ["mix", "--source", f"{out}:1", "--source", f"{staged.source}:1",
                                      "--out", str(mixed), "--total", "4"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert pq.read_table(mixed / "triplets.parquet").num_rows == 4
    bad = CliRunner().invoke(
        app,
        [
            "triplets",
            "filter",
            "--triplets",
            str(staged.source),
            "--out",
            str(out),
            "--low",
            "0.9",
            "--high",
            "0.5",
        ],
    )
    assert bad.exit_code == 2


# --- mixing ---------------------------------------------------------------------------------


def _source(tmp: Path, name: str, count: int, prefix: str | None = None) -> Path:
    rows = [
        triplet(f"{prefix or name}-{i}", f"a {name} {i}", "make it red", f"a red {name} {i}", name)
        for i in range(count)
    ]
    return write_triplets_dir(tmp / name, rows, with_rejects=False)


def test_mix_proportions_and_determinism(tmp_path: Path) -> None:
    llm, tpl = _source(tmp_path, "llm", 200), _source(tmp_path, "template", 1000)
    summary = mix_triplets([(llm, 0.3), (tpl, 0.7)], tmp_path / "mix", total=500, seed=1)
    table = pq.read_table(tmp_path / "mix" / "triplets.parquet")
    assert table.num_rows == 500 and [s["taken"] for s in summary.sources] == [150, 350]
    assert table.column("llm_model").to_pylist().count("llm") == 150
    assert table.schema == TRIPLETS_SCHEMA and read_manifest(tmp_path / "mix")["stage"] == "triplets"
    again = mix_triplets([(llm, 0.3), (tpl, 0.7)], tmp_path / "mix-again", total=500, seed=1)
    assert pq.read_table(tmp_path / "mix-again" / "triplets.parquet").equals(table) and not again.skipped
    other = pq.read_table(
        mix_triplets([(llm, 0.3), (tpl, 0.7)], tmp_path / "mix-2", 500, seed=2).out_dir + "/triplets.parquet"
    )
    assert set(other.column("triplet_id").to_pylist()) != set(table.column("triplet_id").to_pylist())
    first_half = table.slice(0, 250).column("llm_model").to_pylist().count("llm")
    assert 50 <= first_half <= 100  # rows are interleaved: a prefix is a mix too (expected 75)
    assert mix_triplets([(llm, 0.3), (tpl, 0.7)], tmp_path / "mix", total=500, seed=1).skipped


def test_mix_default_total_fills_the_scarcest_source(tmp_path: Path) -> None:
    llm, tpl = _source(tmp_path, "llm", 200), _source(tmp_path, "template", 1000)
    summary = mix_triplets([(llm, 0.3), (tpl, 0.7)], tmp_path / "mix")
    taken = [s["taken"] for s in summary.sources]
    assert taken[0] == 200 and summary.triplets == sum(taken) == 666
    assert abs(taken[0] / summary.triplets - 0.3) < 1 / summary.triplets
    with pytest.raises(ScotInputError, match="the mix needs"):
        mix_triplets([(llm, 0.5), (tpl, 0.5)], tmp_path / "too-many", total=1000)


def test_mix_never_holds_a_triplet_twice(tmp_path: Path) -> None:
    a = _source(tmp_path, "a", 50, prefix="shared")
    b = _source(tmp_path, "b", 80, prefix="shared")  # ids shared-0..49 are also in a
    summary = mix_triplets([(a, 1), (b, 1)], tmp_path / "mix")
    ids_ = pq.read_table(tmp_path / "mix" / "triplets.parquet").column("triplet_id").to_pylist()
    assert len(ids_) == len(set(ids_)) == 60 and summary.sources[1]["available"] == 30


def test_apportion_and_parse_source() -> None:
    assert apportion(10, [1, 1, 1]) == [4, 3, 3]
    assert sum(apportion(7, [0.3, 0.7])) == 7
    assert parse_source("shards/a:b/triplets:0.3") == (Path("shards/a:b/triplets"), 0.3)
    for bad in ("dir", "dir:0", "dir:-1", "dir:x", ":1"):
        with pytest.raises(ScotInputError):
            parse_source(bad)


# --- precision and recall on the labelled set -----------------------------------------------


@pytest.fixture(scope="module")
def labelled() -> list[dict]:
    return [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]


def test_labelled_fixture_is_well_formed(labelled: list[dict]) -> None:
    assert len(labelled) == 150 and len({r["triplet_id"] for r in labelled}) == 150
    assert {r["label"] for r in labelled} == {"good", "bad"}
    assert all(r.get("why") for r in labelled if r["label"] == "bad")
    assert all(-1.0 <= r["similarity"] <= 1.0 for r in labelled)


def _demo_is_the_fixture_source(labelled: list[dict]) -> bool:
    """The fixture was drawn from the demo of the object-caption recipe (85e30d9); a demo built
    since with another recipe (scene captions) holds other triplets, and these provenance
    checks have nothing to check there."""
    if not (DEMO_TRIPLETS / "triplets.parquet").exists() or not (DEMO_EMBEDDINGS / "manifest.json").exists():
        return False
    found = set(pq.read_table(DEMO_TRIPLETS / "triplets.parquet", columns=["triplet_id"]).column(0).to_pylist())
    return sum(r["triplet_id"] in found for r in labelled) * 2 > len(labelled)


def test_labelled_fixture_is_the_seed_0_sample_of_the_demo(labelled: list[dict]) -> None:
    if not _demo_is_the_fixture_source(labelled):
        pytest.skip("shards/demo is not the object-caption demo the fixture was drawn from")
    table = pq.read_table(DEMO_TRIPLETS / "triplets.parquet", columns=["triplet_id"])
    sample = sorted(table.column(0).to_pylist(), key=lambda i: ids.sample_rank(0, i))[:150]
    assert {r["triplet_id"] for r in labelled} == set(sample)


def test_labelled_similarities_come_from_the_demo_cache(labelled: list[dict]) -> None:
    if not _demo_is_the_fixture_source(labelled):
        pytest.skip("shards/demo is not the object-caption demo the fixture was drawn from")
    sims = caption_similarities([r["caption"] for r in labelled], [r["modified_caption"] for r in labelled],
                                DEMO_EMBEDDINGS, encoder=None)  # fmt: skip
    assert sims.encoded == 0
    np.testing.assert_allclose(sims.values, [r["similarity"] for r in labelled], atol=2e-3)


def _report_half_by_hand(rows: list[dict], seed: int) -> list[dict]:
    """The report half as documented: per label, the rows after the first half (rounded up)
    in ``ids.sample_rank(seed, triplet_id)`` order."""
    report = []
    for label in ("good", "bad"):
        in_label = [r for r in rows if r["label"] == label]
        ranked = sorted(in_label, key=lambda r: ids.sample_rank(seed, r["triplet_id"]))
        report += ranked[(len(ranked) + 1) // 2 :]
    return report


def test_labelled_halves_split_each_label_in_two(labelled: list[dict]) -> None:
    fit, report = labelled_half(labelled, "fit"), labelled_half(labelled, "report")
    fit_ids, report_ids = {r["triplet_id"] for r in fit}, {r["triplet_id"] for r in report}
    assert not fit_ids & report_ids and len(fit_ids | report_ids) == len(labelled)
    goods = sum(r["label"] == "good" for r in labelled)
    goods_per_half = [sum(r["label"] == "good" for r in half) for half in (fit, report)]
    assert goods_per_half == [(goods + 1) // 2, goods // 2]
    assert report_ids == {r["triplet_id"] for r in _report_half_by_hand(labelled, LABELLED_SPLIT_SEED)}
    assert labelled_half(labelled[::-1], "report") == report[::-1]  # by id, not by file order
    assert {r["triplet_id"] for r in labelled_half(labelled, "report", seed=1)} != report_ids


def test_band_fitted_on_the_fit_half_is_the_default(labelled: list[dict]) -> None:
    fit = labelled_half(labelled, "fit")
    low, high = fit_band([r["similarity"] for r in fit], [r["label"] for r in fit])
    goods = sorted(r["similarity"] for r in fit if r["label"] == "good")
    bads = [r["similarity"] for r in fit if r["label"] == "bad"]
    nearest_below, nearest_above = max(s for s in bads if s < goods[0]), min(s for s in bads if s > goods[-1])
    assert nearest_below < low < goods[0] and goods[-1] < high < nearest_above  # every good kept
    assert low - nearest_below == pytest.approx(goods[0] - low)  # widest margin: midway
    assert nearest_above - high == pytest.approx(high - goods[-1])
    assert (round(low, 2), round(high, 2)) == (FilterConfig().low, FilterConfig().high)
    assert fit_band([0.5, 0.6, 0.1], ["good", "good", "bad"]) == (pytest.approx(0.3), 1.0)  # none above


def test_precision_and_recall_on_the_report_half(labelled: list[dict], shots: FewShot) -> None:
    """The filters scored on triplets the band was not fitted on, each count made here by
    running each filter's own function over the report half."""
    cfg = FilterConfig(prompt=PROMPT)
    scores = score_labelled(labelled, cfg, half="report")
    print("\n" + labelled_report(scores))
    report = _report_half_by_hand(labelled, LABELLED_SPLIT_SEED)
    drops = {
        "few_shot_copy": [few_shot_problem(r["caption"], r["modification"], r["modified_caption"], shots,
                                           cfg.copy_jaccard) for r in report],
        "repetition": [repetition_problem(r["modification"], r["modified_caption"], cfg.max_word_repeats,
                                          cfg.loop_ngram) for r in report],
        "edit_words": [edit_words_problem(r["caption"], r["modification"], r["modified_caption"])
                       for r in report],
        "similarity_band": [band_problem(r["similarity"], cfg.low, cfg.high) for r in report],
    }  # fmt: skip
    good = [r["label"] == "good" for r in report]
    settings = {"unfiltered": [], **{name: [name] for name in FILTERS}, "all": list(FILTERS)}
    for setting, names in settings.items():
        kept = [not any(drops[n][i] for n in names) for i in range(len(report))]
        counted = (sum(good), len(good) - sum(good), sum(g and k for g, k in zip(good, kept)),
                   sum(k and not g for g, k in zip(good, kept)))  # fmt: skip
        score = scores[setting]
        assert (score.good, score.bad, score.good_kept, score.bad_kept) == counted, setting
        assert score.precision == pytest.approx(counted[2] / (counted[2] + counted[3]))
        assert score.recall == pytest.approx(counted[2] / counted[0])
    base, combined = scores["unfiltered"], scores["all"]
    assert 0.03 <= base.precision <= 0.3  # DESIGN.md: ~2-3 in 30 are real edits
    assert combined.precision > base.precision * 2
    assert all(scores[name].precision >= base.precision for name in FILTERS)
    assert all(scores[name].bad_drop_rate > 0 for name in FILTERS)
    assert combined.bad_drop_rate >= max(scores[name].bad_drop_rate for name in FILTERS)
    assert scores["similarity_band"].recall == 1.0  # the fitted band keeps every held-out good
    assert combined.recall >= 0.6
    assert combined.recall <= min(scores[name].recall for name in FILTERS)


def test_cli_score_labelled_fits_on_one_half_and_reports_the_other(labelled: list[dict], tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["triplets", "score-labelled", "--labelled", str(FIXTURE), "--prompt", str(PROMPT)])
    assert result.exit_code == 0, result.output
    fit = labelled_half(labelled, "fit")
    low, high = fit_band([r["similarity"] for r in fit], [r["label"] for r in fit])
    assert f"band fitted on the fit half ({len(fit)} rows): {low:.2f}-{high:.2f}" in result.output
    expected = labelled_report(score_labelled(labelled, FilterConfig(prompt=PROMPT), half="report"))
    assert expected in result.output
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"triplet_id": "a"}\n')
    bad = CliRunner().invoke(app, ["triplets", "score-labelled", "--labelled", str(broken)])
    assert bad.exit_code == 2 and "broken.jsonl: not a labelled triplet set" in bad.output
