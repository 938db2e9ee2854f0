"""The Combiner: model, SCOT loss, training from the embedding cache, benchmark metrics.

``train_combiner(cfg, embeddings_dir, triplets_dir, out_dir)`` trains and checkpoints;
``load_combiner(path)`` reads the result; ``read_fashioniq`` / ``read_cirr`` /
``read_circo`` read the benchmarks as they ship and ``score_*`` compute their metrics over
a (queries x gallery) score matrix. No Prefect here.
"""

from scot_data.combiner.benchmarks import (
    Benchmark,
    Query,
    cirr_submission,
    fashioniq_average,
    fashioniq_text,
    read_circo,
    read_cirr,
    read_fashioniq,
    score_circo,
    score_cirr,
    score_fashioniq,
)
from scot_data.combiner.checkpoint import load_combiner, save_combiner
from scot_data.combiner.loss import LossConfig, ScotLoss
from scot_data.combiner.model import Combiner, CombinerConfig, CombinerOutput, compose_queries
from scot_data.combiner.train import TrainConfig, TrainSummary, train_combiner

__all__ = [
    "Benchmark",
    "Combiner",
    "CombinerConfig",
    "CombinerOutput",
    "LossConfig",
    "Query",
    "ScotLoss",
    "TrainConfig",
    "TrainSummary",
    "cirr_submission",
    "compose_queries",
    "fashioniq_average",
    "fashioniq_text",
    "load_combiner",
    "read_circo",
    "read_cirr",
    "read_fashioniq",
    "save_combiner",
    "score_circo",
    "score_cirr",
    "score_fashioniq",
    "train_combiner",
]
