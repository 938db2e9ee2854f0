"""The Combiner: model, SCOT loss, training from the embedding cache.

``train_combiner(cfg, embeddings_dir, triplets_dir, out_dir)`` trains and checkpoints;
``load_combiner(path)`` reads the result. Benchmarks and their metrics live in
``scot_data.evaluate``. No Prefect here.
"""

from scot_data.combiner.checkpoint import load_combiner, save_combiner
from scot_data.combiner.loss import LossConfig, ScotLoss
from scot_data.combiner.model import Combiner, CombinerConfig, CombinerOutput, compose_queries
from scot_data.combiner.train import TrainConfig, TrainSummary, train_combiner

__all__ = [
    "Combiner",
    "CombinerConfig",
    "CombinerOutput",
    "LossConfig",
    "ScotLoss",
    "TrainConfig",
    "TrainSummary",
    "compose_queries",
    "load_combiner",
    "save_combiner",
    "train_combiner",
]
