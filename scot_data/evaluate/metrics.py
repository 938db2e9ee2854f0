"""Composed-retrieval metrics over a score matrix, one value per query.

Every function takes ``scores`` (queries x gallery, higher is better) and gallery column
indices, so it can be checked against hand-computed values without any model. Ties are
broken in the gallery's order (a stable sort), the same on every machine: of two images
with equal scores, the one listed first in the gallery ranks first.

Metrics are kept per query (a 0/1 hit, or one query's average precision) and averaged
only at the end, so the same vectors give the table, the per-kind table and the paired
bootstrap of two methods (``stats.py``) without scoring twice.

- Recall@K: the share of queries whose target is in the top K. A K at or above the
  gallery size counts every query as a hit (the target is somewhere in the ranking).
- A protocol that excludes the reference (CIRR) masks it out first (:func:`exclude_columns`).
- R_subset@K ranks the target only among the query's ``img_set.members`` minus the
  reference (:func:`subset_target_ranks`).
- CIRCO AP@K: ``sum_{i<=K} P@i * rel_i / min(K, |ground truth|)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def exclude_columns(scores: np.ndarray, columns: Sequence[int]) -> np.ndarray:
    """A copy of ``scores`` where query i can never retrieve gallery column ``columns[i]``."""
    masked = np.array(scores, dtype=np.float64, copy=True)
    masked[np.arange(len(masked)), np.asarray(columns)] = -np.inf
    return masked


def ranking(scores: np.ndarray, k: int | None = None) -> np.ndarray:
    """Gallery columns of each query, best first (stable: ties keep gallery order)."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), axis=1, kind="stable")
    return order if k is None else order[:, :k]


def first_target_ranks(scores: np.ndarray, targets: Sequence[Sequence[int]]) -> np.ndarray:
    """0-based rank of the best-placed target column of each query (each needs one or more)."""
    positions = np.empty(scores.shape, dtype=np.int64)
    order = ranking(scores)
    positions[np.arange(len(order))[:, None], order] = np.arange(scores.shape[1])[None, :]
    return np.array([positions[row, list(columns)].min() for row, columns in enumerate(targets)], dtype=np.int64)


def hits_at_k(ranks: np.ndarray, ks: Sequence[int]) -> dict[int, np.ndarray]:
    """Per query, 1.0 where the 0-based ``ranks`` fall inside the top K, for each K."""
    return {k: (np.asarray(ranks) < k).astype(np.float64) for k in ks}


def subset_target_ranks(
    scores: np.ndarray,
    targets: Sequence[int],
    subsets: Sequence[Sequence[int]],
    references: Sequence[int],
) -> np.ndarray:
    """0-based rank of each target among its query's members, the reference removed (CIRR).

    The caller checks that every target is one of its members (and names the query if not).
    """
    ranks = []
    for row, target, members, reference in zip(scores, targets, subsets, references):
        candidates = [m for m in dict.fromkeys(members) if m != reference]
        order = ranking(row[candidates][None, :])[0]
        ranks.append(int(np.flatnonzero(np.asarray(candidates)[order] == target)[0]))
    return np.asarray(ranks, dtype=np.int64)


def average_precision_at_k(ranked: Sequence[int], relevant: set[int], k: int) -> float:
    """CIRCO's AP@K of one query: precision at each relevant hit in the top K, over min(K, |relevant|)."""
    if not relevant:
        raise ValueError("average precision needs at least one relevant item")
    hits = np.isin(np.asarray(ranked[:k]), list(relevant))
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / min(k, len(relevant)))


def average_precisions(
    scores: np.ndarray, relevant: Sequence[set[int]], ks: Sequence[int] = (5, 10, 25, 50)
) -> dict[int, np.ndarray]:
    """Per query AP@K for each K (CIRCO's mAP@K is their mean)."""
    order = ranking(scores, max(ks))
    return {k: np.array([average_precision_at_k(o, r, k) for o, r in zip(order, relevant)]) for k in ks}


def top_k_names(scores: np.ndarray, names: Sequence[str], k: int) -> list[list[str]]:
    """The names of each query's top ``k`` gallery items."""
    return [[names[c] for c in row] for row in ranking(scores, k)]


def percent(values: np.ndarray) -> float:
    """The mean of per-query values, in percent (how every table reports a metric)."""
    return float(100.0 * np.mean(values))
