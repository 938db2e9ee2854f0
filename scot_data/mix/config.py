"""The mix stage's spec section (light: no tables)."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, field_validator

from scot_data import stages

SOURCE_STAGES = (stages.SCENES, stages.TRIPLETS)
"""The stages of a run whose triplet tables a spec's mix can draw on (the scenes stage's
template edits, the triplet stage's LLM rewrites)."""


class MixConfig(BaseModel):
    """Which of the run's triplet tables, in what proportion, how many in all."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sources: dict[str, float] = Field(
        description=f"stage name -> weight; stages: {', '.join(SOURCE_STAGES)}", min_length=1
    )
    total: int | None = Field(None, ge=1, description="triplets in the mix (default: all the weights allow)")
    seed: int = 0

    @field_validator("sources")
    @classmethod
    def _known_positive(cls, sources: dict[str, float]) -> dict[str, float]:
        for name, weight in sources.items():
            if name not in SOURCE_STAGES:
                raise ValueError(f"{name!r} is not a stage with triplets ({', '.join(SOURCE_STAGES)})")
            if not weight > 0 or math.isinf(weight):
                raise ValueError(f"{name}: weight {weight} must be positive and finite")
        return sources
