"""The evaluate stage's settings (the spec's ``evaluate:`` section): light, no torch."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from scot_data.evaluate.registry import benchmark_names, get_benchmark


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BenchmarkConfig(_Section):
    """One composed-retrieval benchmark in its official layout (names: the evaluation registry)."""

    name: Literal[benchmark_names()]  # type: ignore[valid-type]
    data: Path
    splits: tuple[str, ...] = Field(
        ("val",), min_length=1, description="splits to score, each into eval/<name>-<split>; hidden test splits get submission files"
    )
    build: bool = Field(False, description="build it first from this run's held-out captions (clipart)")
    queries_per_kind: int = Field(100, ge=1, description="build: queries of each edit kind, per split")

    @model_validator(mode="after")
    def _buildable(self) -> BenchmarkConfig:
        if self.build and get_benchmark(self.name).build is None:
            raise ValueError(f"build: {self.name} ships its own files; only a benchmark with a builder is built")
        return self


class EvaluateConfig(_Section):
    benchmarks: list[BenchmarkConfig] = Field(default_factory=list)
