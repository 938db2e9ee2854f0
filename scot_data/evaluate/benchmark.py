"""What every benchmark reader returns, and the protocol facts every scorer needs.

A reader turns a benchmark's official files into queries (reference name, query text,
target names) and an ordered gallery (image name -> path), so the evaluator embeds the
gallery once through the embedding cache, scores ``queries x gallery`` with each method
and hands the matrix to the benchmark's per-query metric function. Readers live one per
module (``fashioniq.py``, ``cirr.py``, ``circo.py``); ``registry.py`` names them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from scot_data.errors import ScotInputError


@dataclass(frozen=True)
class Query:
    """One composed query: a reference image, a text, and (outside hidden test splits) its targets."""

    query_id: str
    reference: str
    text: str
    targets: tuple[str, ...]
    members: tuple[str, ...] = ()  # CIRR's img_set.members
    kind: str | None = None  # the edit kind, where a benchmark labels it (the clip-art set does)
    target_caption: str | None = None  # the target described, where known (the clip-art set)


@dataclass(frozen=True)
class Source:
    """Where a benchmark's files are and which part to read (each reader takes what it needs)."""

    data: Path
    split: str = "val"
    categories: tuple[str, ...] = ()  # FashionIQ
    image_root: Path | None = None  # CIRR: base of the split file's relative paths


@dataclass
class Benchmark:
    """Queries and an ordered gallery (name -> image path)."""

    name: str
    split: str
    queries: list[Query]
    gallery: dict[str, Path]
    sources: tuple[Path, ...] = ()  # the annotation files read (they fingerprint a gallery cache)

    @property
    def names(self) -> list[str]:
        return list(self.gallery)

    @cached_property
    def index(self) -> dict[str, int]:
        """Gallery column of each image name."""
        return {name: i for i, name in enumerate(self.gallery)}

    def columns(self, names: list[str], query: Query | None = None) -> list[int]:
        """Gallery columns of ``names``; a name outside the gallery is an error naming the query."""
        missing = [n for n in names if n not in self.index]
        if missing:
            where = f" (query {query.query_id})" if query is not None else ""
            raise ScotInputError(f"{self.name} {self.split}{where}: {missing[0]!r} is not in the gallery")
        return [self.index[n] for n in names]

    def reference_columns(self) -> list[int]:
        return [self.columns([q.reference], q)[0] for q in self.queries]

    def target_columns(self) -> list[list[int]]:
        """Every query's target columns; a query without targets is an error naming it."""
        for query in self.queries:
            if not query.targets:
                raise ScotInputError(f"{self.name} {self.split}: query {query.query_id} has no ground truth")
        return [self.columns(list(q.targets), q) for q in self.queries]

    def has_targets(self) -> bool:
        """Whether this split can be scored here (hidden test splits are scored by a server)."""
        return bool(self.queries) and all(q.targets for q in self.queries)


def read_json(path: Path) -> Any:
    """A benchmark annotation file; a missing or broken file is an error naming it."""
    if not path.exists():
        raise ScotInputError(f"{path}: missing (see the benchmark's official layout)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ScotInputError(f"{path}: not JSON ({error})") from error
