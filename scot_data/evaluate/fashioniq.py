"""FashionIQ as it ships: three categories, R@10 and R@50 over each category's image split.

Layout (paths relative to the data root): ``captions/cap.<category>.<split>.json``
(``candidate``, ``target``, ``captions`` = two texts), ``image_splits/split.<category>.<split>.json``
(names), images under ``images/<name>.<png|jpg>``. A query's text joins its two captions as
CLIP4Cir and later papers do: ``"<C1> and <c2>"`` (trailing ``.?,`` and spaces stripped).
The protocol keeps the reference in the ranking, and papers report the mean of the
categories (``average``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scot_data.evaluate.benchmark import Benchmark, Query, Source, read_json
from scot_data.evaluate.metrics import hits_at_k

CATEGORIES = ("dress", "shirt", "toptee")
KS = (10, 50)


def fashioniq_text(captions: list[str]) -> str:
    """The two relative captions of a FashionIQ query as one text: "C1 and c2"."""
    first, second = (c.strip(".?, ") for c in captions[:2])
    return f"{first.capitalize()} and {second}"


def _image(root: Path, name: str) -> Path:
    for suffix in (".png", ".jpg", ".jpeg"):
        if (root / "images" / f"{name}{suffix}").exists():
            return root / "images" / f"{name}{suffix}"
    return root / "images" / f"{name}.png"


def read_category(root: str | Path, category: str, split: str = "val") -> Benchmark:
    """One FashionIQ category; the gallery is that category's image split."""
    root = Path(root)
    sources = (root / "captions" / f"cap.{category}.{split}.json",
               root / "image_splits" / f"split.{category}.{split}.json")  # fmt: skip
    records, names = (read_json(path) for path in sources)
    queries = [
        Query(f"{category}-{i}", r["candidate"], fashioniq_text(r["captions"]),
              (r["target"],) if "target" in r else ())
        for i, r in enumerate(records)
    ]  # fmt: skip
    return Benchmark(f"fashioniq-{category}", split, queries, {n: _image(root, n) for n in names}, sources)


def read(source: Source) -> list[Benchmark]:
    """Every asked category (default: all three)."""
    return [read_category(source.data, c, source.split) for c in source.categories or CATEGORIES]


def per_query(bench: Benchmark, scores: np.ndarray, ranks: np.ndarray) -> dict[str, np.ndarray]:
    """Hits at R@10 and R@50 per query, from the target ranks."""
    return {f"R@{k}": hits for k, hits in hits_at_k(ranks, KS).items()}
