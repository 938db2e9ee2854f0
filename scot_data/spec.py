"""Pipeline specs: one YAML file names the inputs, the LLM, the encoder and the outputs of a run.

Every section is a pydantic model that forbids unknown keys, so ``captoins:`` or a
misspelt option fails with the file and the key instead of silently doing nothing.
Stages whose implementation has not landed yet are still validated, so a spec written
for the whole paper-scale run is checked today.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from scot_data.captions.config import CaptionsConfig
from scot_data.combiner.config import TrainConfig
from scot_data.errors import ScotInputError
from scot_data.evaluate.registry import benchmark_names, get_benchmark
from scot_data.triplets.config import TripletsConfig


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EncoderConfig(_Section):
    """The frozen encoder whose embeddings are cached."""

    backend: Literal["open_clip", "hf", "lit-mini"] = "lit-mini"
    model: str = "lit-mini"
    pretrained: str | None = Field(None, description="open_clip pretrained tag, a local checkpoint, or lit-mini heads")
    fit_lit: bool = Field(False, description="lit-mini only: fit its heads on this run's captions first")
    batch_size: int = Field(64, ge=1)
    device: str = "auto"


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


RUN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")
"""A run name is one path component inside ``shards/``: no separator, no leading dot (so
neither ``..`` nor a hidden folder), so the default output never lands outside it."""


class PipelineSpec(_Section):
    """A whole run: every stage's options and where the outputs go."""

    name: str = Field(description="the run's name; the default output folder is shards/<name>")
    description: str = ""
    output_dir: Path | None = Field(None, description="default: shards/<name>")
    captions: CaptionsConfig
    triplets: TripletsConfig | None = None
    encoder: EncoderConfig | None = None
    train: TrainConfig | None = None
    evaluate: EvaluateConfig | None = None

    @field_validator("name")
    @classmethod
    def _one_folder_name(cls, name: str) -> str:
        if not RUN_NAME.fullmatch(name):
            raise ValueError(f"{name!r} must be letters, digits, '_', '-' or '.' (not first)")
        return name

    @property
    def out(self) -> Path:
        return self.output_dir or Path("shards") / self.name


def _describe(error: dict) -> str:
    location = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"{location}: unknown key"
    return f"{location}: {error['msg']}"


def load_spec(path: str | Path) -> PipelineSpec:
    """Read and validate a spec; every problem is reported with the file and the key."""
    spec_path = Path(path)
    if not spec_path.is_file():
        raise ScotInputError(f"pipeline spec not found: {spec_path}")
    try:
        data = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ScotInputError(f"{spec_path}: not valid YAML ({' '.join(str(exc).split())})") from exc
    if not isinstance(data, dict):
        raise ScotInputError(f"{spec_path}: a pipeline spec is a mapping of sections")
    try:
        return PipelineSpec.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_describe(e) for e in exc.errors())
        raise ScotInputError(f"{spec_path}: {problems}") from exc
