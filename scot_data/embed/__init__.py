"""The embedding-cache stage: frozen-encoder vectors of every image and text, once.

``embed_stage(cfg, captions_dir, triplets_dir, out_dir)`` writes Parquet parts
(``images/``, ``texts/``), WebDataset shards of row blocks (``wds/``), ``rejects.parquet``,
``stats.json`` and ``manifest.json`` last; ``load_embeddings`` reads those rows back (the
Combiner's ``load_training_view`` joins triplets to them); ``iter_wds_blocks`` streams the
shards. No Prefect here (see ``flows/embed.py``).
The names below load on first use, so reading ``scot_data.embed.config`` (the CLI does)
does not import torch.
"""

from __future__ import annotations

from scot_data.lazy import lazy_names

_HOMES = {
    "EmbedConfig": "config",
    "text_id": "records",
    "to_matrix": "records",
    "WdsBlock": "shards",
    "iter_wds_blocks": "shards",
    "EmbedPlan": "plan",
    "EmbedSummary": "summary",
    "embed_images": "compute",
    "embed_stage": "stage",
    "embed_texts": "compute",
    "finish": "pack",
    "prepare": "plan",
    "Embeddings": "view",
    "load_embeddings": "view",
}

__all__ = sorted(_HOMES)

__getattr__ = lazy_names(__name__, _HOMES)
