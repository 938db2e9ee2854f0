"""``scot ablate``: the paper's ablations as one command, chosen on val, reported on test.

An ablation file names a benchmark and a list of variants; each variant is a training set
(an embedding cache and its triplets) plus overrides of the training config. Every
variant is trained once per seed (each run resumable and skipped when already finished)
and scored on both splits of the benchmark through the gallery cache of its encoder. The
baselines (image only, text only, sum, the target caption as query) are scored for each
encoder on the same queries.

Per split and metric a row gets its mean over seeds, the seed spread and a 95% bootstrap
interval that resamples queries and seeds, and its difference from the same encoder's sum
with a *paired* interval (``stats.py``). The variant with the best ``select_metric`` on
the selection split (val) is the one the project ships; the report split (test) is the one
quoted — it never informs a choice.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from rich.progress import Progress

from scot_data import stages
from scot_data.atomic import atomic_write_json
from scot_data.combiner.checkpoint import load_combiner
from scot_data.config_files import load_yaml_model
from scot_data.embed.config import EmbedConfig
from scot_data.encoders.factory import EncoderSpec
from scot_data.evaluate.benchmark import Benchmark
from scot_data.evaluate.evaluate import REFERENCE_METHOD, EvalConfig, score_methods
from scot_data.evaluate.gallery import BenchmarkEmbeddings, embed_benchmark, encoder_cache
from scot_data.evaluate.registry import get_benchmark
from scot_data.evaluate.stats import interval_text, paired_difference
from scot_data.manifest import finished_manifest
from scot_data.mix.stage import mix_triplets
from scot_data.outdir import writes_folder
from scot_data.train.stage import COMBINER_FILE, TrainConfig, train_combiner

RESULTS_FILE = "ablation.json"
MARKDOWN_FILE = "ablation.md"
METRICS = ("R@1", "R@10", "R@50", "R_subset@1")
KIND_METRICS = ("R@1", "R@10")
BASELINE_LABEL = "{method} ({encoder})"


class MixSource(BaseModel):
    """One finished triplet directory of a mixed training set, and its share."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    triplets: Path
    weight: float = Field(gt=0)


class Variant(BaseModel):
    """One row of an ablation: a training set and what differs in training.

    The training set is a triplet directory, or ``mix``: a seeded weighted sample of
    several (LLM + template), written under the variant's folder; ``embeddings`` must hold
    every source's texts.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str
    embeddings: Path
    triplets: Path | None = None
    mix: list[MixSource] = Field(default_factory=list, description="instead of triplets: a weighted mix")
    mix_total: int | None = Field(None, ge=1, description="triplets in the mix (default: all weights allow)")
    train: dict[str, Any] = Field(default_factory=dict, description="TrainConfig overrides")

    @model_validator(mode="after")
    def _one_training_set(self) -> Variant:
        if (self.triplets is None) == (not self.mix):
            raise ValueError(f"{self.label!r}: give either triplets or mix")
        return self

    def training_triplets(self, out: Path) -> Path:
        """The triplet directory to train on (the mix is written once, then reused)."""
        if self.triplets is not None:
            return self.triplets
        sources = [(m.triplets, m.weight) for m in self.mix]
        return Path(mix_triplets(sources, out / self.slug / "triplets", total=self.mix_total).out_dir)

    @property
    def slug(self) -> str:
        """The label as a folder name."""
        return re.sub(r"[^a-z0-9]+", "-", self.label.lower()).strip("-")


class AblationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    benchmark: Path = Field(description="a clip-art (CIRR-layout) benchmark folder with both splits")
    select_split: str = Field("val", description="the split every choice is made on")
    report_split: str = Field("test", description="the split the tables quote; it decides nothing")
    select_metric: str = Field("R@1", description="the metric that picks the shipped variant on select_split")
    select_not_below_sum: bool = Field(
        False, description="pick only among variants no metric puts below sum on select_split (interval under 0)"
    )
    cache: Path | None = Field(None, description="gallery cache root (per encoder); default: OUT/cache")
    seeds: tuple[int, ...] = (0, 1, 2)
    bootstrap: int = Field(2000, ge=100)
    train: TrainConfig = TrainConfig()
    variants: list[Variant]

    @model_validator(mode="after")
    def _two_splits(self) -> AblationConfig:
        if self.select_split == self.report_split:
            raise ValueError("select_split and report_split must differ (a choice made on the reported split "
                             "is an in-sample figure)")
        if self.select_metric not in METRICS:
            raise ValueError(f"select_metric must be one of {', '.join(METRICS)}")
        return self

    @property
    def splits(self) -> tuple[str, str]:
        return self.select_split, self.report_split


def load_ablation(path: str | Path) -> AblationConfig:
    return load_yaml_model(path, AblationConfig, "ablation file")


Hits = dict[str, np.ndarray]  # metric -> (queries,) per-query values


def query_hits(bench: Benchmark, scores: np.ndarray) -> Hits:
    """Per query, 0/1 for each reported metric under the benchmark's protocol."""
    values = get_benchmark("clipart").query_values(bench, scores)
    return {m: values[m] for m in METRICS}


