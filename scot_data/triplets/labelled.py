"""Precision and recall of the filters on labelled triplets, and the similarity band fitted
on one half of them (``scot triplets score-labelled``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from scot_data import ids
from scot_data.triplets.checks import FewShot
from scot_data.triplets.filters import FILTERS, FilterConfig, find_problems
from scot_data.triplets.prompts import load_prompt

LabelledHalf = Literal["fit", "report"]
LABELLED_SPLIT_SEED = 0


@dataclass(frozen=True)
class FilterScore:
    """How one filter setting treats labelled triplets (label ``good`` or ``bad``)."""

    good: int
    bad: int
    good_kept: int
    bad_kept: int

    @property
    def kept(self) -> int:
        return self.good_kept + self.bad_kept

    @property
    def precision(self) -> float:
        """Share of kept triplets that are good (the training set's quality)."""
        return self.good_kept / self.kept if self.kept else 0.0

    @property
    def recall(self) -> float:
        """Share of good triplets kept (what the filter costs)."""
        return self.good_kept / self.good if self.good else 0.0

    @property
    def bad_drop_rate(self) -> float:
        return (self.bad - self.bad_kept) / self.bad if self.bad else 0.0


def labelled_half(
    rows: Sequence[Mapping[str, Any]], half: LabelledHalf, seed: int = LABELLED_SPLIT_SEED
) -> list[Mapping[str, Any]]:
    """The ``fit`` or ``report`` half of a labelled set, so that precision and recall are
    reported on triplets the band was not fitted on.

    Each label's triplets are ordered by ``ids.sample_rank(seed, triplet_id)`` and the first
    half (rounded up) is ``fit``: split per label because good triplets are few (15 of 150
    in the fixture) and a plain hash split can leave one half with a third of them; by id,
    so the halves do not depend on the rows' order. Rows keep their order.
    """
    fit: set[str] = set()
    for label in {r["label"] for r in rows}:
        ranked = sorted(
            (r["triplet_id"] for r in rows if r["label"] == label), key=lambda i: ids.sample_rank(seed, i)
        )
        fit.update(ranked[: (len(ranked) + 1) // 2])
    return [r for r in rows if (r["triplet_id"] in fit) == (half == "fit")]


def select_model(rows: Sequence[Mapping[str, Any]], model: str | None) -> list[Mapping[str, Any]]:
    """The rows one LLM wrote (their ``model`` field), or every row for ``None``; a set that
    mixes models is scored per model, each with its own band and halves."""
    if model is None:
        return list(rows)
    chosen = [r for r in rows if r.get("model") == model]
    if not chosen:
        known = sorted({str(r.get("model")) for r in rows})
        raise ValueError(f"no rows with model {model!r} (models: {', '.join(known)})")
    return chosen


def fit_band(similarities: Sequence[float], labels: Sequence[str]) -> tuple[float, float]:
    """(low, high): the band that keeps every ``good`` triplet with the widest margin, each
    edge midway between the outermost good cosine and the nearest ``bad`` one beyond it
    (-1.0 or 1.0 where no bad one lies beyond: there is nothing to drop on that side).

    Every good is kept because the band is a coarse check for unrelated text and unchanged
    captions, and a labelled set with a handful of goods cannot tell which of them a
    tighter band may cost; midway leaves the most room for goods the set does not hold.
    """
    good = [s for s, label in zip(similarities, labels, strict=True) if label == "good"]
    bad = [s for s, label in zip(similarities, labels, strict=True) if label == "bad"]
    if not good:
        raise ValueError("fit_band needs at least one good triplet")
    lowest, highest = min(good), max(good)
    below, above = [s for s in bad if s < lowest], [s for s in bad if s > highest]
    low = (lowest + max(below)) / 2 if below else -1.0
    high = (highest + min(above)) / 2 if above else 1.0
    return low, high


def score_labelled(
    rows: Sequence[Mapping[str, Any]], cfg: FilterConfig, half: LabelledHalf | None = None
) -> dict[str, FilterScore]:
    """Scores with no filter (``unfiltered``), each filter of ``cfg`` alone, and all of them
    together (``all``), on every row or on one :func:`labelled_half`; each row needs
    triplet_id, caption, modification, modified_caption, label and similarity (the
    caption/modified-caption cosine)."""
    if half is not None:
        rows = labelled_half(rows, half)
    shots = FewShot.from_prompt(load_prompt(cfg.prompt))
    everything = cfg.model_copy(update={name: True for name in FILTERS})
    problems = [set(find_problems(r, r["similarity"], everything, shots)) for r in rows]
    good = [r["label"] == "good" for r in rows]
    settings = {"unfiltered": set(), **{name: {name} for name in cfg.enabled()}, "all": set(cfg.enabled())}
    return {name: _score(good, [not (p & on) for p in problems]) for name, on in settings.items()}


def _score(good: list[bool], kept: list[bool]) -> FilterScore:
    good_kept = sum(g and k for g, k in zip(good, kept))
    return FilterScore(sum(good), len(good) - sum(good), good_kept, sum(kept) - good_kept)


def labelled_report(scores: Mapping[str, FilterScore]) -> str:
    """``score_labelled``'s result as a text table, one line per setting."""
    lines = [f"{'filter':16} {'kept':>4} {'precision':>9} {'recall':>6} {'bad dropped':>11}"]
    for name, s in scores.items():
        lines.append(f"{name:16} {s.kept:4d} {s.precision:9.3f} {s.recall:6.3f} {s.bad_drop_rate:11.3f}")
    return "\n".join(lines)
