"""Readers for FashionIQ, CIRR and CIRCO as they ship, and their metrics over a score matrix.

Each reader returns queries (reference name, query text, target names) and the gallery (an
ordered list of image names with their paths), so an evaluator embeds the gallery once
through the embedding cache, scores ``queries x gallery`` and calls the ``score_*``
function of the benchmark. Layouts (paths relative to the data root):

- FashionIQ: ``captions/cap.<category>.<split>.json`` (``candidate``, ``target``,
  ``captions`` = two texts), ``image_splits/split.<category>.<split>.json`` (names),
  images under ``images/<name>.<png|jpg>``. A query's text joins its two captions as
  CLIP4Cir and later papers do: ``"<c1> and <c2>"`` (c1 capitalised, trailing ``.?,`` and
  spaces stripped).
- CIRR: ``captions/cap.rc2.<split>.json`` (``pairid``, ``reference``, ``target_hard``,
  ``caption``, ``img_set.members``), ``image_splits/split.rc2.<split>.json`` (name ->
  relative path). The test split has no targets; it is scored by the official server from
  :func:`cirr_submission`'s files.
- CIRCO: ``annotations/<split>.json`` (``id``, ``reference_img_id``, ``target_img_id``,
  ``relative_caption``, ``gt_img_ids``; no targets in test) over COCO ``unlabeled2017``
  (``COCO2017_unlabeled/unlabeled2017/<id:012d>.jpg``; the gallery is every image there,
  listed from ``COCO2017_unlabeled/annotations/image_info_unlabeled2017.json`` when present).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scot_data.combiner.metrics import exclude_columns, map_at_k, recall_at_k, subset_recall_at_k, top_k_names
from scot_data.errors import ScotInputError

FASHIONIQ_CATEGORIES = ("dress", "shirt", "toptee")
CIRCO_IMAGES = "COCO2017_unlabeled/unlabeled2017"
CIRCO_IMAGE_INFO = "COCO2017_unlabeled/annotations/image_info_unlabeled2017.json"


@dataclass(frozen=True)
class Query:
    """One composed query: a reference image, a text, and (outside test splits) its targets."""

    query_id: str
    reference: str
    text: str
    targets: tuple[str, ...]
    members: tuple[str, ...] = ()  # CIRR's img_set.members
    kind: str | None = None  # the edit kind, where a benchmark labels it (the clip-art set does)
    target_caption: str | None = None  # the target described, where known (the clip-art set): a ceiling


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

    def columns(self, names: list[str]) -> list[int]:
        """Gallery columns of ``names`` (every name must be in the gallery)."""
        index = {name: i for i, name in enumerate(self.gallery)}
        missing = [n for n in names if n not in index]
        if missing:
            raise ScotInputError(f"{self.name} {self.split}: {missing[0]!r} is not in the gallery")
        return [index[n] for n in names]


def _read_json(path: Path) -> Any:
    if not path.exists():
        raise ScotInputError(f"{path}: missing (see the benchmark's official layout)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ScotInputError(f"{path}: not JSON ({error})") from error


def fashioniq_text(captions: list[str]) -> str:
    """The two relative captions of a FashionIQ query as one text: "C1 and c2"."""
    first, second = (c.strip(".?, ") for c in captions[:2])
    return f"{first.capitalize()} and {second}"


def _fashioniq_image(root: Path, name: str) -> Path:
    for suffix in (".png", ".jpg", ".jpeg"):
        if (root / "images" / f"{name}{suffix}").exists():
            return root / "images" / f"{name}{suffix}"
    return root / "images" / f"{name}.png"


def read_fashioniq(root: str | Path, category: str, split: str = "val") -> Benchmark:
    """One FashionIQ category; the gallery is that category's image split."""
    root = Path(root)
    sources = (root / "captions" / f"cap.{category}.{split}.json", root / "image_splits" / f"split.{category}.{split}.json")
    records, names = (_read_json(path) for path in sources)
    queries = [
        Query(f"{category}-{i}", r["candidate"], fashioniq_text(r["captions"]),
              (r["target"],) if "target" in r else ())
        for i, r in enumerate(records)
    ]  # fmt: skip
    gallery = {n: _fashioniq_image(root, n) for n in names}
    return Benchmark(f"fashioniq-{category}", split, queries, gallery, sources)


