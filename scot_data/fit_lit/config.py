"""The fit-lit stage's name, output files and settings (light: no torch)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from scot_data import stages
from scot_data.encoders.lit_family import LIT_VARIANTS, LitName

STAGE = stages.FIT_LIT
HEADS_FILE = "heads.safetensors"
FEATURES_FILE = "tower_features.safetensors"
CARD_JSON = "model_card.json"
CARD_MARKDOWN = "MODEL_CARD.md"
# Settings that change how fast the stage runs, never what it writes.
RUNTIME_ONLY = {"num_workers"}
# Options added after the first fits: counted in the fingerprint only when not the default.
LATER_OPTIONS = ("encoder",)


class FitLitConfig(BaseModel):
    """Head-fitting settings. Defaults suit a few thousand clip-art pairs on a CPU."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    encoder: LitName = Field("lit-mini", description=f"the LiT encoder: {' | '.join(LIT_VARIANTS)}")
    embed_dim: int = Field(384, ge=1, description="width of the shared embedding the heads project to")
    held_out_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="share of images kept out for the card")
    seed: int = 0
    validation_fraction: float = Field(0.1, gt=0.0, lt=1.0, description="of the training images, for early stopping")
    max_steps: int = Field(3000, ge=1)
    eval_every: int = Field(25, ge=1)
    patience: int = Field(8, ge=1, description="validation checks without improvement before stopping")
    batch_size: int = Field(256, ge=2)
    learning_rate: float = Field(3e-4, gt=0.0)
    weight_decay: float = Field(0.1, ge=0.0)
    image_batch_size: int = Field(32, ge=1)
    num_workers: int = Field(1, ge=0, description="image-decoding DataLoader workers")
    device: str = "auto"

    def fingerprint_config(self) -> dict[str, Any]:
        """The options that decide the output. Those added after the first fits count only
        when set, so a finished lit-mini fit stays finished (and so does all built on it)."""
        defaults = type(self).model_fields
        later = {name for name in LATER_OPTIONS if getattr(self, name) == defaults[name].default}
        return self.model_dump(exclude=RUNTIME_ONLY | later)
