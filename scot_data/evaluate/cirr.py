"""CIRR rc2 as it ships: R@K over the split's gallery without the reference, and R_subset@K.

Layout (paths relative to the data root): ``captions/cap.rc2.<split>.json`` (``pairid``,
``reference``, ``target_hard``, ``caption``, ``img_set.members``),
``image_splits/split.rc2.<split>.json`` (name -> relative path). The test split has no
targets: it is scored by the official server from :func:`submission`'s two files. The
clip-art benchmark is saved in this layout (plus ``edit_kind`` and ``target_caption``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from scot_data.errors import ScotInputError
from scot_data.evaluate.benchmark import Benchmark, Query, Source, read_json
from scot_data.evaluate.metrics import hits_at_k, ranking, subset_target_ranks, top_k_names

KS = (1, 5, 10, 50)
SUBSET_KS = (1, 2, 3)


def read_split(root: str | Path, split: str = "val", image_root: str | Path | None = None,
               name: str = "cirr") -> Benchmark:  # fmt: skip
    """One rc2 split; image paths of the split file are resolved against ``image_root`` (default: root)."""
    root = Path(root)
    base = Path(image_root) if image_root is not None else root
    sources = (root / "captions" / f"cap.rc2.{split}.json", root / "image_splits" / f"split.rc2.{split}.json")
    records, paths = (read_json(path) for path in sources)
    queries = [
        Query(str(r["pairid"]), r["reference"], r["caption"],
              (r["target_hard"],) if r.get("target_hard") else (), tuple(r["img_set"]["members"]),
              r.get("edit_kind"), r.get("target_caption"))
        for r in records
    ]  # fmt: skip
    return Benchmark(name, split, queries, {n: base / rel for n, rel in paths.items()}, sources)


def read(source: Source) -> list[Benchmark]:
    return [read_split(source.data, source.split, source.image_root)]


def _subset_members(bench: Benchmark) -> tuple[list[int], list[list[int]]]:
    """Each query's single target column and its img_set columns (every query has a target:
    the registry checked); a target outside its set is an error naming the query (R_subset@K
    would be undefined)."""
    targets, subsets = [], []
    for query in bench.queries:
        if query.targets[0] not in query.members:
            raise ScotInputError(f"{bench.name} {bench.split}: query {query.query_id}: target "
                                 f"{query.targets[0]!r} is not one of its img_set members")  # fmt: skip
        targets.append(bench.columns([query.targets[0]], query)[0])
        subsets.append(bench.columns(list(query.members), query))
    return targets, subsets


def per_query(bench: Benchmark, scores: np.ndarray, ranks: np.ndarray) -> dict[str, np.ndarray]:
    """Hits at R@1/5/10/50 from the target ranks (the reference already masked) and R_subset@1/2/3."""
    targets, subsets = _subset_members(bench)
    subset_ranks = subset_target_ranks(scores, targets, subsets, bench.reference_columns())
    recall = {f"R@{k}": hits for k, hits in hits_at_k(ranks, KS).items()}
    return recall | {f"R_subset@{k}": hits for k, hits in hits_at_k(subset_ranks, SUBSET_KS).items()}


def submission(bench: Benchmark, scores: np.ndarray, method: str) -> dict[str, Any]:
    """The two files the CIRR server takes: top-50 over the gallery, top-3 within each subset.

    ``scores`` has the reference masked, as the protocol does; keys are pairids as strings.
    """
    names = bench.names
    recall: dict[str, Any] = {"version": "rc2", "metric": "recall"}
    subset: dict[str, Any] = {"version": "rc2", "metric": "recall_subset"}
    top50 = top_k_names(scores, names, min(50, len(names) - 1))
    for query, row, best in zip(bench.queries, scores, top50):
        recall[query.query_id] = best
        members = [m for m in dict.fromkeys(query.members) if m != query.reference]
        order = ranking(row[bench.columns(members, query)][None, :])[0][:3]
        subset[query.query_id] = [members[c] for c in order]
    prefix = f"cirr_{bench.split}_{method}"
    return {f"{prefix}_recall.json": recall, f"{prefix}_subset.json": subset}
