"""Checks every LLM answer must pass before it becomes a triplet.

Each failed check is a reject reason, so the stats say how much each rule drops.
"""

from __future__ import annotations

import json
import re

from scot_data.triplets.prompts import ANSWER_FIELDS

_NON_WORD = re.compile(r"[^\w\s]")
_SPACES = re.compile(r"\s+")


class AnswerRejected(Exception):
    """The answer cannot be a triplet; the message is the reject reason."""


def normalise(text: str) -> str:
    """Lower case, punctuation dropped, whitespace collapsed: for equality checks only."""
    return _SPACES.sub(" ", _NON_WORD.sub(" ", text.lower())).strip()


def parse_answer(raw: str, truncated: bool = False) -> dict[str, str]:
    """The answer's three fields as stripped strings; raises AnswerRejected."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        suffix = " (cut at max_tokens)" if truncated else ""
        raise AnswerRejected(f"bad json{suffix}: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise AnswerRejected("bad json: not an object")
    fields = {}
    for name in ANSWER_FIELDS:
        value = data.get(name)
        if value is None:
            raise AnswerRejected(f"missing field: {name}")
        if not isinstance(value, str):
            raise AnswerRejected(f"field not text: {name}")
        if not value.strip():
            raise AnswerRejected(f"empty field: {name}")
        fields[name] = _SPACES.sub(" ", value).strip()
    return fields


def check_answer(caption: str, fields: dict[str, str], max_modification_words: int, max_growth_words: int) -> None:
    """Content rules: a real change, bounded lengths, no copied captions."""
    modification, modified = normalise(fields["modification"]), normalise(fields["modified_caption"])
    if modified == normalise(caption):
        raise AnswerRejected("modified caption equals caption")
    if len(modification.split()) > max_modification_words:
        raise AnswerRejected("modification too long")
    if len(modified.split()) > len(caption.split()) + max_growth_words:
        raise AnswerRejected("modified caption too long")
    if modification in (normalise(caption), modified):
        raise AnswerRejected("modification copies a caption")


def edit_label(value: str) -> str:
    """The edit type as a lower-case label."""
    return normalise(value).replace(" ", "_")
