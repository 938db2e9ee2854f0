"""``scot ablate``: the paper's ablations as one command, over seeds, with bootstrap intervals.

An ablation file names a benchmark and a list of variants; each variant is a training set
(an embedding cache and its triplets) plus overrides of the training config. Every
variant is trained once per seed (each run resumable and skipped when already finished),
scored on the benchmark through the gallery cache of its encoder, and summarised per
metric as the mean over seeds with a 95% bootstrap interval over queries (queries are
resampled; each query's hit is first averaged over the seeds). The baselines (image only,
text only, sum) get the same treatment for each encoder, so every row is comparable.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from rich.progress import Progress

from scot_data import ids
from scot_data.atomic import atomic_write_json
from scot_data.combiner.benchmarks import Benchmark
from scot_data.combiner.checkpoint import load_combiner
from scot_data.combiner.metrics import exclude_columns, subset_target_ranks, target_ranks
from scot_data.combiner.train import COMBINER_FILE, TrainConfig, train_combiner
from scot_data.embed.config import EmbedConfig
from scot_data.errors import ScotInputError
from scot_data.evaluate.evaluate import EvalConfig, load_benchmarks, score_methods
from scot_data.evaluate.gallery import BenchmarkEmbeddings, embed_benchmark
from scot_data.manifest import read_manifest
from scot_data.triplets.mix import mix_triplets

RESULTS_FILE = "ablation.json"
MARKDOWN_FILE = "ablation.md"
RECALL_KS = (1, 10, 50)
KIND_METRICS = ("R@1", "R@10")


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
    benchmark: Path = Field(description="a clip-art (CIRR-layout) benchmark folder")
    split: str = "val"
    seeds: tuple[int, ...] = (0, 1, 2)
    bootstrap: int = Field(1000, ge=100)
    train: TrainConfig = TrainConfig()
    variants: list[Variant]


def load_ablation(path: str | Path) -> AblationConfig:
    file = Path(path)
    if not file.is_file():
        raise ScotInputError(f"ablation file not found: {file}")
    try:
        return AblationConfig.model_validate(yaml.safe_load(file.read_text(encoding="utf-8")))
    except ValidationError as exc:
        problem = exc.errors()[0]
        raise ScotInputError(f"{file}: {'.'.join(map(str, problem['loc']))}: {problem['msg']}") from exc


def query_hits(bench: Benchmark, scores: np.ndarray) -> dict[str, np.ndarray]:
    """Per query, 0/1: target in the top K (reference excluded) and top 1 of its subset."""
    references = bench.columns([q.reference for q in bench.queries])
    targets = bench.columns([q.targets[0] for q in bench.queries])
    ranks = target_ranks(exclude_columns(scores, references), targets)
    hits = {f"R@{k}": (ranks < k).astype(float) for k in RECALL_KS}
    subsets = [bench.columns(list(q.members)) for q in bench.queries]
    hits["R_subset@1"] = (subset_target_ranks(scores, targets, subsets, references) < 1).astype(float)
    return hits


def bootstrap_interval(hits: np.ndarray, draws: int, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean of ``hits`` (per-query values), in percent."""
    rng = np.random.default_rng(seed)
    means = hits[rng.integers(0, len(hits), size=(draws, len(hits)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return round(100 * float(low), 1), round(100 * float(high), 1)


def summarise(
    label: str, per_seed: list[dict[str, np.ndarray]], draws: int, kinds: list[str | None]
) -> dict[str, Any]:
    """Mean over seeds, seed spread and the bootstrap interval, per metric; R@1 and R@10
    per edit kind (where the benchmark labels kinds: which edits a variant gets right),
    with the R@1 interval over that kind's queries."""
    row: dict[str, Any] = {"label": label, "seeds": len(per_seed), "by_kind": {}}
    labels = np.array([k or "" for k in kinds])
    for kind in sorted(set(kinds) - {None}):
        per_query = {m: np.stack([h[m][labels == kind] for h in per_seed]).mean(axis=0) for m in KIND_METRICS}
        row["by_kind"][kind] = {m: round(100 * float(hits.mean()), 1) for m, hits in per_query.items()}
        row["by_kind"][kind]["R@1_ci95"] = bootstrap_interval(per_query["R@1"], draws)
    for metric in per_seed[0]:
        stacked = np.stack([hits[metric] for hits in per_seed])
        row[metric] = {
            "mean": round(100 * float(stacked.mean()), 1),
            "seed_std": round(100 * float(stacked.mean(axis=1).std()), 1),
            "ci95": bootstrap_interval(stacked.mean(axis=0), draws),
        }
    return row


def _encoder_of(embeddings: Path) -> str:
    manifest = read_manifest(embeddings)
    if manifest is None or manifest.get("stage") != "embeddings":
        raise ScotInputError(f"{embeddings}: not a finished embedding-cache directory")
    return str(manifest["encoder"]["spec"])


def _benchmark(
    cfg: AblationConfig, encoder: str, cache: Path, progress: bool
) -> tuple[Benchmark, BenchmarkEmbeddings]:
    """The benchmark and its vectors under ``encoder`` (one gallery cache per encoder)."""
    eval_cfg = EvalConfig(benchmark="clipart", data=cfg.benchmark, split=cfg.split, encoder=encoder)
    bench = load_benchmarks(eval_cfg)[0]
    cache_root = cache / ids.stable_id("encoder", encoder)
    return bench, embed_benchmark(bench, EmbedConfig(encoder=encoder), cache_root, progress)


def run_ablation(cfg: AblationConfig, out_dir: str | Path, show_progress: bool = True) -> dict[str, Any]:
    """Train every variant for every seed, score, and write ``ablation.json``."""
    out = Path(out_dir)
    rows, baselines = [], {}
    scored: dict[str, tuple[Benchmark, BenchmarkEmbeddings]] = {}
    with Progress(disable=not show_progress) as bar:
        task = bar.add_task("ablation runs", total=len(cfg.variants) * len(cfg.seeds))
        for variant in cfg.variants:
            encoder = _encoder_of(variant.embeddings)
            if encoder not in scored:
                scored[encoder] = _benchmark(cfg, encoder, out / "cache", False)
            bench, embedded = scored[encoder]
            triplets = variant.training_triplets(out)
            per_seed = []
            for seed in cfg.seeds:
                train_cfg = TrainConfig.model_validate(
                    {**cfg.train.model_dump(), **variant.train, "seed": seed}
                )
                run_dir = out / variant.slug / f"seed-{seed}"
                train_combiner(train_cfg, variant.embeddings, triplets, run_dir, show_progress=False)
                scores, _ = score_methods(embedded, load_combiner(run_dir / COMBINER_FILE))
                per_seed.append(query_hits(bench, scores["combiner"]))
                if encoder not in baselines:
                    baselines[encoder] = {
                        m: query_hits(bench, s) for m, s in scores.items() if m != "combiner"
                    }
                bar.advance(task)
            kinds = [q.kind for q in bench.queries]
            rows.append({**summarise(variant.label, per_seed, cfg.bootstrap, kinds), "encoder": encoder})
    for encoder, by_method in baselines.items():
        kinds = [q.kind for q in scored[encoder][0].queries]
        for method, hits in by_method.items():
            row = summarise(f"{method} ({encoder})", [hits], cfg.bootstrap, kinds)
            rows.append({**row, "encoder": encoder})
    results = {"name": cfg.name, "benchmark": str(cfg.benchmark), "seeds": list(cfg.seeds),
               "queries": len(next(iter(scored.values()))[0].queries), "rows": rows}  # fmt: skip
    atomic_write_json(out / RESULTS_FILE, results)
    return results


def ablation_table(results: dict[str, Any]) -> dict[str, Any]:
    """The report's generic table: mean [95% interval] per metric."""
    metrics = [f"R@{k}" for k in RECALL_KS] + ["R_subset@1"]
    rows = [[r["label"]] + [f"{r[m]['mean']} [{r[m]['ci95'][0]}-{r[m]['ci95'][1]}]" for m in metrics]
            for r in results["rows"]]  # fmt: skip
    note = (f"{results['queries']} queries; Combiner rows: mean over seeds {results['seeds']}, "
            "95% bootstrap interval over queries")  # fmt: skip
    return {
        "title": f"Ablation: {results['name']}",
        "columns": ["variant", *metrics],
        "rows": rows,
        "note": note,
    }


def kind_table(results: dict[str, Any]) -> dict[str, Any] | None:
    """R@1 / R@10 per edit kind for every row, or None when the benchmark labels no kinds."""
    kinds = sorted({kind for r in results["rows"] for kind in r.get("by_kind", {})})
    if not kinds:
        return None

    def cell(row: dict[str, Any], kind: str) -> str:
        found = row["by_kind"].get(kind)
        if not found:
            return "-"
        low, high = found["R@1_ci95"]
        return f"{found['R@1']} [{low}-{high}] / {found['R@10']}"

    rows = [[r["label"]] + [cell(r, kind) for kind in kinds] for r in results["rows"]]
    return {
        "title": "By edit kind: R@1 [95% interval] / R@10",
        "columns": ["variant", *kinds],
        "rows": rows,
        "note": "mean over seeds, per edit kind (each kind's own queries; bootstrap over them)",
    }


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
