"""A self-contained HTML report of one evaluation run (``report.html``).

The report is one file: plots and thumbnails are inline base64 images and the style is a
small embedded ``<style>``, so it can be archived, mailed or opened offline, and it refers
to no network resource. Every string that comes from the results (benchmark names, query
texts, file names) goes through ``html.escape``. A missing or unreadable image becomes a
grey placeholder with its file name: one lost thumbnail must not cost the whole report.

``write_report(results, out_dir)`` renders the results dict the evaluator writes as
``results.json``; the small pure helpers (``recall_table_rows``, ``combiner_minus_sum``,
``best_per_column``, ``split_training_log``...) are what the tests check directly.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image

from scot_data.atomic import atomic_write_bytes

REPORT_FILE = "report.html"
METHOD_LABELS = {
    "image_only": "image only",
    "text_only": "text only",
    "sum": "sum (V + T_m)",
    "combiner": "Combiner",
    "target_caption": "target caption as query",
}
DELTA_LABEL = "Combiner − sum (points)"
LAMBDA_AXIS = "lambda (weight of T_m; V gets 1 − lambda)"
AXIS_KEYS = ("step", "epoch")
PLOT_DPI = 100
WORST_NOTE = ('<p class="note">Queries whose target the Combiner ranks furthest below sum (every query\'s '
              "ranks are in queries.parquet).</p>")

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.8em}
nav a{margin-right:1em}
table{border-collapse:collapse;margin:.6em 0}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}
tr.delta td{background:#f4f4f4}.pos{color:#171}.neg{color:#b11}
caption{text-align:left;font-weight:600;padding:.2em 0}
.note{color:#666;font-size:.9em}
.pair{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}
.query{border:1px solid #ddd;border-radius:6px;padding:.6em;margin:.8em 0}
.head{display:flex;gap:1em;align-items:flex-start}
.method{margin-top:.5em}.method b{display:inline-block;min-width:9em}
.tiles{display:flex;flex-wrap:wrap;gap:6px;margin-top:.2em}
figure.tile{margin:0;text-align:center;font-size:.8em;padding:3px;border:3px solid transparent}
figure.tile.target{border-color:#2a2}
figure.tile img{display:block}
.ph{background:#bbb;color:#333;display:flex;align-items:center;justify-content:center;
overflow:hidden;word-break:break-all;font-size:.75em;padding:2px;box-sizing:border-box}
.miss{color:#b11;font-size:.9em}
"""


def esc(value: Any) -> str:
    """HTML-escaped text of any value (quotes too, so it is safe inside attributes)."""
    return html.escape(str(value), quote=True)


def is_number(value: Any) -> bool:
    """A finite int or float (``bool`` excluded): the values that may be plotted or compared."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def method_label(method: str) -> str:
    """The readable name of a query method (unknown methods keep their key, underscores as spaces)."""
    return METHOD_LABELS.get(method, method.replace("_", " "))


def format_points(value: Any) -> str:
    """A metric in percent points with one decimal, or a dash when it was not computed."""
    return f"{value:.1f}" if is_number(value) else "–"


def format_delta(value: Any) -> str:
    """A signed difference in points (``+0.0`` rather than ``-0.0`` for a tie)."""
    return f"{round(value, 1) + 0.0:+.1f}" if is_number(value) else "–"


def format_cell(value: Any) -> str:
    """A generic table cell: points-like floats get one decimal, fractions two, the rest ``str``."""
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.1f}" if abs(value) >= 1 else f"{value:.2f}"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return "–" if value is None else str(value)


def ordered_methods(metrics: Mapping[str, Any], preferred: Sequence[str] = ()) -> list[str]:
    """Methods that have a metric dict, in the run's order first, so all tables read alike."""
    present = [m for m, v in metrics.items() if isinstance(v, Mapping)]
    return [m for m in preferred if m in present] + [m for m in present if m not in preferred]


def metric_columns(metrics: Mapping[str, Any], methods: Sequence[str]) -> list[str]:
    """Every metric any method has, in first-seen order (the evaluator writes them sorted by K)."""
    return list(dict.fromkeys(key for method in methods for key in metrics[method]))