def summarise(label: str, per_seed: list[Hits], base: Hits | None, draws: int,
              kinds: list[str | None]) -> dict[str, Any]:  # fmt: skip
    """One row of one split: per metric the mean over seeds with its interval (queries and
    seeds resampled) and, given the baseline's hits, the paired difference from it; R@1 and
    R@10 per edit kind with the R@1 interval over that kind's queries."""
    row: dict[str, Any] = {"label": label, "seeds": len(per_seed), "by_kind": {}, "delta": {}}
    for metric in METRICS:
        stacked = np.stack([hits[metric] for hits in per_seed])
        row[metric] = paired_difference(stacked, draws=draws).as_dict()
        if base is not None:
            row["delta"][metric] = paired_difference(stacked, base[metric], draws=draws).as_dict()
    labels = np.array([k or "" for k in kinds])
    for kind in sorted(set(kinds) - {None}):
        stacked = {m: np.stack([h[m][labels == kind] for h in per_seed]) for m in KIND_METRICS}
        row["by_kind"][kind] = {m: round(100 * float(v.mean()), 1) for m, v in stacked.items()}
        row["by_kind"][kind]["R@1_ci95"] = paired_difference(stacked["R@1"], draws=draws).as_dict()["ci95"]
    return row


def _encoder_of(embeddings: Path) -> str:
    return str(finished_manifest(embeddings, stages.EMBED)["encoder"]["spec"])


Embedded = dict[str, tuple[Benchmark, BenchmarkEmbeddings]]  # split -> benchmark and its vectors


def _benchmark(cfg: AblationConfig, encoder: str, cache: Path, progress: bool) -> Embedded:
    """Both splits and their vectors under ``encoder`` (one gallery cache per encoder)."""
    embedded = {}
    for split in cfg.splits:
        eval_cfg = EvalConfig(benchmark="clipart", data=cfg.benchmark, split=split, encoder=encoder)
        bench = eval_cfg.entry.read(eval_cfg.source())[0]
        embedded[split] = bench, embed_benchmark(bench, EmbedConfig(encoder=EncoderSpec.parse(encoder)), encoder_cache(cache, encoder),
                                                 progress)  # fmt: skip
    return embedded


def _baseline_hits(embedded: Embedded) -> dict[str, Hits]:
    """"split:method" -> hits of every baseline; they depend on the encoder alone, so once per encoder."""
    return {f"{split}:{method}": query_hits(bench, scores)
            for split, (bench, vectors) in embedded.items()
            for method, scores in score_methods(vectors, None)[0].items()}  # fmt: skip


