"""Comparing triplet LLMs on one labelled set: ``score-labelled --model`` and
``scripts/compare_llms.py`` (no server, no model weights).

``tests/fixtures/labelled_scene_triplets.jsonl`` holds the triplets SmolLM2-135M-Instruct and
Gemma-3-270m (base) wrote for the same 80 demo scene captions (``--limit 80 --seed 1``, prompt
``scenes-v1``), each labelled ``good`` or ``bad`` by reading it, with the ``model`` that wrote it
and the caption/modified-caption cosine under the demo's fitted lit-mini.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import jinja2
import pytest
from typer.testing import CliRunner

from scot_data.cli import app
from scot_data.triplets.filters import FilterConfig
from scot_data.triplets.labelled import fit_band, labelled_half, labelled_report, score_labelled, select_model

REPO = Path(__file__).resolve().parents[1]
OLD_FIXTURE = REPO / "tests" / "fixtures" / "labelled_triplets.jsonl"
SCENE_FIXTURE = REPO / "tests" / "fixtures" / "labelled_scene_triplets.jsonl"
SCENE_PROMPT = REPO / "pipelines" / "prompts" / "scenes-v1.yaml"
V1_PROMPT = REPO / "pipelines" / "prompts" / "v1.yaml"


def _script():
    spec = importlib.util.spec_from_file_location("compare_llms", REPO / "scripts" / "compare_llms.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The SmolLM2 fixture twice: as model ``a``, and as model ``b`` with new ids and the
    labels of its first 20 rows flipped (so the two models score differently)."""
    rows = _read(OLD_FIXTURE)
    a = [{**r, "model": "a"} for r in rows]
    b = [{**r, "model": "b", "triplet_id": r["triplet_id"] + "-b",
          "label": ({"good": "bad", "bad": "good"}[r["label"]] if i < 20 else r["label"])}
         for i, r in enumerate(rows)]  # fmt: skip
    path = tmp_path_factory.mktemp("mixed") / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in a + b))
    return path


def test_select_model() -> None:
    rows = [{"model": "a", "x": 1}, {"model": "b", "x": 2}, {"x": 3}]
    assert select_model(rows, None) == rows
    assert select_model(rows, "b") == [{"model": "b", "x": 2}]
    with pytest.raises(ValueError, match="no rows with model 'c'.*a, b"):
        select_model(rows, "c")


def test_cli_score_labelled_model_scores_one_model_alone(mixed: Path) -> None:
    rows = _read(mixed)
    for model in ("a", "b"):
        result = CliRunner().invoke(app, ["triplets", "score-labelled", "--labelled", str(mixed),
                                          "--prompt", str(V1_PROMPT), "--model", model])  # fmt: skip
        assert result.exit_code == 0, result.output
        mine = [r for r in rows if r["model"] == model]
        fit = labelled_half(mine, "fit")
        low, high = fit_band([r["similarity"] for r in fit], [r["label"] for r in fit])
        assert f"band fitted on the fit half ({len(fit)} rows): {low:.2f}-{high:.2f}" in result.output
        cfg = FilterConfig(low=round(low, 2), high=round(high, 2), prompt=V1_PROMPT)
        assert labelled_report(score_labelled(mine, cfg, half="report")) in result.output
    bad = CliRunner().invoke(app, ["triplets", "score-labelled", "--labelled", str(mixed), "--model", "c"])
    assert bad.exit_code == 2 and "no rows with model 'c'" in bad.output


def test_paired_counts_captions_every_model_wrote_for() -> None:
    paired = _script().paired
    rows = [
        {"triplet_id": "1", "caption": "x", "model": "a", "label": "good"},
        {"triplet_id": "2", "caption": "x", "model": "b", "label": "bad"},
        {"triplet_id": "3", "caption": "y", "model": "a", "label": "good"},  # b wrote nothing for y
        {"triplet_id": "4", "caption": "z", "model": "a", "label": "bad"},
        {"triplet_id": "5", "caption": "z", "model": "b", "label": "good"},
    ]
    assert paired(rows) == {"captions": 2, "good": {"a": 1, "b": 1}, "rows": {"a": 2, "b": 2}}
    assert paired(rows, {"1", "2", "3", "4"}) == {"captions": 1, "good": {"a": 1, "b": 0},
                                                  "rows": {"a": 1, "b": 1}}


def test_table_has_a_line_per_model(mixed: Path) -> None:
    text = _script().table(_read(mixed), V1_PROMPT)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["model", "rows", "good"] and len(lines) == 8
    assert lines[1].split()[:3] == ["a", "150", "15"] and lines[2].split()[:3] == ["b", "150", "31"]
    captions = len({r["caption"] for r in _read(OLD_FIXTURE)})
    assert f"paired, unfiltered (captions every model wrote a valid triplet for): {captions} captions" in text


def test_gemma_chat_template_folds_the_system_prompt_into_the_first_user_turn() -> None:
    template = jinja2.Environment().from_string(_script().GEMMA_CHAT_TEMPLATE)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Caption: a cup"},
                {"role": "assistant", "content": '{"a": 1}'}, {"role": "user", "content": "Caption: a pen"}]
    text = template.render(messages=messages, bos_token="<bos>", add_generation_prompt=True)
    assert text == ("<bos><start_of_turn>user\nBe brief.\n\nCaption: a cup<end_of_turn>\n"
                    '<start_of_turn>model\n{"a": 1}<end_of_turn>\n'
                    "<start_of_turn>user\nCaption: a pen<end_of_turn>\n<start_of_turn>model\n")
    plain = template.render(messages=messages[1:2], bos_token="<bos>", add_generation_prompt=False)
    assert plain == "<bos><start_of_turn>user\nCaption: a cup<end_of_turn>\n"


def test_scene_fixture_is_well_formed() -> None:
    rows = _read(SCENE_FIXTURE)
    assert len(rows) == 110 and len({r["triplet_id"] for r in rows}) == 110
    fields = {"triplet_id", "caption", "modification", "modified_caption", "edit_type", "label", "why",
              "similarity", "model"}  # fmt: skip
    assert all(set(r) == fields for r in rows)
    assert {m: sum(r["model"] == m for r in rows) for m in ("smollm2-135m-instruct", "gemma-3-270m")} == {
        "smollm2-135m-instruct": 50, "gemma-3-270m": 60}
    assert {r["label"] for r in rows} == {"good", "bad"} and all(r["why"] for r in rows)
    assert all(-1.0 <= r["similarity"] <= 1.0 for r in rows)
    assert len({r["caption"] for r in rows}) <= 80  # one seeded sample of 80 captions for both models


def test_scene_fixture_table() -> None:
    text = _script().table(_read(SCENE_FIXTURE), SCENE_PROMPT)
    assert text.splitlines()[1].startswith("gemma-3-270m") and text.splitlines()[2].startswith("smollm2")
    assert "paired, unfiltered (captions every model wrote a valid triplet for): 39 captions" in text
