"""Pipeline specs: one YAML file names the inputs and options of every stage of a run.

A spec composes the stages' own configs, one section per stage under the stage's name
(``captions``, ``scenes``, ``triplets``, ``mix``, ``embed``, ``train``, ``evaluate``:
:mod:`scot_data.stages`).
Every section forbids unknown keys, so ``captoins:`` or a misspelt option fails with the
file and the key instead of silently doing nothing; a section renamed since an older spec
is named in the error.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from scot_data.captions.config import CaptionsConfig
from scot_data.config_files import load_yaml_model
from scot_data.embed.config import EmbedConfig
from scot_data.evaluate.config import EvaluateConfig
from scot_data.mix.config import MixConfig
from scot_data.scenes.config import ScenesConfig
from scot_data.train.config import TrainConfig
from scot_data.triplets.config import TripletsConfig

RUN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")
"""A run name is one path component inside ``shards/``: no separator, no leading dot (so
neither ``..`` nor a hidden folder), so the default output never lands outside it."""


RENAMED_SECTIONS = {"encoder": "embed"}
"""Sections of older specs, named in the error instead of a bare "unknown key"."""


class PipelineSpec(BaseModel):
    """A whole run: every stage's options and where the outputs go."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="the run's name; the default output folder is shards/<name>")
    description: str = ""
    output_dir: Path | None = Field(None, description="default: shards/<name>")
    captions: CaptionsConfig
    scenes: ScenesConfig | None = Field(
        None, description="compose the captions' objects into scenes; the run then trains on scenes"
    )
    triplets: TripletsConfig | None = None
    mix: MixConfig | None = Field(None, description="train on a weighted sample of the run's triplet tables")
    embed: EmbedConfig | None = None
    train: TrainConfig | None = None
    evaluate: EvaluateConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _renamed_sections(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for old, new in RENAMED_SECTIONS.items():
                if old in data:
                    raise ValueError(f"section {old!r} is now {new!r} (the stage's name everywhere)")
        return data

    @model_validator(mode="after")
    def _mix_of_configured_stages(self) -> PipelineSpec:
        if self.mix is not None:
            for source in self.mix.sources:
                if getattr(self, source) is None:
                    raise ValueError(f"mix.sources names {source!r}, a stage this spec does not run")
        return self

    @field_validator("name")
    @classmethod
    def _one_folder_name(cls, name: str) -> str:
        if not RUN_NAME.fullmatch(name):
            raise ValueError(f"{name!r} must be letters, digits, '_', '-' or '.' (not first)")
        return name

    @property
    def out(self) -> Path:
        return self.output_dir or Path("shards") / self.name


def load_spec(path: str | Path) -> PipelineSpec:
    """Read and validate a spec; every problem is reported with the file and the key."""
    return load_yaml_model(path, PipelineSpec, "pipeline spec")
