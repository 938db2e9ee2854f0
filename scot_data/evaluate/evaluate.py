"""``scot eval``: a benchmark, its gallery through the embedding cache, four query methods.

Every benchmark is scored the same way: queries from (reference V, text T_m) by each
method — image only, text only, sum ``normalise(V + T_m)`` and, when given, the Combiner
— cosine scores against the gallery, then the benchmark's own metric function (FashionIQ
R@10/50 per category and averaged, CIRR/clip-art R@K with the reference excluded and
R_subset@K, CIRCO mAP@K). Test splits have no targets: they get submission files in the
official formats instead. ``results.json`` holds everything the HTML report shows.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from scot_data import ids
from scot_data.atomic import atomic_write_json
from scot_data.combiner.benchmarks import (
    FASHIONIQ_CATEGORIES,
    Benchmark,
    cirr_submission,
    fashioniq_average,
    read_circo,
    read_cirr,
    read_fashioniq,
    score_circo,
    score_cirr,
    score_fashioniq,
)
from scot_data.combiner.checkpoint import load_combiner
from scot_data.combiner.metrics import exclude_columns, top_k_names
from scot_data.combiner.model import Combiner, compose_queries
from scot_data.embed.config import EmbedConfig
from scot_data.errors import ScotInputError
from scot_data.evaluate.gallery import BenchmarkEmbeddings, embed_benchmark
from scot_data.manifest import read_manifest

RESULTS_FILE = "results.json"
BASELINES = ("image_only", "text_only", "sum")
# The target's own caption as the query (where the benchmark records it): not a method a
# user can run, but the encoder's ceiling — no Combiner output in text space can beat it.
CEILING = "target_caption"
BenchmarkName = Literal["fashioniq", "cirr", "circo", "clipart"]


class EvalConfig(BaseModel):
    """One evaluation: which benchmark and split, which encoder, which Combiner."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    benchmark: BenchmarkName
    data: Path = Field(description="the benchmark's root folder, in its official layout")
    split: str = "val"
    encoder: str | None = Field(
        None, description="encoder spec; default: the one the Combiner was trained on"
    )
    combiner: Path | None = Field(None, description="combiner.safetensors or a training output folder")
    categories: tuple[str, ...] = FASHIONIQ_CATEGORIES
    image_root: Path | None = Field(None, description="CIRR: where the split file's relative paths start")
    sample_queries: int = Field(24, ge=0, description="queries shown with their top-k in the report")
    top_k: int = Field(10, ge=1)
    seed: int = 0
    device: str = "auto"
    image_batch_size: int = Field(64, ge=1)
    num_workers: int = Field(2, ge=0)


@dataclass
class Scored:
    """One benchmark's queries scored by every method."""

    bench: Benchmark
    scores: dict[str, np.ndarray]  # method -> (Q, G)
    lambdas: np.ndarray | None  # (Q,) the Combiner's mixing weight


def load_benchmarks(cfg: EvalConfig) -> list[Benchmark]:
    """The benchmark's readers; the clip-art set is read as the CIRR layout it is saved in."""
    if cfg.benchmark == "fashioniq":
        return [read_fashioniq(cfg.data, category, cfg.split) for category in cfg.categories]
    if cfg.benchmark == "circo":
        return [read_circo(cfg.data, cfg.split)]
    bench = read_cirr(cfg.data, cfg.split, cfg.image_root)
    bench.name = cfg.benchmark
    return [bench]


def combiner_encoder(combiner: Path) -> dict[str, Any] | None:
    """The encoder block recorded by the training run that wrote ``combiner``."""
    folder = combiner if combiner.is_dir() else combiner.parent
    return (read_manifest(folder) or {}).get("encoder")


def resolve_encoder(cfg: EvalConfig) -> str:
    """The encoder spec to embed with: given, or the Combiner's own (they must agree)."""
    trained = combiner_encoder(cfg.combiner) if cfg.combiner else None
    if cfg.encoder:
        return cfg.encoder
    if trained is None:
        raise ScotInputError("--encoder is needed (no Combiner manifest names the encoder it was trained on)")
    return str(trained["spec"])


