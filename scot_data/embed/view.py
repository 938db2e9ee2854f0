"""Every embedding row of one kind of a finished embeddings directory, as one matrix.

``load_embeddings(embeddings, kind)`` reads each Parquet part once into one (N, dim) float16
matrix (a view over the Arrow buffer, no further copy) with its ids. The Combiner's training
view (``scot_data.train.view``) and the evaluation gallery build on it.

Bad data is refused with one line naming the file: any NaN/inf vector (one NaN in a batch
makes every weight NaN while the run still "finishes"); the parts themselves are checked
against the manifest by the callers (``manifest.finished_manifest``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from scot_data.embed.layout import IMAGES_DIR, iter_parts
from scot_data.embed.records import to_matrix
from scot_data.errors import ScotInputError
from scot_data.manifest import read_manifest

_CHECK_ROWS = 1 << 16  # rows per chunk of the NaN/inf scan, to bound its temporary memory
_FLOAT16_EXPONENT = 0x7C00  # all exponent bits set: inf or NaN


@dataclass
class Embeddings:
    """All rows of one kind: ids (Arrow strings) and an (N, dim) float16 matrix."""

    ids: pa.Array
    matrix: np.ndarray

    def index_of(self, wanted: pa.Array) -> np.ndarray:
        """Row of each wanted id, -1 where absent."""
        found = pc.index_in(wanted, value_set=self.ids)
        return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def load_embeddings(embeddings_dir: str | Path, kind: str) -> Embeddings:
    """Every row of ``kind`` (``images`` or ``texts``) of a finished embeddings directory;
    a NaN/inf vector is refused, naming its part, row and id."""
    id_column = "image_id" if kind == IMAGES_DIR else "text_id"
    paths = list(iter_parts(embeddings_dir, kind))
    if not paths:
        return Embeddings(pa.array([], pa.string()), np.zeros((0, _dim(embeddings_dir)), np.float16))
    table = pa.concat_tables([_finite_part(p, id_column) for p in paths])
    return Embeddings(table.column(0).combine_chunks(), to_matrix(table.column(1)))


def _finite_part(path: Path, id_column: str) -> pa.Table:
    """One part's (id, embedding) columns, refused when a vector holds NaN or inf."""
    table = pq.read_table(path, columns=[id_column, "embedding"], memory_map=True)
    row = _first_non_finite_row(to_matrix(table.column(1)))
    if row is not None:
        found = table.column(0)[row].as_py()
        raise ScotInputError(f"{path}: row {row} ({id_column} {found}): embedding has NaN/inf values")
    return table


def _first_non_finite_row(matrix: np.ndarray) -> int | None:
    """The first row of a float16 matrix holding NaN or inf, or None. Tests the exponent bits
    (2-3x faster than ``np.isfinite`` on float16) a chunk at a time, so memory stays small."""
    bits = matrix.view(np.uint16)
    for start in range(0, len(bits), _CHECK_ROWS):
        bad = ((bits[start : start + _CHECK_ROWS] & _FLOAT16_EXPONENT) == _FLOAT16_EXPONENT).any(axis=1)
        if bad.any():
            return start + int(np.argmax(bad))
    return None


def _dim(embeddings_dir: str | Path) -> int:
    return int((read_manifest(embeddings_dir) or {})["embedding"]["dim"])
