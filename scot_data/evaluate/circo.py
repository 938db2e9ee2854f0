"""CIRCO as it ships: mAP@K over all of COCO unlabeled2017, several ground truths per query.

Layout (paths relative to the data root): ``annotations/<split>.json`` (``id``,
``reference_img_id``, ``target_img_id``, ``relative_caption``, ``gt_img_ids``; no targets in
test) over ``COCO2017_unlabeled/unlabeled2017/<id:012d>.jpg``; the gallery is every image
there, listed from ``COCO2017_unlabeled/annotations/image_info_unlabeled2017.json`` when
present. The official evaluation ranks the whole gallery without removing the reference
(the reference is never a ground truth, so it only costs a rank when it scores high), and
AP@K divides by min(K, number of ground truths).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from scot_data.evaluate.benchmark import Benchmark, Query, Source, read_json
from scot_data.evaluate.metrics import average_precisions, top_k_names

IMAGES = "COCO2017_unlabeled/unlabeled2017"
IMAGE_INFO = "COCO2017_unlabeled/annotations/image_info_unlabeled2017.json"
KS = (5, 10, 25, 50)


def _targets(record: dict[str, Any]) -> tuple[str, ...]:
    """All ground truths (``gt_img_ids`` includes ``target_img_id``); none in the test split."""
    found = record.get("gt_img_ids") or ([record["target_img_id"]] if record.get("target_img_id") else [])
    return tuple(str(g) for g in found)


def read_split(root: str | Path, split: str = "val") -> Benchmark:
    """One split; image names are the COCO ids as strings."""
    root = Path(root)
    sources = (root / "annotations" / f"{split}.json",)
    records = read_json(sources[0])
    info = root / IMAGE_INFO
    if info.exists():
        image_ids = [int(image["id"]) for image in read_json(info)["images"]]
    else:
        image_ids = sorted(int(p.stem) for p in (root / IMAGES).glob("*.jpg"))
    gallery = {str(i): root / IMAGES / f"{i:012d}.jpg" for i in image_ids}
    queries = [Query(str(r["id"]), str(r["reference_img_id"]), r["relative_caption"], _targets(r)) for r in records]
    return Benchmark("circo", split, queries, gallery, sources + ((info,) if info.exists() else ()))


def read(source: Source) -> list[Benchmark]:
    return [read_split(source.data, source.split)]


def per_query(bench: Benchmark, scores: np.ndarray, ranks: np.ndarray) -> dict[str, np.ndarray]:
    """AP@5/10/25/50 per query (their means are mAP@K); AP needs each query's top-K order, not
    only its first target's ``ranks``."""
    relevant = [set(columns) for columns in bench.target_columns()]
    return {f"mAP@{k}": ap for k, ap in average_precisions(scores, relevant, KS).items()}


def submission(bench: Benchmark, scores: np.ndarray, method: str) -> dict[str, Any]:
    """The server's file: each query id -> its top 50 gallery ids."""
    top50 = top_k_names(scores, bench.names, min(50, len(bench.names)))
    return {f"circo_{bench.split}_{method}.json": {q.query_id: best for q, best in zip(bench.queries, top50)}}
