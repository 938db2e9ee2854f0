"""``scot evaluate``: a benchmark, its gallery through the embedding cache, every query method.

Every benchmark is scored the same way: queries from (reference V, text T_m) by each
method — image only, text only, sum ``normalise(V + T_m)`` and, when given, the Combiner
— cosine scores against the gallery, then the registry entry's per-query metric function
under its protocol (``registry.py``). Per-query values give the table, the per-kind table
and, for every method, its difference from sum with a paired bootstrap interval
(``stats.py``). ``queries.parquet`` holds each query's target rank under every method;
hidden test splits get submission files in the official formats instead of metrics.
``results.json`` holds everything the HTML report shows.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import torch
from pydantic import BaseModel, ConfigDict, Field

from scot_data import ids, stages
from scot_data.atomic import atomic_write_json, atomic_write_parquet
from scot_data.combiner.checkpoint import load_combiner
from scot_data.combiner.model import Combiner, compose_queries
from scot_data.embed.config import EmbedConfig
from scot_data.encoders.factory import EncoderSpec
from scot_data.errors import ScotInputError
from scot_data.evaluate.benchmark import Benchmark, Source
from scot_data.evaluate.gallery import BenchmarkEmbeddings, embed_benchmark
from scot_data.evaluate.metrics import percent, ranking
from scot_data.evaluate.registry import BenchmarkEntry, benchmark_names, get_benchmark
from scot_data.evaluate.stats import paired_difference
from scot_data.manifest import read_manifest
from scot_data.outdir import writes_folder

RESULTS_FILE = "results.json"
QUERIES_FILE = "queries.parquet"
BASELINES = ("image_only", "text_only", "sum")
REFERENCE_METHOD = "sum"  # every other method is reported as a difference from it
# The target's own caption as the query, where the benchmark records it: a text-only
# reference point (how well the encoder finds the answer from its description), not a
# bound — a Combiner that also uses the reference image can beat it.
TARGET_CAPTION = "target_caption"
BenchmarkName = Literal[benchmark_names()]  # type: ignore[valid-type]


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
    categories: tuple[str, ...] = Field((), description="FashionIQ categories (default: all three)")
    image_root: Path | None = Field(None, description="CIRR: where the split file's relative paths start")
    sample_queries: int = Field(24, ge=0, description="queries shown with their top-k in the report")
    worst_queries: int = Field(12, ge=0, description="queries where the Combiner loses most to sum, shown")
    top_k: int = Field(10, ge=1)
    seed: int = 0
    device: str = "auto"
    image_batch_size: int = Field(64, ge=1)
    num_workers: int = Field(2, ge=0)

    @property
    def entry(self) -> BenchmarkEntry:
        return get_benchmark(self.benchmark)

    def source(self) -> Source:
        return Source(self.data, self.split, self.categories, self.image_root)


@dataclass
class Scored:
    """One benchmark part's queries scored by every method, per query where it has targets."""

    bench: Benchmark
    entry: BenchmarkEntry
    scores: dict[str, np.ndarray]  # method -> (Q, G)
    lambdas: np.ndarray | None  # (Q,) the Combiner's mixing weight
    values: dict[str, dict[str, np.ndarray]]  # method -> metric -> (Q,) per-query values; {} without targets
    ranks: dict[str, np.ndarray]  # method -> (Q,) 1-based rank of the first target; {} without targets

    def metrics(self, rows: list[int] | None = None) -> dict[str, dict[str, float]]:
        """Method -> metric -> percent, over all queries or the given rows."""
        pick = slice(None) if rows is None else rows
        return {m: {k: percent(v[pick]) for k, v in by.items()} for m, by in self.values.items()}


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
        scores[TARGET_CAPTION] = (torch.from_numpy(embedded.target_texts) @ gallery.T).numpy()
    return scores, lambdas


def score_part(entry: BenchmarkEntry, bench: Benchmark, scores: dict[str, np.ndarray],
               lambdas: np.ndarray | None) -> Scored:  # fmt: skip
    """Per-query metric values and target ranks of every method (none for a split without targets)."""
    if not bench.has_targets():
        return Scored(bench, entry, scores, lambdas, {}, {})
    scored = {m: entry.score(bench, s) for m, s in scores.items()}
    return Scored(bench, entry, scores, lambdas, {m: values for m, (values, _) in scored.items()},
                  {m: ranks + 1 for m, (_, ranks) in scored.items()})  # fmt: skip


