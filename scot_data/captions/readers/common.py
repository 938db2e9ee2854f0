"""Pieces every reader shares: caption normalisation, candidate construction, path checks."""

from __future__ import annotations

import re
from pathlib import Path

from scot_data import ids
from scot_data.captions.records import Candidate, ImageRef, Reject
from scot_data.errors import ScotInputError

_SPACES = re.compile(r"\s+")
# C0/C1 control characters that are not whitespace (whitespace ones, \s, are collapsed):
# NUL truncates C strings downstream, ESC sequences repaint terminals and reports.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f]")

MAX_CAPTION_CHARS = 2000
"""Longest caption kept (after whitespace is collapsed). Captions are a sentence or a short
paragraph; thousands of characters mean a scraped page or a broken record, which would cost
memory in every later stage and room in every LLM prompt built from it."""


def normalise_caption(text: str) -> str:
    """Collapse whitespace and strip, so the same caption always hashes the same."""
    return _SPACES.sub(" ", text).strip()


def candidate_or_reject(
    source: str, image_key: str, caption: object, image: ImageRef, file: str, record: str
) -> Candidate | Reject:
    """Build a candidate with stable ids, or reject a caption that is missing, not UTF-8 (a
    lone surrogate would otherwise stop the whole run where its id is hashed) or fails
    ``caption_problem``."""
    if not isinstance(caption, str):
        return Reject(file, record, f"caption is {type(caption).__name__}, not text")
    for what, value in (("caption", caption), ("image key", image_key)):
        problem = ids.utf8_problem(value)
        if problem:
            return Reject(file, record, f"{what} is not valid UTF-8 text ({problem})")
    text = normalise_caption(caption)
    problem = caption_problem(caption, text)
    if problem:
        return Reject(file, record, problem)
    return Candidate(
        caption_id=ids.caption_id(source, image_key, text),
        image_id=ids.image_id(source, image_key),
        image_key=image_key,
        caption=text,
        source=source,
        image=image,
        file=file,
        record=record,
    )


def caption_problem(caption: str, text: str) -> str | None:
    """Why a caption (``text`` is its normalised form) is not kept: empty, control
    characters, or longer than ``MAX_CAPTION_CHARS``; None when it is fine."""
    if not text:
        return "empty caption"
    control = _CONTROL.search(caption)
    if control:
        return f"caption has control character {control.group()!r} at character {control.start()}"
    if len(text) > MAX_CAPTION_CHARS:
        return f"caption is {len(text)} characters, over the {MAX_CAPTION_CHARS} maximum"
    return None


def require_path(path: Path, what: str, directory: bool = False) -> Path:
    """Fail with a one-line reason when a required input path is missing."""
    if not path.exists():
        raise ScotInputError(f"{what} not found: {path}")
    if directory and not path.is_dir():
        raise ScotInputError(f"{what} is not a directory: {path}")
    if not directory and not path.is_file():
        raise ScotInputError(f"{what} is not a file: {path}")
    return path
