"""Composed-retrieval metrics over a score matrix, as the benchmarks define them.

Every function takes ``scores`` (queries x gallery, higher is better) and gallery column
indices, so it can be checked against hand-computed values without any model. Ties are
broken in the gallery's order (a stable sort), the same on every machine.

- Recall@K (FashionIQ, CIRR): the share of queries whose target is in the top K.
- CIRR excludes the reference image from the gallery of its own query
  (:func:`exclude_columns`), and R_subset@K ranks the target only among the query's
  ``img_set.members`` minus the reference (:func:`subset_recall_at_k`).
- CIRCO mAP@K: ``sum_{i<=K} P@i * rel_i / min(K, |ground truth|)``, averaged over queries.
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


def target_ranks(scores: np.ndarray, targets: Sequence[int]) -> np.ndarray:
    """0-based rank of each query's target column."""
    order = ranking(scores)
    return np.argmax(order == np.asarray(targets)[:, None], axis=1)


def recall_at_k(
    scores: np.ndarray, targets: Sequence[int], ks: Sequence[int] = (1, 5, 10, 50)
) -> dict[int, float]:
    """Recall@K in percent for each K (one target per query)."""
    ranks = target_ranks(scores, targets)
    return {k: float(100.0 * (ranks < k).mean()) for k in ks}


def subset_target_ranks(
    scores: np.ndarray,
    targets: Sequence[int],
    subsets: Sequence[Sequence[int]],
    references: Sequence[int],
) -> np.ndarray:
    """0-based rank of each target among its query's members, the reference removed (CIRR)."""
    ranks = []
    for row, target, members, reference in zip(scores, targets, subsets, references):
        candidates = [m for m in dict.fromkeys(members) if m != reference]
        order = ranking(row[candidates][None, :])[0]
        ranks.append(int(np.flatnonzero(np.asarray(candidates)[order] == target)[0]))
    return np.asarray(ranks)


def subset_recall_at_k(
    scores: np.ndarray,
    targets: Sequence[int],
    subsets: Sequence[Sequence[int]],
    references: Sequence[int],
    ks: Sequence[int] = (1, 2, 3),
) -> dict[int, float]:
    """CIRR R_subset@K: the target ranked only among its query's members, reference removed."""
    ranks = subset_target_ranks(scores, targets, subsets, references)
    return {k: float(100.0 * (ranks < k).mean()) for k in ks}


def average_precision_at_k(ranked: Sequence[int], relevant: set[int], k: int) -> float:
    """CIRCO's AP@K of one query: precision at each relevant hit in the top K, over min(K, |relevant|)."""
    hits = np.isin(np.asarray(ranked[:k]), list(relevant))
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / min(k, len(relevant)))


def map_at_k(
    scores: np.ndarray, relevant: Sequence[set[int]], ks: Sequence[int] = (5, 10, 25, 50)
) -> dict[int, float]:
    """CIRCO mAP@K in percent for each K."""
    order = ranking(scores, max(ks))
    per_k = {k: [average_precision_at_k(o, r, k) for o, r in zip(order, relevant)] for k in ks}
    return {k: float(100.0 * np.mean(values)) for k, values in per_k.items()}


def top_k_names(scores: np.ndarray, names: Sequence[str], k: int) -> list[list[str]]:
    """The names of each query's top ``k`` gallery items."""
    return [[names[c] for c in row] for row in ranking(scores, k)]