def recall_table_rows(metrics: Mapping[str, Any], methods: Sequence[str] = ()) -> list[list[Any]]:
    """A header row ``["method", *metrics]``, then ``[readable name, *values]`` per method.

    Values are the numbers as given (``None`` where a method lacks a metric), so the caller
    decides the formatting; ``methods`` fixes the row order (the rest follow).
    """
    order = ordered_methods(metrics, methods)
    columns = metric_columns(metrics, order)
    rows = [[method_label(m), *(metrics[m].get(c) for c in columns)] for m in order]
    return [["method", *columns], *rows]


def combiner_minus_sum(metrics: Mapping[str, Any], columns: Sequence[str]) -> list[float | None] | None:
    """Combiner minus the sum baseline per metric, in points; ``None`` unless both were scored."""
    combiner, summed = metrics.get("combiner"), metrics.get("sum")
    if not isinstance(combiner, Mapping) or not isinstance(summed, Mapping):
        return None
    pairs = [(combiner.get(c), summed.get(c)) for c in columns]
    return [a - b if is_number(a) and is_number(b) else None for a, b in pairs]


def best_per_column(rows: Sequence[Sequence[Any]]) -> list[float | None]:
    """The best value per column (after the label) at the shown precision, so ties all go bold."""
    width = max((len(r) for r in rows), default=1)
    columns = [[round(r[i], 1) for r in rows if i < len(r) and is_number(r[i])] for i in range(1, width)]
    return [max(values) if values else None for values in columns]


def _png(figure: Figure) -> bytes:
    """The figure rendered by the Agg canvas (no pyplot: no global state between reports)."""
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=PLOT_DPI, bbox_inches="tight")
    return buffer.getvalue()


def _axes(title: str, xlabel: str, ylabel: str, size: tuple[float, float] = (6.0, 3.6)) -> Axes:
    """One titled, labelled axes on a fresh figure (every plot in the report has both)."""
    axes = Figure(figsize=size).subplots()
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
    axes.grid(alpha=0.3)
    return axes


def img_tag(data: bytes, mime: str, alt: str, extra: str = "") -> str:
    """An ``<img>`` whose source is the bytes themselves (``data:`` URI), nothing to fetch."""
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img src="data:{mime};base64,{encoded}" alt="{esc(alt)}"{extra}>'


def _plot(axes: Axes, alt: str) -> str:
    """The axes' figure as an inline PNG."""
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=8)
    return img_tag(_png(axes.get_figure()), "image/png", alt)


def recall_bar_chart(benchmark: str, metrics: Mapping[str, Any], methods: Sequence[str]) -> str:
    """Grouped bars, one group per metric and one bar per method: the table at a glance."""
    header, *rows = recall_table_rows(metrics, methods)
    columns = header[1:]
    size = (max(6.0, len(columns) * 1.4), 3.6)
    axes = _axes(f"{benchmark}: metrics by method", "metric", "value (%)", size)
    width = 0.8 / max(len(rows), 1)
    for i, row in enumerate(rows):
        positions = [c + (i - (len(rows) - 1) / 2) * width for c in range(len(columns))]
        axes.bar(positions, [v if is_number(v) else 0.0 for v in row[1:]], width, label=row[0])
    axes.set_xticks(range(len(columns)), columns, fontsize=8)
    return _plot(axes, f"{benchmark} metrics by method")


def _td(text: str, css: str = "") -> str:
    """A table cell (``text`` is already HTML)."""
    return f'<td class="{css}">{text}</td>' if css else f"<td>{text}</td>"


def _value_cell(value: Any, best: float | None) -> str:
    """A metric cell, bold when it equals the column's best at the shown precision."""
    text = format_points(value)
    return _td(f"<b>{text}</b>" if is_number(value) and round(value, 1) == best else text)


def _delta_cell(value: Any) -> str:
    """A signed difference, green when the Combiner is ahead and red when behind (as shown)."""
    shown = round(value, 1) if is_number(value) else 0.0
    css = "pos" if shown > 0 else "neg" if shown < 0 else ""
    return _td(format_delta(value), css)


def _interval_cell(value: Mapping[str, Any]) -> str:
    """A difference with its paired interval, coloured only when the interval excludes 0."""
    low, high = value["ci95"]
    css = ("pos" if value["mean"] > 0 else "neg") if value.get("excludes_zero") else ""
    text = f"{format_delta(value['mean'])} [{format_delta(low)}, {format_delta(high)}]"
    return _td(esc(text + ("*" if value.get("excludes_zero") else "")), css)


