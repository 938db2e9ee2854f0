"""Evaluation: benchmark building, gallery caching, scoring, search and reports.

``evaluate(EvalConfig(...), out)`` scores a benchmark in its official layout (gallery
through the embedding cache) with the three baselines and a Combiner; ``write_report``
renders its ``results.json``; ``build_clipart_benchmark`` makes the offline clip-art set;
``Retriever`` and ``search`` answer one composed query over any embedding cache. No Prefect.
"""

from scot_data.evaluate.clipart import ClipartBenchConfig, ClipartBenchSummary, build_clipart_benchmark
from scot_data.evaluate.evaluate import EvalConfig, evaluate
from scot_data.evaluate.report import write_report
from scot_data.evaluate.retriever import Retriever, SearchResult
from scot_data.evaluate.search import SearchOutput, search

__all__ = [
    "ClipartBenchConfig",
    "ClipartBenchSummary",
    "EvalConfig",
    "Retriever",
    "SearchOutput",
    "SearchResult",
    "build_clipart_benchmark",
    "evaluate",
    "search",
    "write_report",
]
