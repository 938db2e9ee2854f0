"""scot: self-supervised composed image retrieval data, embeddings and training.

The library is pure Python with no Prefect imports, so that it runs wherever torch
and pyarrow do; the orchestration lives in the top-level ``flows/`` package.
"""

__version__ = "0.1.0"