def delta_rows_html(deltas: Mapping[str, Any], columns: Sequence[str]) -> list[str]:
    """One row per method: its difference from sum with the paired 95% interval per metric."""
    return [
        '<tr class="delta">' + _td(esc(f"{method_label(m)} − sum")) +
        "".join(_interval_cell(by[c]) if c in by else _td("–") for c in columns) + "</tr>"
        for m, by in deltas.items()
    ]  # fmt: skip


def recall_table_html(metrics: Mapping[str, Any], methods: Sequence[str], caption: str = "",
                      deltas: Mapping[str, Any] | None = None) -> str:  # fmt: skip
    """Methods x metrics, best per column in bold, then each method minus sum: with its paired
    interval when ``deltas`` are given (``*``: excludes 0), else the plain Combiner − sum."""
    header, *rows = recall_table_rows(metrics, methods)
    best = best_per_column(rows)
    head = "".join(f"<th>{esc(c)}</th>" for c in header)
    body = [
        "<tr>" + _td(esc(r[0])) + "".join(_value_cell(v, b) for v, b in zip(r[1:], best)) + "</tr>"
        for r in rows
    ]
    delta = combiner_minus_sum(metrics, header[1:])
    if deltas:
        body += delta_rows_html(deltas, header[1:])
    elif delta is not None:
        body.append('<tr class="delta">' + _td(esc(DELTA_LABEL)) + "".join(map(_delta_cell, delta)) + "</tr>")
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return f"<table>{cap}<tr>{head}</tr>{''.join(body)}</table>"


def generic_table_html(table: Mapping[str, Any]) -> str:
    """An extra table (ablations...): title, columns, rows and an optional note, all escaped."""
    head = "".join(f"<th>{esc(c)}</th>" for c in table.get("columns", []))
    body = "".join(
        "<tr>" + "".join(_td(esc(format_cell(v))) for v in row) + "</tr>" for row in table.get("rows", [])
    )
    note = f'<p class="note">{esc(table["note"])}</p>' if table.get("note") else ""
    return f"<h3>{esc(table.get('title', 'table'))}</h3><table><tr>{head}</tr>{body}</table>{note}"


class Thumbnails:
    """Inline thumbnails, each file read once per report (a gallery image recurs across methods)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._cache: dict[str, bytes | None] = {}

    def jpeg(self, path: str) -> bytes | None:
        """The thumbnail as JPEG bytes (alpha flattened on white), or ``None`` if unreadable."""
        if path not in self._cache:
            self._cache[path] = self._encode(path)
        return self._cache[path]

    def _encode(self, path: str) -> bytes | None:
        """Open, shrink and encode one image; any unreadable file gives ``None``."""
        try:
            with Image.open(path) as image:
                image.thumbnail((self.size, self.size))
                rgba = image.convert("RGBA")
        except (OSError, ValueError):
            return None
        flat = Image.new("RGB", rgba.size, "white")
        flat.paste(rgba, mask=rgba.getchannel("A"))
        buffer = io.BytesIO()
        flat.save(buffer, format="JPEG", quality=85)
        return buffer.getvalue()

    def html(self, path: str | None, name: str) -> str:
        """The image, or a grey box showing the file name when it cannot be read."""
        data = self.jpeg(path) if path else None
        if data is not None:
            return img_tag(data, "image/jpeg", name, f' title="{esc(path)}"')
        label = Path(path).name if path else name
        box = f"width:{self.size}px;height:{self.size}px"
        return f'<div class="ph" style="{box}" title="{esc(path or name)}">{esc(label)}</div>'


def _is_target(item: Mapping[str, Any], targets: Sequence[str]) -> bool:
    """A retrieved item is a target when the evaluator marked it or its name is a target's."""
    return bool(item.get("is_target")) or item.get("name") in targets


def _tile(item: Mapping[str, Any], rank: int, targets: Sequence[str], thumbs: Thumbnails) -> str:
    """One retrieved image with its rank and score, outlined when it is a target."""
    css = "tile target" if _is_target(item, targets) else "tile"
    score = f"{item['score']:.3f}" if is_number(item.get("score")) else "–"
    name = str(item.get("name", ""))
    image = thumbs.html(item.get("path"), name)
    return f'<figure class="{css}">{image}<figcaption>#{rank} · {score}</figcaption></figure>'


