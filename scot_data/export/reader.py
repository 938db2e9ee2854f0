"""``read_embeddings``: an embedding cache's vectors with pyarrow, numpy and fsspec only.

For code that consumes scot's output without running scot (a notebook, a retrieval service,
another project): no torch, no encoder, no stage code is imported, and the folder may be
local or behind any fsspec URL (``s3://``, ``gs://``, ``https://``...), such as one that
``scot publish`` wrote. The manifest says which parts hold the rows and in what order, and
each part is checked against its size and sha256 there before it is read, so a truncated
or half-uploaded copy is refused instead of read short.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from scot_data import stages
from scot_data.embed.records import DTYPE, EMBEDDING, table_dim, to_matrix
from scot_data.errors import ScotInputError
from scot_data.outdir import refuse_if_writing

# kind -> (the cache's subfolder, its id column)
KINDS = {"image": ("images", "image_id"), "text": ("texts", "text_id")}


def read_embeddings(
    path_or_url: str | os.PathLike[str], kind: str = "image", storage_options: dict[str, Any] | None = None
) -> tuple[list[str], np.ndarray]:
    """The ids and the (N, dim) float16 matrix of one kind (``image`` or ``text``) of a
    finished embed folder, in the manifest's row order; rows are unit vectors.

    ``storage_options`` go to fsspec (credentials, ``client_kwargs={"endpoint_url": ...}``).
    """
    import fsspec

    if kind not in KINDS:
        raise ScotInputError(f"kind {kind!r}: expected one of {', '.join(KINDS)}")
    folder, id_column = KINDS[kind]
    shown = str(path_or_url).rstrip("/")
    if "://" not in shown:
        refuse_if_writing(shown)
    fs, root = fsspec.core.url_to_fs(shown, **(storage_options or {}))
    root = root.rstrip("/")
    manifest = _manifest(fs, root, shown)
    dim, outputs = int(manifest["embedding"]["dim"]), manifest["outputs"]
    names = [f"{folder}/{name}" for name in manifest["parts"][folder]]
    matrix = np.empty((sum(outputs[name]["rows"] for name in names), dim), DTYPE)
    found: list[str] = []
    for name in names:
        table = _checked_part(fs, f"{root}/{name}", f"{shown}/{name}", outputs[name], id_column)
        if table_dim(table.schema) != dim:
            found_dim = table_dim(table.schema)
            raise ScotInputError(f"{shown}/{name}: embedding dim {found_dim}, manifest says {dim}")
        matrix[len(found) : len(found) + table.num_rows] = to_matrix(table.column(EMBEDDING))
        found += table.column(id_column).to_pylist()
    return found, matrix


def _manifest(fs: Any, root: str, shown: str) -> dict[str, Any]:
    """The manifest of a finished embed folder; anything else is refused in one line."""
    try:
        with fs.open(f"{root}/manifest.json", "rb") as handle:
            manifest = json.loads(handle.read())
    except FileNotFoundError:
        raise ScotInputError(f"{shown}: no manifest.json (not a finished embed folder)") from None
    except ValueError as exc:
        raise ScotInputError(f"{shown}/manifest.json: unreadable ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("stage") != stages.EMBED:
        stage = manifest.get("stage") if isinstance(manifest, dict) else None
        raise ScotInputError(f"{shown}: not a finished {stages.EMBED} folder (its stage: {stage!r})")
    return manifest


def _checked_part(fs: Any, path: str, shown: str, meta: dict[str, Any], id_column: str) -> pa.Table:
    """One part's id and embedding columns, its bytes first checked against the manifest."""
    try:
        data = fs.cat_file(path)
    except FileNotFoundError:
        raise ScotInputError(f"{shown}: missing (listed in the manifest)") from None
    if len(data) != meta["bytes"]:
        size = len(data)
        raise ScotInputError(f"{shown}: {size} bytes, manifest says {meta['bytes']} (truncated or altered)")
    if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise ScotInputError(f"{shown}: sha256 differs from the manifest (altered)")
    # ParquetFile, not read_table: read_table imports pyarrow.dataset (about 1 s) on first use
    return pq.ParquetFile(pa.BufferReader(data)).read(columns=[id_column, EMBEDDING])