def check_same_encoder(cfg: EvalConfig, key: str) -> None:
    """A Combiner only works on the embedding space it was trained in."""
    trained = combiner_encoder(cfg.combiner) if cfg.combiner else None
    if trained is not None and trained.get("key") != key:
        raise ScotInputError(
            f"{cfg.combiner}: trained on encoder {trained.get('spec')!r} (key {trained.get('key')}), "
            f"but the benchmark was embedded with key {key}; pass --encoder {trained.get('spec')}"
        )


def score_methods(
    embedded: BenchmarkEmbeddings, combiner: Combiner | None
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """(Q, G) cosine scores of each method, and the Combiner's lambda per query."""
    image, text = torch.from_numpy(embedded.references), torch.from_numpy(embedded.texts)
    gallery = torch.from_numpy(embedded.gallery)
    scores = {m: (compose_queries(m, image, text) @ gallery.T).numpy() for m in BASELINES}
    lambdas = None
    if combiner is not None:  # one forward gives both the queries and their lambdas
        with torch.no_grad():
            output = combiner.eval()(image, text)
        scores["combiner"], lambdas = (output.query @ gallery.T).numpy(), output.lam.numpy()
    if embedded.target_texts is not None:
        scores[CEILING] = (torch.from_numpy(embedded.target_texts) @ gallery.T).numpy()
    return scores, lambdas


def has_targets(bench: Benchmark) -> bool:
    return bool(bench.queries) and all(q.targets for q in bench.queries)


def bench_metrics(bench: Benchmark, scores: np.ndarray) -> dict[str, float]:
    if bench.name.startswith("fashioniq"):
        return score_fashioniq(scores, bench)
    if bench.name == "circo":
        return score_circo(scores, bench)
    return score_cirr(scores, bench)


def _subset(bench: Benchmark, rows: list[int]) -> Benchmark:
    return Benchmark(bench.name, bench.split, [bench.queries[i] for i in rows], bench.gallery, bench.sources)


def metrics_by_kind(scored: Scored) -> dict[str, dict[str, dict[str, float]]]:
    """The metric table per labelled edit kind (the clip-art set labels replace, add, ...)."""
    kinds: dict[str, list[int]] = {}
    for row, query in enumerate(scored.bench.queries):
        if query.kind:
            kinds.setdefault(query.kind, []).append(row)
    return {
        kind: {m: bench_metrics(_subset(scored.bench, rows), s[rows]) for m, s in scored.scores.items()}
        for kind, rows in sorted(kinds.items())
    }


def write_submissions(scored: Scored, out: Path) -> list[str]:
    """Test splits: CIRR's two server files and CIRCO's top-50 ranking, per method."""
    written = []
    for method, scores in scored.scores.items():
        if scored.bench.name == "circo":
            references = scored.bench.columns([q.reference for q in scored.bench.queries])
            top50 = top_k_names(
                exclude_columns(scores, references), scored.bench.names, min(50, len(scored.bench.names) - 1)
            )
            files = {f"circo_{scored.bench.split}_{method}.json":
                     {q.query_id: top for q, top in zip(scored.bench.queries, top50)}}  # fmt: skip
        elif scored.bench.name == "cirr":
            recall, subset = cirr_submission(scores, scored.bench)
            files = {f"cirr_{scored.bench.split}_{method}_recall.json": recall,
                     f"cirr_{scored.bench.split}_{method}_subset.json": subset}  # fmt: skip
        else:
            continue
        for name, content in files.items():
            atomic_write_json(out / name, content)
            written.append(name)
    return written


def sample_queries(scored: Scored, cfg: EvalConfig) -> list[dict[str, Any]]:
    """A seeded sample of queries with each shown method's top-k (the report's picture rows)."""
    bench = scored.bench
    order = sorted(
        range(len(bench.queries)), key=lambda i: ids.sample_rank(cfg.seed, bench.queries[i].query_id)
    )
    shown = [m for m in ("combiner", "sum", "image_only") if m in scored.scores][:2]
    references = bench.columns([q.reference for q in bench.queries])
    names = bench.names
    samples = []
    for row in sorted(order[: cfg.sample_queries]):
        query = bench.queries[row]
        top_k = {}
        for method in shown:
            masked = exclude_columns(scored.scores[method][row : row + 1], references[row : row + 1])[0]
            best = np.argsort(-masked, kind="stable")[: cfg.top_k]
            top_k[method] = [{"name": names[c], "path": str(bench.gallery[names[c]]), "score": round(float(masked[c]), 4),
                              "is_target": names[c] in query.targets} for c in best]  # fmt: skip
        samples.append({
            "benchmark": bench.name, "query_id": query.query_id, "kind": query.kind,
            "reference": query.reference, "reference_path": str(bench.gallery[query.reference]),
            "text": query.text, "targets": list(query.targets),
            "lambda": None if scored.lambdas is None else round(float(scored.lambdas[row]), 4), "top_k": top_k,
        })  # fmt: skip
    return samples


def lambda_histogram(lambdas: list[np.ndarray]) -> dict[str, Any] | None:
    if not lambdas:
        return None
    values = np.concatenate(lambdas)
    counts, edges = np.histogram(values, bins=20, range=(0.0, 1.0))
    return {"mean": float(values.mean()), "edges": edges.round(3).tolist(), "counts": counts.tolist()}


def training_block(combiner: Path | None) -> dict[str, Any] | None:
    """The training run's folder and summary, for the report's curves."""
    if combiner is None:
        return None
    folder = combiner if combiner.is_dir() else combiner.parent
    summary = folder / "summary.json"
    if not summary.exists():
        return None
    return {"dir": str(folder.resolve()), "summary": json.loads(summary.read_text(encoding="utf-8"))}


def evaluate(cfg: EvalConfig, out_dir: str | Path, cache_root: str | Path | None = None,
             show_progress: bool = True) -> dict[str, Any]:  # fmt: skip
    """Embed (or reuse) the benchmark, score every method, write results.json (+ submissions)."""
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    encoder = resolve_encoder(cfg)
    embed_cfg = EmbedConfig(encoder=encoder, device=cfg.device, image_batch_size=cfg.image_batch_size,
                            num_workers=cfg.num_workers, seed=cfg.seed)  # fmt: skip
    combiner = load_combiner(cfg.combiner) if cfg.combiner else None
    metrics: dict[str, Any] = {}
    by_kind: dict[str, Any] = {}
    samples, submissions, lambdas = [], [], []
    queries = 0
    for bench in load_benchmarks(cfg):
        embedded = embed_benchmark(bench, embed_cfg, Path(cache_root or out / "cache"), show_progress)
        check_same_encoder(cfg, embedded.summary.encoder_key)
        scores, lam = score_methods(embedded, combiner)
        scored = Scored(bench, scores, lam)
        queries += len(bench.queries)
        if lam is not None:
            lambdas.append(lam)
        if has_targets(bench):
            metrics[bench.name] = {m: bench_metrics(bench, s) for m, s in scores.items()}
            if kinds := metrics_by_kind(scored):
                by_kind[bench.name] = kinds
        else:
            submissions += write_submissions(scored, out)
        samples += sample_queries(scored, cfg)
    if cfg.benchmark == "fashioniq" and len(metrics) > 1:
        methods = next(iter(metrics.values())).keys()
        metrics["fashioniq-average"] = {
            m: fashioniq_average({c: v[m] for c, v in metrics.items()}) for m in methods
        }
    results = {
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "benchmark": cfg.benchmark, "split": cfg.split, "data": str(cfg.data), "encoder": encoder,
        "combiner": str(cfg.combiner) if cfg.combiner else None,
        "methods": list(BASELINES) + (["combiner"] if combiner is not None else []),
        "queries": samples, "query_count": queries, "metrics": metrics, "by_kind": by_kind,
        "lambda": lambda_histogram(lambdas), "training": training_block(cfg.combiner),
        "submissions": submissions, "seconds": round(time.perf_counter() - started, 2),
    }  # fmt: skip
    atomic_write_json(out / RESULTS_FILE, results)
    return results