def _method_row(
    method: str, items: Sequence[Mapping[str, Any]], targets: Sequence[str], thumbs: Thumbnails
) -> str:
    """A method's top k as tiles, with a warning line when a known target did not make it in."""
    tiles = "".join(_tile(item, item.get("rank", i + 1), targets, thumbs) for i, item in enumerate(items))
    hit = any(_is_target(item, targets) for item in items) or not targets
    miss = "" if hit else f'<div class="miss">target not in top {len(items)}</div>'
    return (
        f'<div class="method"><b>{esc(method_label(method))}</b>{miss}<div class="tiles">{tiles}</div></div>'
    )


def query_html(query: Mapping[str, Any], thumbs: Thumbnails) -> str:
    """One sample query: reference, text, lambda, kind and target ranks, then every method's top k."""
    targets = [str(t) for t in query.get("targets") or []]
    lam = query.get("lambda")
    ranks = ", ".join(f"{method_label(m)} #{r}" for m, r in (query.get("ranks") or {}).items())
    facts = [
        f"target rank: {esc(ranks)}" if ranks else "",
        f"<b>{esc(query.get('benchmark', ''))} #{esc(query.get('query_id', ''))}</b>",
        f"kind: {esc(query['kind'])}" if query.get("kind") else "",
        f"lambda: {lam:.2f}" if is_number(lam) else "",
        f"reference: {esc(query.get('reference', ''))}",
        f"target: {esc(', '.join(targets))}",
    ]
    text = f"<p>“{esc(query.get('text', ''))}”</p>"
    info = "<div>" + "<br>".join(f for f in facts if f) + text + "</div>"
    reference = thumbs.html(query.get("reference_path"), str(query.get("reference", "")))
    rows = "".join(_method_row(m, items, targets, thumbs) for m, items in (query.get("top_k") or {}).items())
    return f'<div class="query"><div class="head">{reference}{info}</div>{rows}</div>'


def lambda_histogram(lam: Mapping[str, Any]) -> str:
    """The Combiner's mixing weight over all queries, with its mean as a vertical line."""
    edges, counts = list(lam.get("edges") or []), list(lam.get("counts") or [])
    if len(edges) != len(counts) + 1 or not counts:
        return '<p class="note">lambda histogram: edges and counts do not match.</p>'
    axes = _axes("Combiner mixing weight over all queries", LAMBDA_AXIS, "queries")
    widths = [b - a for a, b in itertools.pairwise(edges)]
    axes.bar(edges[:-1], counts, widths, align="edge", edgecolor="white")
    if is_number(lam.get("mean")):
        axes.axvline(lam["mean"], color="C3", linestyle="--", label=f"mean {lam['mean']:.2f}")
    return _plot(axes, "lambda histogram")


def read_training_log(directory: Path) -> list[dict[str, Any]]:
    """Records of ``metrics.jsonl``; a torn or malformed line (a killed run) is skipped."""
    path = directory / "metrics.jsonl"
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def split_training_log(records: Sequence[Mapping[str, Any]]) -> tuple[list, dict[str, list]]:
    """Training-step records, and evaluation records grouped by their ``split`` value."""
    steps = [r for r in records if "split" not in r]
    evals: dict[str, list] = {}
    for record in records:
        if "split" in record:
            evals.setdefault(str(record["split"]), []).append(record)
    return steps, evals


def numeric_series(records: Sequence[Mapping[str, Any]], x_key: str) -> dict[str, tuple[list, list]]:
    """Every numeric key other than step/epoch as (x, y) points, where both are numbers."""
    series: dict[str, tuple[list, list]] = {}
    for record in records:
        for key, value in record.items():
            if key not in AXIS_KEYS and is_number(value) and is_number(record.get(x_key)):
                xs, ys = series.setdefault(key, ([], []))
                xs.append(record[x_key])
                ys.append(value)
    return series


def _x_key(records: Sequence[Mapping[str, Any]]) -> str:
    """Evaluations are drawn per epoch when every record has one, else per step."""
    return "epoch" if records and all(is_number(r.get("epoch")) for r in records) else "step"