def _train_and_score(cfg: AblationConfig, variant: Variant, embedded: Embedded, out: Path,
                     bar: Progress, task: Any) -> dict[str, list[Hits]]:  # fmt: skip
    """Every seed of one variant: per split the Combiner's hits per seed."""
    triplets = variant.training_triplets(out)
    per_seed: dict[str, list[Hits]] = {split: [] for split in embedded}
    for seed in cfg.seeds:
        train_cfg = TrainConfig.model_validate({**cfg.train.model_dump(), **variant.train, "seed": seed})
        run_dir = out / variant.slug / f"seed-{seed}"
        train_combiner(train_cfg, variant.embeddings, triplets, run_dir, show_progress=False)
        combiner = load_combiner(run_dir / COMBINER_FILE)
        for split, (bench, vectors) in embedded.items():
            per_seed[split].append(query_hits(bench, score_methods(vectors, combiner)[0]["combiner"]))
        bar.advance(task)
    return per_seed


@writes_folder("ablation", signature=RESULTS_FILE)
def run_ablation(
    cfg: AblationConfig, out_dir: str | Path, show_progress: bool = True, force: bool = False
) -> dict[str, Any]:
    """Train every variant for every seed, score both splits, pick on val, write ``ablation.json``."""
    out = Path(out_dir)
    cache = cfg.cache or out / "cache"
    rows: dict[str, list[dict[str, Any]]] = {split: [] for split in cfg.splits}
    embedded: dict[str, Embedded] = {}
    baselines: dict[str, dict[str, Hits]] = {}
    with Progress(disable=not show_progress) as bar:
        task = bar.add_task("ablation runs", total=len(cfg.variants) * len(cfg.seeds))
        for variant in cfg.variants:
            encoder = _encoder_of(variant.embeddings)
            if encoder not in embedded:
                embedded[encoder] = _benchmark(cfg, encoder, cache, False)
                baselines[encoder] = _baseline_hits(embedded[encoder])
            per_seed = _train_and_score(cfg, variant, embedded[encoder], out, bar, task)
            for split, hits in per_seed.items():
                kinds = [q.kind for q in embedded[encoder][split][0].queries]
                base = baselines[encoder][f"{split}:{REFERENCE_METHOD}"]
                rows[split].append({**summarise(variant.label, hits, base, cfg.bootstrap, kinds), "encoder": encoder})
    for encoder, found in baselines.items():
        for key, hits in found.items():
            split, method = key.split(":", 1)
            kinds = [q.kind for q in embedded[encoder][split][0].queries]
            base = found[f"{split}:{REFERENCE_METHOD}"] if method != REFERENCE_METHOD else None
            label = BASELINE_LABEL.format(method=method.replace("_", " "), encoder=encoder)
            rows[split].append({**summarise(label, [hits], base, cfg.bootstrap, kinds), "encoder": encoder,
                                "baseline": method})  # fmt: skip
    chosen = select_variant(rows[cfg.select_split], cfg.select_metric, cfg.select_not_below_sum)
    results = {
        "name": cfg.name, "benchmark": str(cfg.benchmark), "seeds": list(cfg.seeds),
        "select_split": cfg.select_split, "report_split": cfg.report_split, "select_metric": cfg.select_metric,
        "select_not_below_sum": cfg.select_not_below_sum, "selected": chosen,
        "queries": {split: len(next(iter(embedded.values()))[split][0].queries) for split in cfg.splits},
        "rows": rows,
    }  # fmt: skip
    atomic_write_json(out / RESULTS_FILE, results)
    return results


def select_variant(rows: list[dict[str, Any]], metric: str, not_below_sum: bool = False) -> str | None:
    """The label of the variant (not a baseline) with the best mean ``metric`` (first on ties).

    ``not_below_sum`` first sets aside every variant that some metric puts significantly
    below sum (its paired interval wholly under 0): a gain at ``metric`` bought with a loss
    elsewhere is not what a user of the shipped settings expects. When every variant is
    set aside, the choice falls back to all of them."""
    variants = [r for r in rows if "baseline" not in r]
    if not_below_sum:
        variants = [r for r in variants if all(d["high"] >= 0 for d in r["delta"].values())] or variants
    if not variants:
        return None
    return max(variants, key=lambda r: r[metric]["mean"])["label"]


