"""Paired bootstrap intervals: is method A really better than method B on these queries?

Two methods scored on the same queries are compared query by query: every bootstrap draw
resamples the queries once and uses the same draw for both methods (paired), so what
varies is only which queries are in the set, not an independent sample per method. Where a
method was trained with several seeds, each draw also resamples its seeds (with
replacement), so the interval covers training noise as well as query noise; the seed
spread is reported on its own too.

Inputs are per-query values in [0, 1] (0/1 hits, or AP), shaped (seeds, queries); figures
come back in percent points.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

DRAWS = 2000
LEVEL = 95.0


@dataclass(frozen=True)
class Interval:
    """A mean (or a mean difference) in points, its seed spread and its bootstrap interval."""

    mean: float
    seed_sd: float  # sd over seeds of the per-seed figure (0 with one seed)
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval says the sign is real (both ends on one side of 0)."""
        return self.low > 0 or self.high < 0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ci95": [self.low, self.high], "excludes_zero": self.excludes_zero}


def _as_seeds(values: np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    return array[None, :] if array.ndim == 1 else array


def _seed_means(values: np.ndarray, rng: np.random.Generator, draws: int) -> np.ndarray:
    """(draws, queries): per draw, the per-query mean over seeds resampled with replacement."""
    seeds = len(values)
    if seeds == 1:
        return np.broadcast_to(values[0], (draws, values.shape[1]))
    picks = rng.integers(0, seeds, size=(draws, seeds))
    return values[picks].mean(axis=1)


def paired_difference(
    a: np.ndarray, b: np.ndarray | None = None, draws: int = DRAWS, seed: int = 0
) -> Interval:
    """Mean of A minus B over queries (B omitted: A alone), with a paired bootstrap interval.

    ``a`` is (seeds_a, queries) or (queries,); ``b`` likewise, on the same queries in the
    same order. Each draw resamples queries once for both and each method's own seeds.
    """
    a = _as_seeds(a)
    b = np.zeros((1, a.shape[1])) if b is None else _as_seeds(b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"paired methods need the same queries ({a.shape[1]} vs {b.shape[1]})")
    rng = np.random.default_rng(seed)
    queries = a.shape[1]
    counts = rng.multinomial(queries, np.full(queries, 1.0 / queries), size=draws)
    per_draw = ((_seed_means(a, rng, draws) - _seed_means(b, rng, draws)) * counts).sum(axis=1) / queries
    tail = (100.0 - LEVEL) / 2
    low, high = np.percentile(per_draw, [tail, 100.0 - tail])
    per_seed = a.mean(axis=1) - b.mean()
    spread = float(per_seed.std(ddof=1)) if len(per_seed) > 1 else 0.0
    return Interval(*(round(100.0 * float(v), 1) for v in (a.mean() - b.mean(), spread, low, high)))


def interval_text(value: Mapping[str, Any], signed: bool = False) -> str:
    """``12.3 [10.1, 14.2]`` from an :meth:`Interval.as_dict`, or ``+2.0 [0.4, 3.5]*`` for a
    difference (``*``: its interval excludes 0)."""
    sign = "+" if signed else ""
    low, high = value["ci95"]
    mark = "*" if signed and value["excludes_zero"] else ""
    return f"{value['mean'] + 0.0:{sign}.1f} [{low + 0.0:{sign}.1f}, {high + 0.0:{sign}.1f}]{mark}"