def _loss_plot(train: dict[str, tuple[list, list]], evals: dict[str, dict[str, tuple[list, list]]]) -> str:
    """Every loss series (training and evaluation) against the step."""
    axes = _axes("Loss", "step", "loss")
    for key, (xs, ys) in train.items():
        if "loss" in key:
            axes.plot(xs, ys, label=f"train {key}")
    for split, series in evals.items():
        for key, (xs, ys) in series.items():
            if "loss" in key:
                axes.plot(xs, ys, marker="o", label=f"{split} {key}")
    return _plot(axes, "loss")


def _eval_plot(split: str, records: list, baselines: Mapping[str, Any]) -> str | None:
    """An evaluation's non-loss series per epoch; baselines as horizontal dashed lines."""
    x_key = _x_key(records)
    series = {k: v for k, v in numeric_series(records, x_key).items() if "loss" not in k}
    if not series:
        return None
    axes = _axes(f"{split} recall per {x_key}", x_key, f"{split} recall")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    for key, (xs, ys) in series.items():
        if key not in baselines:
            axes.plot(xs, ys, marker="o", label=method_label(key))
    for i, (key, value) in enumerate(b for b in baselines.items() if is_number(b[1])):
        axes.axhline(value, color=f"C{i + 1}", linestyle="--", label=f"{method_label(key)} (baseline)")
    return _plot(axes, f"{split} recall")


def _series_plot(title: str, series: dict[str, tuple[list, list]], ylabel: str) -> str:
    """A few step series on one axes (lambda_mean and the like)."""
    axes = _axes(title, "step", ylabel)
    for key, (xs, ys) in series.items():
        axes.plot(xs, ys, label=key)
    return _plot(axes, title)


def training_plots(records: Sequence[Mapping[str, Any]], summary: Mapping[str, Any]) -> list[str]:
    """Loss, evaluation recall, lambda_mean and every other numeric training series."""
    steps, eval_records = split_training_log(records)
    train = numeric_series(steps, "step")
    evals = {split: numeric_series(rs, "step") for split, rs in eval_records.items()}
    plots = []
    if any("loss" in k for s in [train, *evals.values()] for k in s):
        plots.append(_loss_plot(train, evals))
    baselines = summary.get("val_baselines") or {}
    plots += [p for split, rs in eval_records.items() if (p := _eval_plot(split, rs, baselines))]
    lambdas = {k: v for k, v in train.items() if "lambda" in k}
    if lambdas:
        plots.append(_series_plot("Mean lambda per step", lambdas, LAMBDA_AXIS))
    others = {k: v for k, v in train.items() if "loss" not in k and "lambda" not in k}
    plots += [_series_plot(f"{key} per step", {key: value}, key) for key, value in others.items()]
    return plots


def _summary_table(summary: Mapping[str, Any]) -> str:
    """The training summary's entries (one level of nesting flattened as ``a.b``)."""
    flat: list[tuple[str, Any]] = []
    for key, value in summary.items():
        if isinstance(value, Mapping):
            flat += [(f"{key}.{k}", v) for k, v in value.items()]
        else:
            flat.append((key, value))
    rows = "".join(f"<tr>{_td(esc(k))}{_td(esc(format_cell(v)))}</tr>" for k, v in flat)
    return f"<table><tr><th>summary</th><th>value</th></tr>{rows}</table>" if rows else ""


def _training_summary(training: Mapping[str, Any], directory: Path | None) -> Mapping[str, Any]:
    """The summary the results carry, else ``<dir>/summary.json``, else empty."""
    summary = training.get("summary")
    if summary is None and directory is not None and (directory / "summary.json").is_file():
        summary = json.loads((directory / "summary.json").read_text(encoding="utf-8"))
    return summary if isinstance(summary, Mapping) else {}


def training_section(training: Mapping[str, Any]) -> str:
    """Curves drawn from ``<dir>/metrics.jsonl``, and the run's summary as a table."""
    directory = Path(str(training["dir"])) if training.get("dir") else None
    summary = _training_summary(training, directory)
    records = read_training_log(directory) if directory is not None else []
    plots = training_plots(records, summary) if records else []
    missing = "" if records else f'<p class="note">No metrics.jsonl in {esc(directory)}.</p>'
    figures = f'<div class="pair">{"".join(plots)}</div>' if plots else ""
    return f"<p>Run: <code>{esc(directory)}</code></p>{missing}{figures}{_summary_table(summary)}"