def _label(row: dict[str, Any], results: dict[str, Any]) -> str:
    return row["label"] + (" (selected on val)" if row["label"] == results["selected"] else "")


def ablation_table(results: dict[str, Any], split: str | None = None) -> dict[str, Any]:
    """Mean [95% interval] per metric on one split (default: the report split)."""
    split = split or results["report_split"]
    rows = [[_label(r, results)] + [interval_text(r[m]) for m in METRICS] for r in results["rows"][split]]
    note = (f"{split} split, {results['queries'][split]} queries; Combiner rows: mean over seeds "
            f"{results['seeds']}, 95% bootstrap interval resampling queries and seeds; the selected variant "
            f"has the best {results['select_metric']} on {results['select_split']}"
            + (" of those no metric puts below sum" if results.get("select_not_below_sum") else ""))  # fmt: skip
    return {"title": f"Ablation: {results['name']} ({split})", "columns": ["variant", *METRICS],
            "rows": rows, "note": note}  # fmt: skip


def delta_table(results: dict[str, Any], split: str | None = None) -> dict[str, Any]:
    """Each row minus the same encoder's sum, with a paired 95% interval, on one split."""
    split = split or results["report_split"]
    rows = [[_label(r, results)] + [interval_text(r["delta"][m], signed=True) for m in METRICS]
            for r in results["rows"][split] if r["delta"]]  # fmt: skip
    note = (f"{split} split; difference from sum on the same queries, paired bootstrap over queries (and seeds); "
            "* the interval excludes 0")  # fmt: skip
    return {"title": f"Δ vs sum ({split})", "columns": ["variant", *(f"Δ {m}" for m in METRICS)],
            "rows": rows, "note": note}  # fmt: skip


def kind_table(results: dict[str, Any], split: str | None = None) -> dict[str, Any] | None:
    """R@1 / R@10 per edit kind for every row, or None when the benchmark labels no kinds."""
    split = split or results["report_split"]
    kinds = sorted({kind for r in results["rows"][split] for kind in r.get("by_kind", {})})
    if not kinds:
        return None

    def cell(row: dict[str, Any], kind: str) -> str:
        found = row["by_kind"].get(kind)
        if not found:
            return "-"
        low, high = found["R@1_ci95"]
        return f"{found['R@1']} [{low}, {high}] / {found['R@10']}"

    rows = [[_label(r, results)] + [cell(r, kind) for kind in kinds] for r in results["rows"][split]]
    return {
        "title": f"By edit kind ({split}): R@1 [95% interval] / R@10",
        "columns": ["variant", *kinds],
        "rows": rows,
        "note": "mean over seeds, per edit kind (each kind's own queries; bootstrap over them and the seeds)",
    }


def ablation_tables(results: dict[str, Any]) -> list[dict[str, Any]]:
    """What ``ablation.md`` and the report show: the report split's tables, then the
    selection split's Δ table (how the choice was made)."""
    report, select = results["report_split"], results["select_split"]
    tables = [ablation_table(results, report), delta_table(results, report), kind_table(results, report),
              delta_table(results, select)]  # fmt: skip
    return [t for t in tables if t is not None]


def markdown(tables: list[dict[str, Any]]) -> str:
    """The tables as Markdown (``ablation.md``, for a README or a note)."""
    parts = []
    for table in tables:
        lines = [f"**{table['title']}**", "", "| " + " | ".join(table["columns"]) + " |",
                 "|" + "---|" * len(table["columns"])]  # fmt: skip
        for row in table["rows"]:
            lines.append("| " + " | ".join(str(cell).replace("|", "/") for cell in row) + " |")
        parts.append("\n".join(lines + ["", f"({table['note']})" if table.get("note") else ""]).rstrip())
    return "\n\n".join(parts) + "\n"
