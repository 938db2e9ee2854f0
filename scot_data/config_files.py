"""Configs read from YAML files (pipeline specs, ablations, prompt templates), the ones the
package ships, and pydantic's errors as the one line a user reads: the file, the key, what
is wrong.

A file is named by its path (relative to the working directory, like every path a spec
holds), or, for a file the package ships (``scot_data/pipelines/``; the checkout's
``pipelines/`` is a link to it), by its bare name: ``demo``, ``coco-290k``, ``v1``,
``scenes-v1``. A bare name has no folder and no suffix, so ``demo`` is always the shipped
spec and ``demo.yaml`` always a file in the working directory. Shipped files are found
through ``importlib.resources``, so they work wherever the package is installed.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from scot_data.errors import ScotInputError

Model = TypeVar("Model", bound=BaseModel)

SHIPPED_FOLDERS = {"pipeline spec": ".", "ablation file": "ablations", "prompt template": "prompts"}
"""Where each kind of shipped file lies under ``scot_data/pipelines``."""


def shipped_files(kind: str) -> dict[str, Path]:
    """The files of one kind that the package ships, by name. A wheel installs unpacked, so
    they are files on disk (stage fingerprints hash inputs by path and content)."""
    folder = Path(str(files("scot_data") / "pipelines" / SHIPPED_FOLDERS[kind]))
    return {path.stem: path for path in sorted(folder.glob("*.yaml"))}


def is_bare_name(value: str | Path) -> bool:
    """``demo``, ``v1``: no folder and no suffix, so it names a shipped file, not a path."""
    text = str(value)
    return bool(text) and "/" not in text and not Path(text).suffix


def resolve_file(value: str | Path, kind: str) -> Path:
    """The file ``value`` names: the shipped one for a bare name, else the path as given."""
    if not is_bare_name(value):
        return Path(value)
    shipped = shipped_files(kind)
    if str(value) not in shipped:
        raise ScotInputError(f"{value}: no shipped {kind} of that name (shipped: {', '.join(shipped)}; "
                             "a file of your own is named by its .yaml path)")
    return shipped[str(value)]


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
    the file should be: "pipeline spec", "ablation file"; a bare name is a shipped one)."""
    file = resolve_file(path, kind)
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
