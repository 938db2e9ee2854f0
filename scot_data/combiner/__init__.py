"""The Combiner: model, SCOT loss, training from the embedding cache.

``train_combiner(cfg, embeddings_dir, triplets_dir, out_dir)`` trains and checkpoints;
``load_combiner(path)`` reads the result. Benchmarks and their metrics live in
``scot_data.evaluate``. No Prefect here. The names below load on first use, so reading
``scot_data.combiner.config`` (the spec and the CLI do) does not import torch.
"""

from __future__ import annotations

from scot_data.lazy import lazy_names

_HOMES = {
    "load_combiner": "checkpoint",
    "save_combiner": "checkpoint",
    "LossConfig": "config",
    "CombinerConfig": "config",
    "TrainConfig": "config",
    "ScotLoss": "loss",
    "Combiner": "model",
    "CombinerOutput": "model",
    "compose_queries": "model",
    "TrainSummary": "train",
    "train_combiner": "train",
    "TrainingView": "view",
    "load_training_view": "view",
}

__all__ = sorted(_HOMES)

__getattr__ = lazy_names(__name__, _HOMES)
