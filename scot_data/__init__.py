"""scot: self-supervised composed image retrieval data, embeddings and training.

The library is pure Python with no Prefect imports, so that it runs wherever torch
and pyarrow do; the orchestration lives in the top-level ``flows/`` package.
``scot_data.read_embeddings`` loads on first use (pyarrow, numpy and fsspec only), so
``import scot_data`` stays light.
"""

from scot_data.lazy import lazy_names

__version__ = "0.1.0"

__getattr__ = lazy_names(__name__, {"read_embeddings": "export.reader"})
