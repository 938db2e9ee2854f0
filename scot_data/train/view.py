"""The training view: triplets joined to embedding rows, four aligned float16 matrices.

``load_training_view(embeddings, triplets)`` reads each kind's Parquet parts once into
one (N, dim) float16 matrix (a view over the Arrow buffer, no further copy), maps every
triplet to row indices with a vectorised hash join, and gathers V (reference image),
T (its caption), T_m (modification) and T_u (modified caption) lazily on first use. A
trainer on a GPU can instead move ``images`` / ``texts`` once and gather by the index
arrays there. Triplets whose image was rejected (or texts absent) are dropped and counted.
Triplets that name a target image (rendered scenes) also get ``target_v_index``.

Bad data is refused with one line naming the file, never trained on: a part whose size (or,
below ``hashing.HASH_BELOW_BYTES``, sha256) differs from the manifest
(``manifest.finished_manifest``), and any NaN/inf vector (one NaN in a batch makes every
weight NaN while the run still "finishes").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from scot_data import stages
from scot_data.embed.layout import IMAGES_DIR, TEXTS_DIR
from scot_data.embed.records import text_id
from scot_data.embed.view import load_embeddings
from scot_data.errors import ScotInputError
from scot_data.manifest import finished_manifest
from scot_data.triplets.records import TARGET_IMAGE_COLUMN


@dataclass
class TrainingView:
    """Aligned rows: triplet i uses ``images[v_index[i]]``, ``texts[t_index[i]]`` and so on."""

    triplet_ids: np.ndarray
    image_ids: np.ndarray
    images: np.ndarray
    texts: np.ndarray
    v_index: np.ndarray
    t_index: np.ndarray
    tm_index: np.ndarray
    tu_index: np.ndarray
    dropped: dict[str, int] = field(default_factory=dict)
    target_v_index: np.ndarray | None = None  # rows of ``images``, when the triplets name target images

    def __len__(self) -> int:
        return len(self.triplet_ids)

    @cached_property
    def V(self) -> np.ndarray:  # noqa: N802 (the paper's names)
        return self.images[self.v_index]

    @cached_property
    def T(self) -> np.ndarray:  # noqa: N802
        return self.texts[self.t_index]

    @cached_property
    def T_m(self) -> np.ndarray:  # noqa: N802
        return self.texts[self.tm_index]

    @cached_property
    def T_u(self) -> np.ndarray:  # noqa: N802
        return self.texts[self.tu_index]


def load_training_view(
    embeddings_dir: str | Path, triplets_dir: str | Path, strict: bool = False
) -> TrainingView:
    """Join a finished triplets directory to a finished embeddings directory.

    With ``strict`` a triplet without embeddings is an error; otherwise it is dropped and
    counted in ``dropped`` (a rejected image drops every triplet that uses it). Altered parts
    and NaN/inf vectors are errors (see the module docstring).
    """
    triplets_path = Path(triplets_dir) / "triplets.parquet"
    finished_manifest(triplets_dir, "triplets")
    has_targets = TARGET_IMAGE_COLUMN in pq.read_schema(triplets_path).names
    table = pq.read_table(
        triplets_path,
        columns=["triplet_id", "image_id", "caption", "modification", "modified_caption"]
        + [TARGET_IMAGE_COLUMN] * has_targets,
    )
    finished_manifest(embeddings_dir, stages.EMBED)  # every part checked against the manifest
    images = load_embeddings(embeddings_dir, IMAGES_DIR)
    texts = load_embeddings(embeddings_dir, TEXTS_DIR)
    v = images.index_of(table.column("image_id"))
    text_rows = []
    for name in ("caption", "modification", "modified_caption"):
        hashed = pa.array([text_id(s) for s in table.column(name).to_pylist()], pa.string())
        text_rows.append(texts.index_of(hashed))
    t, tm, tu = text_rows
    target_v = images.index_of(table.column(TARGET_IMAGE_COLUMN)) if has_targets else np.zeros_like(v)
    keep = (v >= 0) & (t >= 0) & (tm >= 0) & (tu >= 0) & (target_v >= 0)
    dropped = {
        "image_missing_or_rejected": int((v < 0).sum()),
        "text_missing": int(((t < 0) | (tm < 0) | (tu < 0)).sum()),
        "target_image_missing_or_rejected": int((target_v < 0).sum()),
    }
    if strict and not keep.all():
        first = table.column("triplet_id")[int(np.flatnonzero(~keep)[0])].as_py()
        raise ScotInputError(f"{triplets_path}: triplet {first} has no embeddings ({dropped})")
    rows = np.flatnonzero(keep)
    return TrainingView(
        triplet_ids=table.column("triplet_id").to_numpy(zero_copy_only=False)[rows],
        image_ids=table.column("image_id").to_numpy(zero_copy_only=False)[rows],
        images=images.matrix,
        texts=texts.matrix,
        v_index=v[rows],
        t_index=t[rows],
        tm_index=tm[rows],
        tu_index=tu[rows],
        dropped={k: n for k, n in dropped.items() if n},
        target_v_index=target_v[rows] if has_targets else None,
    )
