"""Every benchmark scot can score, declared once.

An entry names the reader, the per-query metric function, the protocol (whether the
reference is removed from its own ranking, which gallery, which splits carry targets),
the submission writer for hidden test splits and, for benchmarks the project makes
itself, the builder. The spec's allowed names, ``scot evaluate --help``, ``scot run``'s
evaluate stage and README's protocol table all read this dictionary: adding a benchmark
is one module and one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scot_data.errors import ScotInputError
from scot_data.evaluate import circo, cirr, fashioniq
from scot_data.evaluate.benchmark import Benchmark, Source
from scot_data.evaluate.metrics import exclude_columns, first_target_ranks
from scot_data.evaluate.names import BENCHMARK_NAMES

Reader = Callable[[Source], list[Benchmark]]
# (benchmark, scores as the protocol ranks them, 0-based rank of each query's first target)
PerQuery = Callable[[Benchmark, np.ndarray, np.ndarray], dict[str, np.ndarray]]
Submission = Callable[[Benchmark, np.ndarray, str], dict[str, Any]]
# (finished caption folder, output folder, queries per edit kind, show progress) -> summary
Builder = Callable[[Path, Path, int, bool], Any]


@dataclass(frozen=True)
class BenchmarkEntry:
    """One benchmark: how to read it, score it, submit it and (optionally) build it."""

    name: str
    summary: str
    exclude_reference: bool  # the protocol removes each query's reference from its own ranking
    gallery: str  # which images are ranked
    splits: str  # which splits carry targets here, which are scored elsewhere
    read: Reader
    per_query: PerQuery
    submission: Submission | None = None
    build: Builder | None = None
    average_parts: bool = False  # report the mean over the parts (FashionIQ's categories)

    def protocol_scores(self, bench: Benchmark, scores: np.ndarray) -> np.ndarray:
        """``scores`` as the protocol ranks them: the reference masked out, or unchanged."""
        return exclude_columns(scores, bench.reference_columns()) if self.exclude_reference else scores

    def protocol_row(self, bench: Benchmark, row: int, scores: np.ndarray) -> np.ndarray:
        """One query's scores (``scores`` is its row) as the protocol ranks them."""
        if not self.exclude_reference:
            return np.asarray(scores, dtype=np.float64)
        return exclude_columns(scores[None, :], bench.columns([bench.queries[row].reference]))[0]

    def score(self, bench: Benchmark, scores: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Per-query metric values (0/1 hits, or AP) and the 0-based rank of each query's first
        target, both under the protocol, from one masking and one ranking of ``scores``."""
        ranked = self.protocol_scores(bench, scores)
        ranks = first_target_ranks(ranked, bench.target_columns())
        return self.per_query(bench, ranked, ranks), ranks

    def query_values(self, bench: Benchmark, scores: np.ndarray) -> dict[str, np.ndarray]:
        """Per-query metric values under the protocol (``score`` without the ranks)."""
        return self.score(bench, scores)[0]


def _build_clipart(captions: Path, out: Path, queries_per_kind: int, show_progress: bool) -> Any:
    """The clip-art builder, imported when used (it renders with PIL and reads the vocabulary)."""
    from scot_data.evaluate.clipart import ClipartBenchConfig, build_clipart_benchmark

    return build_clipart_benchmark(captions, out, ClipartBenchConfig(queries_per_kind=queries_per_kind),
                                   show_progress=show_progress)  # fmt: skip


def _read_clipart(source: Source) -> list[Benchmark]:
    return [cirr.read_split(source.data, source.split, source.image_root, name="clipart")]


BENCHMARKS: dict[str, BenchmarkEntry] = {
    entry.name: entry
    for entry in (
        BenchmarkEntry(
            "fashioniq", "FashionIQ dress/shirt/toptee, R@10/50 and their average", False,
            "the category's image split", "val scored here; test has no public targets", fashioniq.read,
            fashioniq.per_query, average_parts=True,
        ),
        BenchmarkEntry(
            "cirr", "CIRR rc2, R@1/5/10/50 and R_subset@1/2/3", True,
            "the split's images; R_subset: the query's img_set", "val scored here; test1 -> server files",
            cirr.read, cirr.per_query, submission=cirr.submission,
        ),
        BenchmarkEntry(
            "circo", "CIRCO, mAP@5/10/25/50 with several ground truths", False,
            "all of COCO unlabeled2017", "val scored here; test -> server file", circo.read,
            circo.per_query, submission=circo.submission,
        ),
        BenchmarkEntry(
            "clipart", "the project's clip-art set of unseen objects (CIRR layout, edit kinds)", True,
            "the split's images; R_subset: the query's img_set",
            "val (choose settings) and test (report), disjoint objects, both with targets",
            _read_clipart, cirr.per_query, build=_build_clipart,
        ),
    )
}  # fmt: skip
if tuple(BENCHMARKS) != BENCHMARK_NAMES:  # the CLI's help lists names.py's tuple
    raise RuntimeError(f"evaluate/names.py lists {BENCHMARK_NAMES}, the registry {tuple(BENCHMARKS)}")


def benchmark_names() -> tuple[str, ...]:
    return tuple(BENCHMARKS)


def get_benchmark(name: str) -> BenchmarkEntry:
    """The entry of ``name``; an unknown name is an error listing the known ones."""
    if name not in BENCHMARKS:
        raise ScotInputError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


def protocol_table() -> list[list[str]]:
    """README's protocol table, from the entries: name, reference excluded, gallery, splits."""
    return [[e.name, "yes" if e.exclude_reference else "no", e.gallery, e.splits] for e in BENCHMARKS.values()]
