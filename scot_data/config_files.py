"""Configs read from YAML files (pipeline specs, ablations) and pydantic's errors as the
one line a user reads: the file, the key, what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from scot_data.errors import ScotInputError

Model = TypeVar("Model", bound=BaseModel)


def describe(error: Any) -> str:
    """One pydantic error as ``key.path: message`` (no location for a check across keys)."""
    location = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"{location}: unknown key"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{location}: {message}" if location else message


def problems(exc: ValidationError) -> str:
    """Every problem of a validation, in one line."""
    return "; ".join(describe(error) for error in exc.errors())


def load_yaml_model(path: str | Path, model: type[Model], kind: str) -> Model:
    """Read a YAML mapping and validate it as ``model``; a missing file, bad YAML, a
    non-mapping or an invalid key is one input error naming the file (``kind`` says what
    the file should be: "pipeline spec", "ablation file")."""
    file = Path(path)
    if not file.is_file():
        raise ScotInputError(f"{kind} not found: {file}")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ScotInputError(f"{file}: not valid YAML ({' '.join(str(exc).split())})") from exc
    if not isinstance(data, dict):
        raise ScotInputError(f"{file}: a {kind} is a mapping of keys")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ScotInputError(f"{file}: {problems(exc)}") from exc
