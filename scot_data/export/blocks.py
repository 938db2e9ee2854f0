"""The rows an export writes, as blocks of at most ``block_rows``, never the whole matrix.

A block is one ``.npy`` matrix per vector folder and the Parquet table aligned with them.

* ``distinct_blocks`` (format ``npy``): every row of one kind of the cache in the manifest's
  order, read one part at a time.
* ``pair_blocks`` (format ``clip-retrieval``): one row per caption of the captions table, in
  its order, with its image's vector and its text's vector, as clip-retrieval writes them.
  An image's rows are needed wherever its captions are, so each kind is first copied once,
  part by part, into a raw float16 file beside the output (:func:`spilled`) and read back
  by row through a memory map: memory holds one block and the id -> row maps.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from scot_data.atomic import TMP_MARK
from scot_data.embed.layout import IMAGES_DIR, iter_parts
from scot_data.embed.records import DTYPE, EMBEDDING, text_id, to_matrix

ID_COLUMNS = {IMAGES_DIR: ["image_id"], "texts": ["text_id", "text"]}
# the captions table's columns, as the metadata names them (clip-retrieval's image_path, caption first)
PAIR_COLUMNS = {"image_uri": "image_path", "caption": "caption", "image_id": "image_id",
                "caption_id": "caption_id", "source": "source"}  # fmt: skip
_IMAGE_ROW, _TEXT_ROW = "__image_row", "__text_row"


@dataclass(frozen=True)
class Block:
    """Matrices (one per vector folder, float16) and the table aligned with their rows."""

    matrices: tuple[np.ndarray, ...]
    table: pa.Table


@dataclass
class Spilled:
    """One kind's vectors in a raw file (a memory map) and each id's row in it."""

    rows: dict[str, int]
    matrix: np.ndarray


@dataclass
class PairCounts:
    """Captions left out of a clip-retrieval export, by the vector they lack."""

    without_image: int = 0  # the image was rejected by the embed stage
    without_text: int = 0  # the caption was not embedded (include_caption_table: false)


def rebatch(tables: Iterable[pa.Table], rows: int) -> Iterator[pa.Table]:
    """Tables of exactly ``rows`` rows (the last one shorter) from tables of any sizes."""
    pending: list[pa.Table] = []
    held = 0
    for table in tables:
        pending.append(table)
        held += table.num_rows
        while held >= rows:
            joined = pa.concat_tables(pending)
            yield joined.slice(0, rows)
            pending, held = [joined.slice(rows)], held - rows
    if held:
        yield pa.concat_tables(pending)


def distinct_blocks(embed_dir: Path, kind: str, block_rows: int) -> Iterator[Block]:
    """Every row of ``kind`` (``images`` or ``texts``): its ids (and text) and its vector."""
    columns = [*ID_COLUMNS[kind], EMBEDDING]
    tables = (pq.read_table(path, columns=columns) for path in iter_parts(embed_dir, kind))
    for table in rebatch(tables, block_rows):
        yield Block((to_matrix(table.column(EMBEDDING)),), table.drop_columns([EMBEDDING]))


@contextmanager
def spilled(embed_dir: Path, kind: str, out: Path, dim: int) -> Iterator[Spilled]:
    """``kind``'s vectors copied in manifest order into a temporary file of ``out`` (removed
    after; one a kill leaves carries scot's temporary mark, so the next run removes it)."""
    path = out / f"{kind}{TMP_MARK}spill"
    rows: dict[str, int] = {}
    try:
        with open(path, "wb") as handle:
            for part in iter_parts(embed_dir, kind):
                table = pq.read_table(part, columns=[ID_COLUMNS[kind][0], EMBEDDING])
                for row_id in table.column(0).to_pylist():
                    rows[row_id] = len(rows)
                handle.write(to_matrix(table.column(1)))  # a view: no copy
        count = path.stat().st_size // (dim * DTYPE.itemsize)
        matrix = np.memmap(path, DTYPE, "r", shape=(count, dim)) if count else np.zeros((0, dim), DTYPE)
        yield Spilled(rows, matrix)
    finally:
        path.unlink(missing_ok=True)


def pair_blocks(
    captions_table: Path, images: Spilled, texts: Spilled, block_rows: int, counts: PairCounts
) -> Iterator[Block]:
    """One row per caption whose image and text both have vectors, in the table's order;
    ``counts`` gets the captions left out."""
    captions = pq.ParquetFile(captions_table)
    batches = captions.iter_batches(batch_size=block_rows, columns=list(PAIR_COLUMNS))
    for table in rebatch((_with_rows(b, images, texts, counts) for b in batches), block_rows):
        image_rows = table.column(_IMAGE_ROW).to_numpy()
        text_rows = table.column(_TEXT_ROW).to_numpy()
        matrices = (images.matrix[image_rows], texts.matrix[text_rows])
        yield Block(matrices, table.drop_columns([_IMAGE_ROW, _TEXT_ROW]))


def _with_rows(batch: pa.RecordBatch, images: Spilled, texts: Spilled, counts: PairCounts) -> pa.Table:
    """A batch of captions with the vector rows of their image and text; those lacking one dropped."""
    image_ids, captions = batch.column("image_id").to_pylist(), batch.column("caption").to_pylist()
    image_rows = np.array([images.rows.get(i, -1) for i in image_ids], np.int64)
    text_rows = np.array([texts.rows.get(text_id(c), -1) for c in captions], np.int64)
    counts.without_image += int((image_rows < 0).sum())
    counts.without_text += int(((text_rows < 0) & (image_rows >= 0)).sum())
    table = pa.Table.from_batches([batch]).rename_columns([PAIR_COLUMNS[n] for n in batch.schema.names])
    table = table.append_column(_IMAGE_ROW, pa.array(image_rows))
    table = table.append_column(_TEXT_ROW, pa.array(text_rows))
    return table.filter(pa.array((image_rows >= 0) & (text_rows >= 0)))
