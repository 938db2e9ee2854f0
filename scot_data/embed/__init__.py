"""The embedding-cache stage: frozen-encoder vectors of every image and text, once.

``embed_stage(cfg, captions_dir, triplets_dir, out_dir)`` writes Parquet parts
(``images/``, ``texts/``), WebDataset shards of row blocks (``wds/``), ``rejects.parquet``,
``stats.json`` and ``manifest.json`` last; ``load_training_view`` joins triplets to those
rows; ``iter_wds_blocks`` streams the shards. No Prefect here (see ``flows/embed.py``).
"""

from scot_data.embed.config import EmbedConfig
from scot_data.embed.records import text_id, to_matrix
from scot_data.embed.shards import WdsBlock, iter_wds_blocks
from scot_data.embed.stage import (
    EmbedPlan,
    EmbedSummary,
    embed_images,
    embed_stage,
    embed_texts,
    finish,
    prepare,
)
from scot_data.embed.view import TrainingView, load_embeddings, load_training_view

__all__ = [
    "EmbedConfig",
    "EmbedPlan",
    "EmbedSummary",
    "TrainingView",
    "WdsBlock",
    "embed_images",
    "embed_stage",
    "embed_texts",
    "finish",
    "iter_wds_blocks",
    "load_embeddings",
    "load_training_view",
    "prepare",
    "text_id",
    "to_matrix",
]
