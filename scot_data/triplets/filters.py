"""Semantic filters over finished triplets: drop edits that pass the format checks but are
not edits (``shared/DESIGN.md`` section 5: read by a person, only ~2-3 in 30 of the
embedded 135M model's triplets are real, consistent edits).

Four switchable filters, applied in a fixed order, most specific diagnosis first, so the
reason a triplet is dropped under says *why* it is bad rather than only that it is:

1. ``few_shot_copy``: the answer copies a few-shot example of the prompt.
2. ``repetition``: the answer loops ("clock clock", a phrase written twice).
3. ``edit_words``: the words the modification names are not the difference between the
   caption and the modified caption (or the modified caption is itself an instruction).
4. ``similarity_band``: caption and modified caption embed too far apart (unrelated text)
   or too close (no real change).

A triplet counts under the first filter that drops it; each filter's count on its own is
reported too. This module is the registry (:data:`FILTER_SPECS`: one declaration per filter
drives its switch on :class:`FilterConfig`, its ``scot triplets filter`` flag and its drop
counts) and stays light; the rules are :mod:`~scot_data.triplets.checks`, the stage that
writes a filtered triplets folder is :mod:`~scot_data.triplets.filter_stage`, the precision
and recall on labelled triplets :mod:`~scot_data.triplets.labelled`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, create_model, model_validator

from scot_data.triplets.checks import (
    FewShot,
    band_problem,
    edit_words_problem,
    few_shot_problem,
    repetition_problem,
)
from scot_data.triplets.config import DEFAULT_PROMPT
from scot_data.triplets.prompts import load_prompt

Row = Mapping[str, Any]


@dataclass(frozen=True)
class Filter:
    """One semantic filter, declared once in :data:`FILTER_SPECS`: its switch on
    :class:`FilterConfig` (same name, default ``default``), its ``--name/--no-name`` flag of
    ``scot triplets filter``, its place in :func:`find_problems` and its drop counts."""

    name: str
    description: str
    rank: int  # diagnosis order: 1 is checked first; a triplet counts under the first that drops it
    check: Callable[[Row, float | None, FilterConfig, FewShot | None], str | None]
    default: bool = True

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def _few_shot_check(row: Row, _: float | None, cfg: FilterConfig, shots: FewShot | None) -> str | None:
    if shots is None:
        return None
    caption, modification, modified = row["caption"], row["modification"], row["modified_caption"]
    return few_shot_problem(caption, modification, modified, shots, cfg.copy_jaccard)


def _repetition_check(row: Row, _: float | None, cfg: FilterConfig, __: FewShot | None) -> str | None:
    modification, modified = row["modification"], row["modified_caption"]
    return repetition_problem(modification, modified, cfg.max_word_repeats, cfg.loop_ngram)


def _edit_words_check(row: Row, _: float | None, __: FilterConfig, ___: FewShot | None) -> str | None:
    return edit_words_problem(row["caption"], row["modification"], row["modified_caption"])


def _band_check(_: Row, similarity: float | None, cfg: FilterConfig, __: FewShot | None) -> str | None:
    return None if similarity is None else band_problem(similarity, cfg.low, cfg.high)


# Declared in the order of FilterConfig's fields and of the CLI flags; ``rank`` orders the checks.
FILTER_SPECS: tuple[Filter, ...] = (
    Filter("edit_words", "the words the modification names are the caption/modified-caption difference",
           3, _edit_words_check),
    Filter("similarity_band", "caption and modified caption embed neither too far apart nor too close",
           4, _band_check),
    Filter("few_shot_copy", "the answer does not copy a few-shot example of the prompt", 1, _few_shot_check),
    Filter("repetition", "the answer does not loop (a word or phrase repeated)", 2, _repetition_check),
)  # fmt: skip
FILTER_ORDER: tuple[Filter, ...] = tuple(sorted(FILTER_SPECS, key=lambda f: f.rank))
FILTERS = tuple(f.name for f in FILTER_ORDER)
_SWITCHES: dict[str, Any] = {
    f.name: (bool, Field(f.default, description=f.description)) for f in FILTER_SPECS
}
_FilterSwitches = create_model(
    "_FilterSwitches", __config__=ConfigDict(extra="forbid", frozen=True), **_SWITCHES
)


class FilterConfig(_FilterSwitches):  # type: ignore[misc,valid-type]
    """Which filters run (one switch per :data:`FILTER_SPECS` entry) and their thresholds.

    The band's defaults are :func:`fit_band` on the ``fit`` half of
    ``tests/fixtures/labelled_triplets.jsonl`` (the demo's lit-mini text tower): 0.197 and
    0.877, midway between the outermost goods (0.217, 0.875) and the nearest bads beyond
    them (0.178, 0.879), rounded to two decimals; below sits unrelated text, above
    paraphrases. A whole-subject swap, "make it a unicorn", is a real edit with a low cosine,
    hence the low floor. Precision and recall are reported on the other half
    (``score_labelled(..., half="report")``). Another encoder spreads cosines differently:
    re-fit there.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    low: float = Field(0.20, ge=-1.0, le=1.0, description="lowest caption/modified-caption cosine kept")
    high: float = Field(0.88, ge=-1.0, le=1.0, description="highest caption/modified-caption cosine kept")
    copy_jaccard: float = Field(0.8, gt=0.0, le=1.0, description="token-set Jaccard that counts as a copy")
    max_word_repeats: int = Field(3, ge=2, description="a content word this often in one text is a loop")
    loop_ngram: int = Field(4, ge=2, description="a phrase of this many words written twice is a loop")
    prompt: Path = Field(DEFAULT_PROMPT, description="the prompt whose few-shot examples must not be copied "
                         "(a shipped template's name or a YAML file)")

    @model_validator(mode="after")
    def _band_is_ordered(self) -> FilterConfig:
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self

    def enabled(self) -> tuple[str, ...]:
        return tuple(name for name in FILTERS if getattr(self, name))


def find_problems(
    row: Mapping[str, Any], similarity: float | None, cfg: FilterConfig, shots: FewShot | None
) -> dict[str, str]:
    """Every enabled filter that drops ``row`` -> why, in ``FILTERS`` order (the first key
    is the reason the stage records)."""
    found = {f.name: f.check(row, similarity, cfg, shots) for f in FILTER_ORDER if getattr(cfg, f.name)}
    return {name: detail for name, detail in found.items() if detail}


def load_shots(cfg: FilterConfig) -> FewShot | None:
    return FewShot.from_prompt(load_prompt(cfg.prompt)) if cfg.few_shot_copy else None