def differences(scored: Scored, seed: int = 0) -> dict[str, dict[str, dict[str, Any]]]:
    """Every method minus sum, per metric: mean and 95% paired bootstrap interval over queries."""
    base = scored.values.get(REFERENCE_METHOD)
    if base is None:
        return {}
    return {
        method: {k: paired_difference(v, base[k], seed=seed).as_dict() for k, v in by.items()}
        for method, by in scored.values.items()
        if method != REFERENCE_METHOD
    }


def metrics_by_kind(scored: Scored) -> dict[str, dict[str, dict[str, float]]]:
    """The metric table per labelled edit kind (the clip-art set labels replace, add, ...)."""
    kinds: dict[str, list[int]] = {}
    for row, query in enumerate(scored.bench.queries):
        if query.kind:
            kinds.setdefault(query.kind, []).append(row)
    return {kind: scored.metrics(rows) for kind, rows in sorted(kinds.items())}


def write_submissions(scored: Scored, out: Path) -> list[str]:
    """Hidden test splits: the benchmark's server files, per method."""
    if scored.entry.submission is None:
        return []
    written = []
    for method, scores in scored.scores.items():
        ranked = scored.entry.protocol_scores(scored.bench, scores)
        for name, content in scored.entry.submission(scored.bench, ranked, method).items():
            atomic_write_json(out / name, content)
            written.append(name)
    return written


def query_card(scored: Scored, row: int, methods: list[str], top_k: int) -> dict[str, Any]:
    """One query with each shown method's top k (a picture row of the report)."""
    bench, query = scored.bench, scored.bench.queries[row]
    names, shown = bench.names, {}
    for method in methods:
        ranked = scored.entry.protocol_row(bench, row, scored.scores[method][row])
        best = ranking(ranked[None, :], top_k)[0]
        shown[method] = [{"name": names[c], "path": str(bench.gallery[names[c]]), "score": round(float(ranked[c]), 4),
                          "is_target": names[c] in query.targets} for c in best]  # fmt: skip
    return {
        "benchmark": bench.name, "query_id": query.query_id, "kind": query.kind,
        "reference": query.reference, "reference_path": str(bench.gallery[query.reference]),
        "text": query.text, "targets": list(query.targets),
        "lambda": None if scored.lambdas is None else round(float(scored.lambdas[row]), 4), "top_k": shown,
    }  # fmt: skip


def sample_queries(scored: Scored, cfg: EvalConfig) -> list[dict[str, Any]]:
    """A seeded sample of queries with the Combiner's and sum's top-k (or the first two methods)."""
    bench = scored.bench
    order = sorted(range(len(bench.queries)), key=lambda i: ids.sample_rank(cfg.seed, bench.queries[i].query_id))
    shown = [m for m in ("combiner", "sum", "image_only") if m in scored.scores][:2]
    return [query_card(scored, row, shown, cfg.top_k) for row in sorted(order[: cfg.sample_queries])]


def worst_queries(scored: Scored, count: int, top_k: int) -> list[dict[str, Any]]:
    """The queries where the Combiner ranks the target furthest below sum, worst first."""
    ranks = scored.ranks
    if "combiner" not in ranks or REFERENCE_METHOD not in ranks:
        return []
    loss = ranks["combiner"] - ranks[REFERENCE_METHOD]
    rows = [int(r) for r in np.argsort(-loss, kind="stable")[:count] if loss[r] > 0]
    cards = [query_card(scored, row, ["combiner", REFERENCE_METHOD], top_k) for row in rows]
    for card, row in zip(cards, rows):
        card["ranks"] = {"combiner": int(ranks["combiner"][row]), REFERENCE_METHOD: int(ranks[REFERENCE_METHOD][row])}
    return cards


