"""The train stage: the SCOT loss and the Combiner trained from the embedding cache.

``train_combiner(cfg, embeddings_dir, triplets_dir, out_dir)`` trains and checkpoints into
the stage's folder; the model itself is :mod:`scot_data.combiner`. No Prefect here. The
names below load on first use, so reading ``scot_data.train.config`` (the spec and the CLI
do) does not import torch.
"""

from __future__ import annotations

from scot_data.lazy import lazy_names

_HOMES = {
    "LossConfig": "config",
    "TrainConfig": "config",
    "ScotLoss": "loss",
    "TrainSummary": "stage",
    "train_combiner": "stage",
    "TrainingView": "view",
    "load_training_view": "view",
}

__all__ = sorted(_HOMES)

__getattr__ = lazy_names(__name__, _HOMES)
