"""The mix stage. Mixed training sets: a seeded, weighted sample of several finished triplet directories
(e.g. 30% filtered LLM triplets + 70% template triplets), written as one finished
triplets-stage directory that ``scot embed`` and ``scot train`` read unchanged.

Each source's rows are ranked by ``ids.sample_rank(seed, triplet_id)`` and the first
``count`` taken, so the sample does not depend on row order and a larger total keeps every
triplet a smaller one took. Triplet ids stay the sources' ids; a triplet found in several
sources belongs to the first one that lists it, so the mix never holds one twice. Rows
are written in an order drawn independently of the ranks (ordering by rank would put the
source sampled most sparsely first), so any prefix (``scot train --max-triplets``) is a mix too.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from scot_data import ids
from scot_data.atomic import atomic_write_json, atomic_write_parquet
from scot_data.errors import ScotInputError
from scot_data.manifest import (
    MANIFEST_NAME,
    InputRef,
    finished_input,
    finished_summary,
    is_complete,
    stage_fingerprint,
    write_manifest,
)
from scot_data.outdir import writes_folder
from scot_data.triplets.records import (
    PARQUET_OPTIONS,
    REJECTS_FILE,
    REJECTS_SCHEMA,
    STAGE,
    STATS_FILE,
    TRIPLETS_FILE,
    TRIPLETS_SCHEMA,
    to_table,
)


@dataclass
class MixSummary:
    """What one mix took from each source; printed by the CLI and stored as ``stats.json``."""

    out_dir: str
    triplets: int = 0
    rejects: int = 0
    seed: int = 0
    sources: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    skipped: bool = False


def parse_source(text: str) -> tuple[Path, float]:
    """``DIR:WEIGHT`` (the last colon splits, so a directory may hold colons)."""
    directory, _, weight = text.rpartition(":")
    try:
        value = float(weight)
    except ValueError:
        value = math.nan
    if not directory or not value > 0 or math.isinf(value):
        raise ScotInputError(f"--source {text!r}: expected DIR:WEIGHT with a positive weight")
    return Path(directory), value


def apportion(total: int, weights: Sequence[float]) -> list[int]:
    """Integer counts summing to ``total`` in proportion to ``weights`` (largest remainder)."""
    exact = [total * w / sum(weights) for w in weights]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: counts[i] - exact[i])
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


@writes_folder(STAGE)
def mix_triplets(
    sources: Sequence[tuple[str | Path, float]],
    out_dir: str | Path,
    total: int | None = None,
    seed: int = 0,
    force: bool = False,
) -> MixSummary:
    """Write a weighted sample of ``sources`` to ``out_dir`` as a finished triplets stage.

    ``total`` defaults to the largest mix every source can fill at its weight (no triplet
    is taken twice); a finished mix with the same sources, weights, total and seed is skipped.
    """
    started = time.perf_counter()
    out = Path(out_dir)
    paths, weights = [Path(p) for p, _ in sources], [float(w) for _, w in sources]
    _check_sources(paths, weights, total, out)
    inputs = [finished_input(p, STAGE, "--source") for p in paths]
    config = {"weights": weights, "total": total, "seed": seed}
    if is_complete(out, STAGE, stage_fingerprint(STAGE, config, inputs)):
        return finished_summary(out, MixSummary)
    (out / MANIFEST_NAME).unlink(missing_ok=True)
    pools = _ranked_pools(paths, seed)
    counts = apportion(total if total is not None else _largest_total(pools, weights), weights)
    summary = MixSummary(out_dir=str(out), seed=seed)
    summary.sources = [_taken(p, w, pool, n) for p, w, pool, n in zip(paths, weights, pools, counts)]
    mixed = pa.concat_tables(pool.slice(0, n) for pool, n in zip(pools, counts))
    _write(out, mixed.take(_order(mixed, lambda i: ids.stable_id("mix-order", str(seed), i))), summary)
    summary.seconds = round(time.perf_counter() - started, 2)
    _finish(out, config, inputs, summary)
    return summary


def _check_sources(paths: list[Path], weights: list[float], total: int | None, out: Path) -> None:
    if not paths:
        raise ScotInputError("a mix needs at least one --source")
    if total is not None and total < 1:
        raise ScotInputError(f"--total {total}: must be at least 1")
    if any(not w > 0 or math.isinf(w) for w in weights):
        raise ScotInputError(f"source weights must be positive and finite, got {weights}")
    if out.resolve() in {p.resolve() for p in paths}:
        raise ScotInputError(f"--out {out} is one of the sources; write the mix elsewhere")


def _ranked_pools(paths: list[Path], seed: int) -> list[pa.Table]:
    """Each source's rows in seeded rank order, without ids an earlier source holds."""
    seen: set[str] = set()
    pools = []
    for path in paths:
        table = pq.read_table(path / TRIPLETS_FILE).select(TRIPLETS_SCHEMA.names).cast(TRIPLETS_SCHEMA)
        fresh = pa.array([i not in seen for i in table.column("triplet_id").to_pylist()])
        table = table.filter(fresh)
        seen.update(table.column("triplet_id").to_pylist())
        pools.append(table.take(_order(table, lambda i: ids.sample_rank(seed, i))))
    return pools


def _order(table: pa.Table, key: Callable[[str], str]) -> pa.Array:
    """Row indices sorted by ``key(triplet_id)``."""
    return pc.sort_indices(pa.array([key(i) for i in table.column("triplet_id").to_pylist()], pa.string()))


def _largest_total(pools: list[pa.Table], weights: list[float]) -> int:
    """The largest total whose apportioned counts every pool can fill (a count exceeds its
    exact share only by a remainder, which never lifts it past a pool it divides evenly)."""
    return math.floor(min(pool.num_rows * sum(weights) / w for pool, w in zip(pools, weights)))


def _taken(path: Path, weight: float, pool: pa.Table, count: int) -> dict[str, Any]:
    if count > pool.num_rows:
        raise ScotInputError(
            f"--source {path}: the mix needs {count} triplets, it has {pool.num_rows} (new ones)"
        )
    return {"path": str(path), "weight": weight, "available": pool.num_rows, "taken": count}


def _write(out: Path, mixed: pa.Table, summary: MixSummary) -> None:
    """The mix, and an empty rejects table: a mix rejects nothing, it samples."""
    atomic_write_parquet(out / TRIPLETS_FILE, mixed, **PARQUET_OPTIONS)
    atomic_write_parquet(out / REJECTS_FILE, to_table([], REJECTS_SCHEMA), **PARQUET_OPTIONS)
    summary.triplets = mixed.num_rows


def _finish(out: Path, config: dict[str, Any], inputs: list[InputRef], summary: MixSummary) -> None:
    """Stats, then the manifest (last)."""
    atomic_write_json(out / STATS_FILE, asdict(summary))
    files = {TRIPLETS_FILE: summary.triplets, REJECTS_FILE: 0, STATS_FILE: None}
    write_manifest(out, STAGE, config, inputs, files, extra={"stats": asdict(summary)})
