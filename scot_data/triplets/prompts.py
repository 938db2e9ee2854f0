"""Versioned prompt templates and the answer's JSON schema.

A template is a YAML file, named by its path or, for the ones the package ships
(``scot_data/pipelines/prompts/``), by its bare name: ``v1``, ``scenes-v1``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from scot_data.config_files import resolve_file
from scot_data.errors import ScotInputError

ANSWER_FIELDS = ("modification", "modified_caption", "edit_type")
MAX_REPEAT = 128


class Example(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    caption: str
    answer: dict[str, str]


class PromptTemplate(BaseModel):
    """System text, few-shot turns and the user turn; ``sha256`` pins the exact text."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str
    edit_types: list[str]
    system: str
    user: str
    examples: list[Example]
    sha256: str = ""

    def messages(self, caption: str) -> list[dict[str, str]]:
        """The chat messages for one caption: system, few-shot pairs, then the caption."""
        turns = [{"role": "system", "content": self.system.strip()}]
        for example in self.examples:
            turns.append({"role": "user", "content": self.user.format(caption=example.caption)})
            turns.append({"role": "assistant", "content": json.dumps(example.answer)})
        turns.append({"role": "user", "content": self.user.format(caption=caption)})
        return turns

    def json_schema(self) -> dict[str, Any]:
        """The answer schema that structured-output backends (xgrammar, outlines) enforce.

        Strings are bounded by a pattern rather than ``maxLength``: with ``maxLength``
        xgrammar lets raw control characters through (strict JSON then fails to parse),
        and a bounded pattern also makes a weak model close the object within max_tokens.
        xgrammar (vLLM 0.32) rejects a repetition bound above 128, so longer strings are
        two bounded runs.
        """
        char = '[^\\u0000-\\u001f"\\\\]'
        short = {"type": "string", "pattern": f"^{char}{{1,{MAX_REPEAT}}}$"}
        long = {"type": "string", "pattern": f"^{char}{{1,{MAX_REPEAT}}}{char}{{0,{MAX_REPEAT}}}$"}
        return {
            "type": "object",
            "properties": {
                "modification": short,
                "modified_caption": long,
                "edit_type": {"type": "string", "enum": self.edit_types},
            },
            "required": list(ANSWER_FIELDS),
            "additionalProperties": False,
        }

    def response_format(self, kind: str) -> dict[str, Any]:
        """OpenAI ``response_format``: a JSON schema, or plain ``json_object`` for servers
        that know only that."""
        if kind == "json_object":
            return {"type": "json_object"}
        return {"type": "json_schema", "json_schema": {"name": "triplet", "schema": self.json_schema(), "strict": True}}


def prompt_file(prompt: str | Path) -> Path:
    """The template file a ``prompt`` option names (a shipped name or a path)."""
    return resolve_file(prompt, "prompt template")


def load_prompt(prompt: str | Path) -> PromptTemplate:
    """Read a template (a shipped name or a path); its sha256 covers the file's exact bytes."""
    prompt_path = prompt_file(prompt)
    if not prompt_path.is_file():
        raise ScotInputError(f"prompt template not found: {prompt_path}")
    raw = prompt_path.read_bytes()
    try:
        data = yaml.safe_load(raw)
        return PromptTemplate.model_validate({**data, "sha256": hashlib.sha256(raw).hexdigest()})
    except (yaml.YAMLError, ValidationError, TypeError) as exc:
        raise ScotInputError(f"{prompt_path}: invalid prompt template ({' '.join(str(exc).split())[:300]})") from exc