def query_rows(scored: Scored) -> list[dict[str, Any]]:
    """``queries.parquet`` rows: each query, its targets, every method's target rank, lambda."""
    rows = []
    for i, query in enumerate(scored.bench.queries):
        rows.append({
            "benchmark": scored.bench.name, "split": scored.bench.split, "query_id": query.query_id,
            "kind": query.kind, "reference": query.reference, "text": query.text, "targets": list(query.targets),
            **{f"rank_{m}": int(r[i]) for m, r in scored.ranks.items()},
            "lambda": None if scored.lambdas is None else float(scored.lambdas[i]),
        })  # fmt: skip
    return rows


def write_query_table(rows: list[dict[str, Any]], out: Path) -> None:
    """One row per query of every part; rank columns are absent for splits without targets."""
    methods = sorted({key for row in rows for key in row if key.startswith("rank_")})
    fields = [("benchmark", pa.string()), ("split", pa.string()), ("query_id", pa.string()),
              ("kind", pa.string()), ("reference", pa.string()), ("text", pa.string()),
              ("targets", pa.list_(pa.string()))] + [(m, pa.int32()) for m in methods] + [("lambda", pa.float32())]  # fmt: skip
    atomic_write_parquet(out / QUERIES_FILE, pa.Table.from_pylist(rows, schema=pa.schema(fields)))


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


def average_parts(metrics: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The mean over parts (FashionIQ's categories) of each method's metrics, as papers report it."""
    parts = list(metrics.values())
    return {m: {k: float(np.mean([p[m][k] for p in parts])) for k in parts[0][m]} for m in parts[0]}


@writes_folder(stages.EVALUATE, signature=RESULTS_FILE)
def evaluate(cfg: EvalConfig, out_dir: str | Path, cache_root: str | Path | None = None,
             show_progress: bool = True, force: bool = False) -> dict[str, Any]:  # fmt: skip
    """Embed (or reuse) the benchmark, score every method, write results.json, queries.parquet
    (and submissions for hidden test splits)."""
    started = time.perf_counter()
    out, entry = Path(out_dir), cfg.entry
    combiner = load_combiner(cfg.combiner) if cfg.combiner else None  # first: a bad path is named as such
    encoder = resolve_encoder(cfg)
    embed_cfg = EmbedConfig(encoder=EncoderSpec.parse(encoder), device=cfg.device, image_batch_size=cfg.image_batch_size,
                            num_workers=cfg.num_workers, seed=cfg.seed)  # fmt: skip
    metrics: dict[str, Any] = {}
    deltas: dict[str, Any] = {}
    by_kind: dict[str, Any] = {}
    samples, worst, submissions, lambdas, rows = [], [], [], [], []
    for bench in entry.read(cfg.source()):
        embedded = embed_benchmark(bench, embed_cfg, Path(cache_root or out / "cache"), show_progress)
        check_same_encoder(cfg, embedded.summary.encoder_key)
        scored = score_part(entry, bench, *score_methods(embedded, combiner))
        if scored.lambdas is not None:
            lambdas.append(scored.lambdas)
        if scored.values:
            metrics[bench.name], deltas[bench.name] = scored.metrics(), differences(scored, cfg.seed)
            if kinds := metrics_by_kind(scored):
                by_kind[bench.name] = kinds
        else:
            submissions += write_submissions(scored, out)
        rows += query_rows(scored)
        samples += sample_queries(scored, cfg)
        worst += worst_queries(scored, cfg.worst_queries, cfg.top_k)
    if entry.average_parts and len(metrics) > 1:
        metrics[f"{cfg.benchmark}-average"] = average_parts(metrics)
    write_query_table(rows, out)
    results = {
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "benchmark": cfg.benchmark, "split": cfg.split, "data": str(cfg.data), "encoder": encoder,
        "combiner": str(cfg.combiner) if cfg.combiner else None,
        "methods": list(BASELINES) + (["combiner"] if combiner is not None else []),
        "queries": samples, "worst_queries": worst, "query_count": len(rows), "metrics": metrics,
        "deltas": deltas, "by_kind": by_kind, "lambda": lambda_histogram(lambdas),
        "training": training_block(cfg.combiner), "submissions": submissions,
        "seconds": round(time.perf_counter() - started, 2),
    }  # fmt: skip
    atomic_write_json(out / RESULTS_FILE, results)
    return results