def header_html(results: Mapping[str, Any]) -> str:
    """Title and the facts that identify the run."""
    facts = [
        ("benchmark", results.get("benchmark")),
        ("split", results.get("split")),
        ("encoder", results.get("encoder")),
        ("combiner", results.get("combiner") or "none"),
        ("methods", ", ".join(method_label(m) for m in results.get("methods") or [])),
        ("data", results.get("data")),
        ("queries", results.get("query_count")),
        ("created", results.get("created")),
        ("seconds", results.get("seconds")),
    ]
    rows = "".join(f"<tr><th>{k}</th>{_td(esc(v))}</tr>" for k, v in facts if v not in (None, ""))
    title = f"CIR evaluation: {esc(results.get('benchmark', ''))} / {esc(results.get('split', ''))}"
    return f"<h1>{title}</h1><table>{rows}</table>"


def metrics_section(results: Mapping[str, Any]) -> str:
    """A table and a bar chart per scored benchmark."""
    methods = results.get("methods") or []
    parts = []
    for benchmark, metrics in (results.get("metrics") or {}).items():
        if ordered_methods(metrics):
            table = recall_table_html(metrics, methods, deltas=(results.get("deltas") or {}).get(benchmark))
            chart = recall_bar_chart(str(benchmark), metrics, methods)
            parts.append(f'<h3>{esc(benchmark)}</h3><div class="pair"><div>{table}</div>{chart}</div>')
    return "".join(parts)


def by_kind_section(by_kind: Mapping[str, Any], methods: Sequence[str]) -> str:
    """The metric table repeated per query kind (one table per kind, per benchmark)."""
    parts = []
    for benchmark, kinds in by_kind.items():
        tables = "".join(
            recall_table_html(m, methods, f"kind: {kind}") for kind, m in kinds.items() if ordered_methods(m)
        )
        parts.append(f'<h3>{esc(benchmark)}</h3><div class="pair">{tables}</div>')
    return "".join(parts)


def submissions_html(files: Sequence[str]) -> str:
    """Links to the files written beside the report (relative, so the folder stays movable)."""
    items = "".join(f'<li><a href="{esc(name)}">{esc(name)}</a></li>' for name in files)
    return f"<ul>{items}</ul>"


def _sections(results: Mapping[str, Any], thumb_size: int) -> list[tuple[str, str, str]]:
    """(anchor, title, body) of every section the results have data for, in reading order."""
    methods = results.get("methods") or []
    lam, training = results.get("lambda"), results.get("training")
    thumbs = Thumbnails(thumb_size)
    candidates = [
        ("metrics", "Metrics", results.get("metrics"), lambda: metrics_section(results)),
        ("kinds", "Metrics per query kind", results.get("by_kind"), lambda: by_kind_section(results["by_kind"], methods)),
        ("lambda", "Combiner mixing weight", lam, lambda: lambda_histogram(lam)),
        ("training", "Training", training, lambda: training_section(training)),
        ("tables", "More tables", results.get("tables"), lambda: "".join(map(generic_table_html, results["tables"]))),
        ("worst", "Where the Combiner loses most to sum", results.get("worst_queries"),
         lambda: WORST_NOTE + "".join(query_html(q, thumbs) for q in results["worst_queries"])),
        ("queries", "Sample queries", results.get("queries"), lambda: "".join(query_html(q, thumbs) for q in results["queries"])),
        ("files", "Submission files", results.get("submissions"), lambda: submissions_html(results["submissions"])),
    ]  # fmt: skip
    return [(anchor, title, render()) for anchor, title, data, render in candidates if data]


def render_report(results: Mapping[str, Any], thumb_size: int = 112) -> str:
    """The whole report as one HTML string."""
    sections = _sections(results, thumb_size)
    nav = "<nav>" + "".join(f'<a href="#{a}">{t}</a>' for a, t, _ in sections) + "</nav>"
    body = "".join(f'<section id="{a}"><h2>{t}</h2>{content}</section>' for a, t, content in sections)
    title = esc(f"CIR evaluation: {results.get('benchmark', '')}")
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{STYLE}</style></head><body>{header_html(results)}{nav}{body}</body></html>\n"
    )


def write_report(results: Mapping[str, Any], out_dir: str | Path, thumb_size: int = 112) -> Path:
    """Write ``out_dir/report.html`` atomically (never a half-written report) and return its path."""
    return atomic_write_bytes(Path(out_dir) / REPORT_FILE, render_report(results, thumb_size).encode("utf-8"))
