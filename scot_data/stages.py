"""Stage names: what each finished folder's manifest says it is, and the folder each stage
writes under a run's ``out`` (``scot run``, the Prefect flows and watches)."""

from __future__ import annotations

CAPTIONS = "captions"
TRIPLETS = "triplets"
EMBEDDINGS = "embeddings"
LIT_MINI = "lit-mini"
COMBINER = "combiner"
EVAL = "eval"
