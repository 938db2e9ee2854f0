"""The train stage's settings (loss and trainer): pydantic only, so specs and the CLI read
them without loading torch."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from scot_data.combiner.config import CombinerConfig

# Options that change where or how fast training runs, never what it computes.
RUNTIME_ONLY_OPTIONS = {"device", "checkpoint_every", "cpu_threads"}


class LossConfig(BaseModel):
    """Which negatives, which direction(s), and the temperature."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(0.05, gt=0.0, description="initial (or fixed) softmax temperature")
    learnable_temperature: bool = Field(False, description="learn log(1/temperature), CLIP-style")
    caption_hard_negative: bool = Field(True, description="each query's own caption T as an extra negative")
    batch_caption_negatives: bool = Field(False, description="every caption T of the batch as negatives")
    symmetric: bool = Field(False, description="add the target -> query InfoNCE term and average")


class TrainConfig(BaseModel):
    """Everything that determines the trained weights (plus the runtime-only options)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(512, ge=2)
    lr: float = Field(2e-4, gt=0.0)
    weight_decay: float = Field(0.01, ge=0.0)
    warmup_fraction: float = Field(0.05, ge=0.0, lt=1.0, description="linear warm-up share of all steps")
    grad_clip: float = Field(1.0, gt=0.0, description="max gradient L2 norm")
    val_fraction: float = Field(0.05, ge=0.0, lt=1.0, description="share of *images* held out")
    max_triplets: int | None = Field(None, ge=1, description="training-set size ablation (seeded sample)")
    target: Literal["text", "image", "rendered"] = Field(
        "text",
        description="text: T_u (the paper); image: the cache image nearest to T_u (reference excluded); "
        "rendered: the triplet's own target image (synthetic scenes with target_image_id, a control)",
    )
    amp: bool = Field(True, description="bfloat16 autocast, on CUDA only")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    checkpoint_every: int = Field(500, ge=1, description="steps between checkpoints")
    cpu_threads: int | None = Field(
        1, ge=1, description="torch threads on CPU: the Combiner's small matmuls ran 40x slower on 2 OpenMP "
        "threads of a shared 2-core machine than on 1 (None: torch's default)"
    )  # fmt: skip
    combiner: CombinerConfig = CombinerConfig()
    loss: LossConfig = LossConfig()

    def fingerprint_config(self) -> dict[str, Any]:
        return self.model_dump(exclude=RUNTIME_ONLY_OPTIONS)
