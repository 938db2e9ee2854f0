"""Text -> image recall of any encoder on a caption table: ``scot encoder recall``.

The quickest check of what an encoder can do on a collection before any Combiner is
trained: each caption ranks every distinct image of the table, and Recall@K is the share
whose own image is in the top K. Run on held-out rows (``holdout.parquet``) it compares
encoder fits on images neither has seen. Recall@K is ``text_image_recall.recall_at_k``,
the one text->image recall of the project (the fit-lit model card uses it too).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from rich.progress import Progress

from scot_data.encoders.factory import create_encoder
from scot_data.errors import ScotInputError
from scot_data.evaluate.text_image_recall import RECALL_KS, recall_at_k
from scot_data.images import ImageError, ImageItem, decode, read_image_bytes


@dataclass
class RecallReport:
    encoder: str
    table: str
    captions: int
    images: int
    recall: dict[str, float]
    chance: dict[str, float]


def _pixels(encoder, image_id: str, uri: str) -> torch.Tensor:
    """Any URI the embed stage reads (file, ``tar://shard#member``, fsspec URL)."""
    try:
        return encoder.image_transform(decode(read_image_bytes(ImageItem(image_id, uri, 0)), uri))
    except ImageError as exc:  # its reason names the URI already
        raise ScotInputError(str(exc)) from exc
    except OSError as exc:
        raise ScotInputError(f"{uri}: {exc}") from exc


def text_to_image_recall(
    table: str | Path,
    encoder_spec: str,
    limit: int | None = None,
    batch_size: int = 64,
    show_progress: bool = True,
) -> RecallReport:
    """Recall@1/5/10 (fractions) of captions retrieving their image among the table's images."""
    if limit is not None and limit < 1:
        raise ScotInputError(f"--limit {limit}: must be at least 1")
    path = Path(table)
    if not path.is_file():
        raise ScotInputError(f"{path}: no such caption table")
    try:
        rows = pq.read_table(path, columns=["image_id", "image_uri", "caption"]).to_pylist()[:limit]
    except (pa.ArrowException, OSError) as exc:
        reason = " ".join(str(exc).split())[:200]
        raise ScotInputError(f"{path}: not a caption table ({reason})") from None
    if not rows:
        raise ScotInputError(f"{path}: no rows")
    encoder = create_encoder(encoder_spec)
    images = list(dict.fromkeys((r["image_id"], r["image_uri"]) for r in rows))
    column = {image_id: i for i, (image_id, _) in enumerate(images)}
    vectors = []
    with Progress(disable=not show_progress) as progress:
        task = progress.add_task("images", total=len(images))
        for start in range(0, len(images), batch_size):
            batch = torch.stack(
                [_pixels(encoder, image_id, uri) for image_id, uri in images[start : start + batch_size]]
            )
            vectors.append(encoder.encode_images(batch))
            progress.advance(task, len(batch))
    gallery = torch.cat(vectors)
    texts = encoder.encode_texts([r["caption"] for r in rows])
    targets = torch.tensor([column[r["image_id"]] for r in rows])
    return RecallReport(
        encoder=encoder_spec,
        table=str(path),
        captions=len(rows),
        images=len(images),
        recall=recall_at_k(texts, gallery, targets, RECALL_KS),
        chance={f"R@{k}": round(k / len(images), 4) for k in RECALL_KS},
    )