def read_cirr(root: str | Path, split: str = "val", image_root: str | Path | None = None) -> Benchmark:
    """CIRR rc2; image paths of the split file are resolved against ``image_root`` (default: root)."""
    root = Path(root)
    base = Path(image_root) if image_root is not None else root
    sources = (root / "captions" / f"cap.rc2.{split}.json", root / "image_splits" / f"split.rc2.{split}.json")
    records, paths = (_read_json(path) for path in sources)
    queries = [
        Query(str(r["pairid"]), r["reference"], r["caption"],
              (r["target_hard"],) if r.get("target_hard") else (), tuple(r["img_set"]["members"]),
              r.get("edit_kind"), r.get("target_caption"))
        for r in records
    ]  # fmt: skip
    return Benchmark("cirr", split, queries, {name: base / rel for name, rel in paths.items()}, sources)


def read_circo(root: str | Path, split: str = "val") -> Benchmark:
    """CIRCO over COCO unlabeled2017; image names are the COCO ids as strings."""
    root = Path(root)
    sources = (root / "annotations" / f"{split}.json",)
    records = _read_json(sources[0])
    info = root / CIRCO_IMAGE_INFO
    if info.exists():
        image_ids = [int(image["id"]) for image in _read_json(info)["images"]]
    else:
        image_ids = sorted(int(p.stem) for p in (root / CIRCO_IMAGES).glob("*.jpg"))
    gallery = {str(i): root / CIRCO_IMAGES / f"{i:012d}.jpg" for i in image_ids}
    queries = [
        Query(str(r["id"]), str(r["reference_img_id"]), r["relative_caption"], _circo_targets(r))
        for r in records
    ]
    return Benchmark("circo", split, queries, gallery, sources + ((info,) if info.exists() else ()))


def _circo_targets(record: dict[str, Any]) -> tuple[str, ...]:
    """All ground truths (``gt_img_ids`` includes ``target_img_id``); none in the test split."""
    found = record.get("gt_img_ids") or ([record["target_img_id"]] if record.get("target_img_id") else [])
    return tuple(str(g) for g in found)


def score_fashioniq(scores: np.ndarray, bench: Benchmark) -> dict[str, float]:
    """R@10 and R@50 (percent) of one category."""
    targets = bench.columns([q.targets[0] for q in bench.queries])
    recall = recall_at_k(scores, targets, (10, 50))
    return {"R@10": recall[10], "R@50": recall[50]}


def fashioniq_average(per_category: dict[str, dict[str, float]]) -> dict[str, float]:
    """The mean over categories of each metric, as the papers report it."""
    metrics = next(iter(per_category.values())).keys()
    return {m: float(np.mean([c[m] for c in per_category.values()])) for m in metrics}


def score_cirr(scores: np.ndarray, bench: Benchmark) -> dict[str, float]:
    """R@1/5/10/50 with each query's reference excluded, and R_subset@1/2/3."""
    references = bench.columns([q.reference for q in bench.queries])
    targets = bench.columns([q.targets[0] for q in bench.queries])
    subsets = [bench.columns(list(q.members)) for q in bench.queries]
    recall = recall_at_k(exclude_columns(scores, references), targets, (1, 5, 10, 50))
    subset = subset_recall_at_k(scores, targets, subsets, references, (1, 2, 3))
    return {**{f"R@{k}": v for k, v in recall.items()}, **{f"R_subset@{k}": v for k, v in subset.items()}}


def score_circo(scores: np.ndarray, bench: Benchmark) -> dict[str, float]:
    """mAP@5/10/25/50 (percent) with each query's reference excluded."""
    references = bench.columns([q.reference for q in bench.queries])
    relevant = [set(bench.columns(list(q.targets))) for q in bench.queries]
    return {f"mAP@{k}": v for k, v in map_at_k(exclude_columns(scores, references), relevant).items()}


def cirr_submission(scores: np.ndarray, bench: Benchmark) -> tuple[dict[str, Any], dict[str, Any]]:
    """The two files the CIRR server takes: top-50 over the gallery, top-3 within each subset.

    Both exclude the reference, as the protocol does; keys are pairids as strings.
    """
    names = bench.names
    references = bench.columns([q.reference for q in bench.queries])
    masked = exclude_columns(scores, references)
    recall = {"version": "rc2", "metric": "recall"}
    subset = {"version": "rc2", "metric": "recall_subset"}
    for query, row, top50 in zip(bench.queries, masked, top_k_names(masked, names, min(50, len(names) - 1))):
        recall[query.query_id] = top50
        members = [m for m in dict.fromkeys(query.members) if m != query.reference]
        subset_scores = row[bench.columns(members)][None, :]
        subset[query.query_id] = top_k_names(subset_scores, members, 3)[0]
    return recall, subset
