"""The HTML evaluation report: numbers, bold best, Combiner − sum, inline images, escaping."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from scot_data.evaluate.report import (
    DELTA_LABEL,
    REPORT_FILE,
    best_per_column,
    combiner_minus_sum,
    recall_table_rows,
    render_report,
    split_training_log,
    training_plots,
    write_report,
)

METRICS = {
    "image_only": {"R@1": 12.0, "R@5": 30.25, "R@10": 41.0},
    "text_only": {"R@1": 20.5, "R@5": 44.0, "R@10": 55.0},
    "sum": {"R@1": 25.0, "R@5": 52.0, "R@10": 66.5},
    "combiner": {"R@1": 31.75, "R@5": 51.0, "R@10": 70.0},
}
LABELS = {
    "image_only": "image only",
    "text_only": "text only",
    "sum": "sum (V + T_m)",
    "combiner": "Combiner",
}
TRAINING_LINES = [
    {"step": 1, "epoch": 0, "loss": 1.5, "lr": 0.0001, "logit_scale": 20.0, "lambda_mean": 0.5},
    {"step": 2, "epoch": 0, "loss": 1.2, "lr": 0.0002, "logit_scale": 20.0, "lambda_mean": 0.55},
    {"step": 2, "epoch": 0, "split": "val", "combiner": 0.8, "sum": 0.7, "image_only": 0.5},
    {"step": 3, "epoch": 1, "loss": 1.0, "lr": 0.0002, "logit_scale": 20.0, "lambda_mean": 0.6},
    {"step": 4, "epoch": 1, "split": "val", "combiner": 0.85, "sum": 0.7, "image_only": 0.5},
]
# loss, val recall, lambda_mean, lr, logit_scale
TRAINING_PLOTS = 5


def _png(path: Path, colour: tuple[int, int, int], size: int = 200) -> str:
    Image.new("RGBA", (size, size), (*colour, 255)).save(path)
    return str(path)


def _results(tmp_path: Path) -> dict[str, Any]:
    ref = _png(tmp_path / "ref.png", (200, 30, 30))
    target = _png(tmp_path / "target.png", (30, 200, 30))
    other = _png(tmp_path / "other.png", (30, 30, 200))
    missing = str(tmp_path / "gone" / "missing-image.png")
    training = tmp_path / "run"
    training.mkdir()
    lines = [json.dumps(r) for r in TRAINING_LINES] + ['{"step": 5, "loss": ']  # a torn last line
    (training / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    summary = {"steps": 4, "final_loss": 1.0, "val_baselines": {"sum": 0.7, "image_only": 0.5}}
    return {
        "created": "2026-11-29T03:00:00Z",
        "benchmark": "clipart",
        "split": "val",
        "encoder": "lit-mini@heads.safetensors",
        "combiner": "run/combiner.safetensors",
        "methods": ["image_only", "text_only", "sum", "combiner"],
        "metrics": {"clipart": METRICS},
        "by_kind": {"clipart": {"replace": {"sum": {"R@1": 10.0}, "combiner": {"R@1": 14.0}}}},
        "lambda": {"mean": 0.61, "edges": [0.0, 0.25, 0.5, 0.75, 1.0], "counts": [1, 3, 5, 2]},
        "queries": [
            {
                "benchmark": "clipart",
                "query_id": "12",
                "kind": "replace",
                "reference": "ref",
                "reference_path": ref,
                "text": "replace the lamp with a <script>alert(1)</script> violin",
                "targets": ["target"],
                "lambda": 0.42,
                "top_k": {
                    "combiner": [
                        {"name": "target", "path": target, "score": 0.81, "is_target": True},
                        {"name": "other", "path": other, "score": 0.5, "is_target": False},
                    ],
                    "sum": [
                        {"name": "other", "path": other, "score": 0.7, "is_target": False},
                        {"name": "missing", "path": missing, "score": 0.6, "is_target": False},
                    ],
                },
            }
        ],
        "training": {"dir": str(training), "summary": summary},
        "tables": [
            {
                "title": "Ablation <b>x</b>",
                "columns": ["setting", "R@1"],
                "rows": [["on", 15.2]],
                "note": "3 seeds",
            }
        ],
        "submissions": ["cirr_test_recall.json"],
    }


@pytest.fixture
def report(tmp_path: Path) -> tuple[dict[str, Any], Path, str]:
    results = _results(tmp_path)
    out = tmp_path / "out"
    path = write_report(results, out, thumb_size=32)
    return results, path, path.read_text(encoding="utf-8")


def _row(text: str, label: str) -> list[str]:
    """The cells of the first table row whose first cell is ``label``."""
    match = re.search(r"<tr[^>]*><td>" + re.escape(label) + r"</td>(.*?)</tr>", text)
    assert match, label
    return re.findall(r"<td[^>]*>(.*?)</td>", match.group(1))


def test_table_rows_best_and_delta_come_from_the_input() -> None:
    header, *rows = recall_table_rows(METRICS, list(LABELS))
    assert header == ["method", "R@1", "R@5", "R@10"]
    assert [r[0] for r in rows] == list(LABELS.values())
    assert rows[0][1:] == [12.0, 30.25, 41.0]
    assert best_per_column(rows) == [31.8, 52.0, 70.0]
    expected = [METRICS["combiner"][k] - METRICS["sum"][k] for k in header[1:]]
    assert combiner_minus_sum(METRICS, header[1:]) == pytest.approx(expected)
    assert combiner_minus_sum({"sum": METRICS["sum"]}, header[1:]) is None


def test_numbers_bold_best_and_delta_in_html(report: tuple[dict[str, Any], Path, str]) -> None:
    _, path, text = report
    assert path.name == REPORT_FILE
    assert _row(text, "image only") == ["12.0", "30.2", "41.0"]
    columns = ["R@1", "R@5", "R@10"]
    for i, column in enumerate(columns):
        winner = max(METRICS, key=lambda method: METRICS[method][column])
        assert _row(text, LABELS[winner])[i] == f"<b>{METRICS[winner][column]:.1f}</b>"
    assert "<b>12.0</b>" not in text
    deltas = [f"{METRICS['combiner'][c] - METRICS['sum'][c]:+.1f}" for c in columns]
    assert _row(text, DELTA_LABEL) == deltas
    assert 'class="neg">-1.0<' in text and 'class="pos">+6.8<' in text


def test_inline_images_target_placeholder_and_escaping(report: tuple[dict[str, Any], Path, str]) -> None:
    _, _, text = report
    # reference + 2 combiner tiles + 1 readable sum tile; the missing file is a placeholder
    thumbnails = 4
    plots = 1 + 1 + TRAINING_PLOTS  # bar chart, lambda histogram, training curves
    assert text.count("data:image/jpeg;base64,") == thumbnails
    assert text.count("data:image/png;base64,") == plots
    assert text.count('class="tile target"') == 1
    assert text.count("target not in top 2") == 1
    assert 'class="ph"' in text and ">missing-image.png</div>" in text
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "Ablation &lt;b&gt;x&lt;/b&gt;" in text and "<td>15.2</td>" in text
    assert "http://" not in text and "https://" not in text
    assert "kind: replace" in text and 'href="cirr_test_recall.json"' in text


def test_write_is_atomic_and_leaves_no_temporaries(report: tuple[dict[str, Any], Path, str]) -> None:
    results, path, _ = report
    write_report(results, path.parent)
    assert [p.name for p in path.parent.iterdir()] == [REPORT_FILE]


def test_training_log_split_and_plots() -> None:
    steps, evals = split_training_log(TRAINING_LINES)
    assert len(steps) == 3 and list(evals) == ["val"] and len(evals["val"]) == 2
    plots = training_plots(TRAINING_LINES, {"val_baselines": {"sum": 0.7}})
    assert len(plots) == TRAINING_PLOTS and all(p.startswith("<img src=") for p in plots)


def test_minimal_results_render(tmp_path: Path) -> None:
    text = render_report({"benchmark": "cirr", "metrics": {"cirr": {"sum": {"R@1": 5.0}}}})
    assert "<td><b>5.0</b></td>" in text and DELTA_LABEL not in text
    assert text.count("data:image/png") == 1
    missing_dir = render_report({"training": {"dir": str(tmp_path / "nope"), "summary": None}})
    assert "No metrics.jsonl" in missing_dir


def test_test_split_query_without_targets_has_no_miss_line() -> None:
    item = {"name": "a", "path": None, "score": 0.5, "is_target": False}
    query = {"benchmark": "cirr", "query_id": "1", "text": "t", "targets": [], "top_k": {"sum": [item]}}
    text = render_report({"queries": [query]})
    assert "target not in top" not in text and 'class="ph"' in text


def test_paired_delta_rows_show_intervals_and_mark_only_those_excluding_zero(tmp_path: Path) -> None:
    deltas = {"combiner": {"R@1": {"mean": 6.75, "ci95": [2.0, 11.5], "excludes_zero": True},
                           "R@5": {"mean": -1.0, "ci95": [-4.0, 2.0], "excludes_zero": False}},
              "image_only": {"R@1": {"mean": -13.0, "ci95": [-18.0, -8.0], "excludes_zero": True}}}  # fmt: skip
    metrics = {m: {k: v for k, v in METRICS[m].items() if k != "R@10"} for m in METRICS}
    results = {"benchmark": "clipart", "split": "test", "methods": list(LABELS),
               "metrics": {"clipart": metrics}, "deltas": {"clipart": deltas}}  # fmt: skip
    text = write_report(results, tmp_path).read_text()
    assert _row(text, "Combiner − sum") == ["+6.8 [+2.0, +11.5]*", "-1.0 [-4.0, +2.0]"]
    assert _row(text, "image only − sum") == ["-13.0 [-18.0, -8.0]*", "–"]
    assert 'class="pos">+6.8 [+2.0, +11.5]*<' in text and 'class="neg">-13.0' in text
    assert DELTA_LABEL not in text  # the unpaired row gives way to the paired one


def test_worst_queries_section_shows_both_ranks(report: tuple[dict[str, Any], Path, str], tmp_path: Path) -> None:
    results, _, _ = report
    worst = [{**results["queries"][0], "ranks": {"combiner": 9, "sum": 2}}]
    text = write_report({**results, "worst_queries": worst}, tmp_path).read_text()
    assert "Where the Combiner loses most to sum" in text and "target rank: Combiner #9, sum (V + T_m) #2" in text
    assert "Where the Combiner loses most" not in write_report(results, tmp_path).read_text()
