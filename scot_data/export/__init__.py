"""The export stage and the light reader: scot's cache in the layouts other tools read.

``export_stage(cfg, embed_dir, out_dir)`` writes ``.npy`` blocks + aligned Parquet
(clip-retrieval's layout, or one row per distinct image and text); ``read_embeddings``
reads an embed folder's vectors, local or over fsspec, with pyarrow, numpy and fsspec only.
The names below load on first use.
"""

from __future__ import annotations

from scot_data.lazy import lazy_names

_HOMES = {
    "ExportConfig": "config",
    "ExportSummary": "stage",
    "export_stage": "stage",
    "read_embeddings": "reader",
}

__all__ = sorted(_HOMES)

__getattr__ = lazy_names(__name__, _HOMES)
