"""The Combiner's settings: pydantic only, so specs and the CLI read them without torch."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class CombinerConfig(BaseModel):
    """Widths as multiples of the encoder dim, and dropout."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    projection_factor: int = Field(4, ge=1, description="projection width = factor x encoder dim")
    hidden_factor: int = Field(8, ge=1, description="MLP hidden width = factor x encoder dim")
    dropout: float = Field(0.5, ge=0.0, lt=1.0, description="after projections and hidden layers")
