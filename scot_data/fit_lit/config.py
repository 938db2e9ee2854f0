"""The fit-lit stage's name, output files and settings (light: no torch)."""

from __future__ import annotations

from dataclasses import dataclass

STAGE = "fit-lit"
HEADS_FILE = "heads.safetensors"
FEATURES_FILE = "tower_features.safetensors"
CARD_JSON = "model_card.json"
CARD_MARKDOWN = "MODEL_CARD.md"
# Settings that change how fast the stage runs, never what it writes.
RUNTIME_ONLY = {"num_workers"}


@dataclass(frozen=True)
class FitLitConfig:
    """Head-fitting settings. Defaults suit a few thousand clip-art pairs on a CPU."""

    embed_dim: int = 384
    held_out_fraction: float = 0.2
    seed: int = 0
    validation_fraction: float = 0.1  # of the training images, for early stopping
    max_steps: int = 3000
    eval_every: int = 25
    patience: int = 8  # validation checks without improvement before stopping
    batch_size: int = 256
    learning_rate: float = 3e-4
    weight_decay: float = 0.1
    image_batch_size: int = 32
    num_workers: int = 1
    device: str = "auto"
