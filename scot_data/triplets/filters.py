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
reported too. :func:`filter_triplets` writes an ordinary finished triplets-stage directory
(same Parquet schema), so ``scot embed`` and ``scot train`` read it unchanged.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import ConfigDict, Field, create_model, model_validator

from scot_data import ids, stages
from scot_data.atomic import atomic_write_json, atomic_write_parquet
from scot_data.embed.records import text_id
from scot_data.embed.view import load_embeddings
from scot_data.encoders import create_encoder
from scot_data.encoders.base import Encoder
from scot_data.errors import ScotInputError
from scot_data.manifest import (
    MANIFEST_NAME,
    InputRef,
    fingerprint_input,
    finished_input,
    finished_summary,
    is_complete,
    read_manifest,
    stage_fingerprint,
    write_manifest,
)
from scot_data.outdir import writes_folder
from scot_data.triplets.config import DEFAULT_PROMPT
from scot_data.triplets.prompts import PromptTemplate, load_prompt
from scot_data.triplets.records import (
    PARQUET_OPTIONS,
    REJECTS_FILE,
    REJECTS_SCHEMA,
    STAGE,
    STATS_FILE,
    TRIPLETS_FILE,
    TripletReject,
    to_table,
)
from scot_data.triplets.validate import normalise

LabelledHalf = Literal["fit", "report"]
LABELLED_SPLIT_SEED = 0

# Words that carry no edit: function words, the instruction's own verbs, positions (an
# answer may drop "next to it") and colour nouns ("change the colour to red" names red).
# "background" stays a content word: "put it on a red background" of a red apple names
# nothing else new.
STOPWORDS = frozenset(
    """a an the this that these those some any each every all its it they them their he she his her him
    i you your we our one of in on at to into onto from with without by for as about than instead over
    under above below behind beside next near around inside outside between through up down out off
    left right top bottom front back side middle center centre and or but so then is are be was were
    been being do does did has have had can will make made turn change replace add remove put place show
    set give use get take move see let keep become transform convert swap switch away part
    version new other more less very also just only now same color colour colored coloured""".split()  # noqa: SIM905
)
INSTRUCTION_VERBS = frozenset(
    "make remove add replace turn put change move take set use get place show give let delete erase swap".split()  # noqa: SIM905
)
_POSSESSIVE = re.compile(r"'s\b")
_REMOVAL = re.compile(
    r"\b(?:remove|removes|removing|delete|erase|without|take away|take out|get rid of|no)\b"
    r"(?P<span>[^,;.]*?)(?=\b(?:from|and|then|but|leaving)\b|[,;.]|$)"
)


# --- words -------------------------------------------------------------------------------


def singular(word: str) -> str:
    """Naive plural stripping, the same on every side of a comparison ("apples" -> "apple")."""
    if len(word) <= 3 or not word.endswith("s") or word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "xes", "sses")):
        return word[:-2]
    return word[:-1]


def tokens(text: str) -> list[str]:
    """Lower-case words without punctuation or possessives, plurals stripped."""
    return [singular(w) for w in normalise(_POSSESSIVE.sub("", text.lower())).split()]


def is_content(word: str) -> bool:
    return word not in STOPWORDS and singular(word) not in STOPWORDS


def content_words(text: str) -> set[str]:
    return {w for w in tokens(text) if is_content(w)}


def removed_words(modification: str) -> set[str]:
    """Content words the modification takes away ("remove the hat from it" -> {hat})."""
    spans = (m.group("span") for m in _REMOVAL.finditer(modification.lower()))
    return {w for span in spans for w in content_words(span)}


# --- the filters ---------------------------------------------------------------------------


def edit_words_problem(caption: str, modification: str, modified: str) -> str | None:
    """The modification's new words must appear in the modified caption, its removed words
    must be in the caption and gone from the modified caption, and it must name something.

    Only words the caption lacks must appear: "replace the dog with a cat" names the dog,
    which a correct modified caption no longer holds.
    """
    first = tokens(modified)[:1]
    if first and first[0] in INSTRUCTION_VERBS:
        return f"the modified caption is an instruction ({first[0]!r}), not a description"
    removed = removed_words(modification)
    before, after = content_words(caption), content_words(modified)
    new = content_words(modification) - removed - before
    if removed - before:
        return f"removes {_words(removed - before)}, which the caption does not name"
    if removed & after:
        return f"removes {_words(removed & after)}, but the modified caption keeps it"
    if new - after:
        return f"names {_words(new - after)}, missing from the modified caption"
    if not new and not removed:
        return "names nothing the caption does not already have"
    return None


def _words(words: Iterable[str]) -> str:
    return ", ".join(repr(w) for w in sorted(words))


def repetition_problem(
    modification: str, modified: str, max_word_repeats: int, loop_ngram: int
) -> str | None:
    """A word twice in a row, a content word ``max_word_repeats`` times, or a phrase of
    ``loop_ngram`` words written twice (covers a modified caption repeating the
    modification), in either generated text."""
    for name, text in (("modification", modification), ("modified caption", modified)):
        problem = _loop_in(tokens(text), max_word_repeats, loop_ngram)
        if problem:
            return f"{name}: {problem}"
    return None


def _loop_in(words: list[str], max_word_repeats: int, loop_ngram: int) -> str | None:
    for a, b in pairwise(words):
        if a == b and is_content(a):
            return f"{a!r} twice in a row"
    for word, count in Counter(w for w in words if is_content(w)).most_common(1):
        if count >= max_word_repeats:
            return f"{word!r} {count} times"
    for phrase, count in Counter(zip(*(words[i:] for i in range(loop_ngram)))).most_common(1):
        if count >= 2:
            return f"{' '.join(phrase)!r} written {count} times"
    return None


@dataclass(frozen=True)
class FewShot:
    """What a copy of the prompt's examples looks like: each example text's token set, and
    its distinctive phrases (adjacent content-word pairs such as "snowy mountain")."""

    texts: tuple[tuple[str, frozenset[str]], ...]
    phrases: tuple[tuple[str, str], ...]

    @classmethod
    def from_prompt(cls, prompt: PromptTemplate) -> FewShot:
        fields = ("modification", "modified_caption")
        sources = [t for ex in prompt.examples for t in (ex.caption, *(ex.answer[f] for f in fields))]
        texts = tuple((t, frozenset(tokens(t))) for t in sources)
        pairs = {p for t in sources for p in _content_pairs(tokens(t))}
        return cls(texts, tuple(sorted(pairs)))


def _content_pairs(words: list[str]) -> list[tuple[str, str]]:
    return [(a, b) for a, b in pairwise(words) if is_content(a) and is_content(b)]


def few_shot_problem(
    caption: str, modification: str, modified: str, shots: FewShot, jaccard: float
) -> str | None:
    """Near-copy of an example text (token-set Jaccard), or an example's phrase whose words
    the caption lacks entirely ("a smiling woman with long hair" for "arrow (shape)")."""
    for text in (modification, modified):
        mine = frozenset(tokens(text))
        for example, theirs in shots.texts:
            if mine and len(mine & theirs) / len(mine | theirs) >= jaccard:
                return f"copies the example {example!r}"
    before = set(tokens(caption))
    written = set(_content_pairs(tokens(modification))) | set(_content_pairs(tokens(modified)))
    for a, b in shots.phrases:
        if (a, b) in written and a not in before and b not in before:
            return f"copies the example phrase '{a} {b}'"
    return None


def band_problem(similarity: float, low: float, high: float) -> str | None:
    """Too low: the modified caption is unrelated text; too high: nothing really changed."""
    if similarity < low:
        return f"cosine {similarity:.3f} < {low} (unrelated text)"
    if similarity > high:
        return f"cosine {similarity:.3f} > {high} (no real change)"
    return None


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
    prompt: Path = Field(DEFAULT_PROMPT, description="the prompt whose few-shot examples must not be copied")

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


# --- precision and recall on labelled triplets -------------------------------------------


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


# --- embeddings ----------------------------------------------------------------------------


@dataclass
class Similarities:
    """Caption/modified-caption cosines and where their vectors came from."""

    values: np.ndarray
    cached: int = 0
    encoded: int = 0


def caption_similarities(
    captions: list[str], modified: list[str], embeddings_dir: Path | None, encoder: str | Encoder | None
) -> Similarities:
    """Cosines from a finished embedding cache (by ``text_id``); texts it lacks are encoded
    with ``encoder``, which is built only then, so a complete cache needs no model."""
    texts = sorted(set(captions) | set(modified))
    vectors, cached = _cached_vectors(texts, embeddings_dir)
    missing = [t for t in texts if t not in vectors]
    if missing:
        vectors.update(_encode(missing, embeddings_dir, encoder))
    a = np.stack([vectors[t] for t in captions]) if captions else np.zeros((0, 1), np.float32)
    b = np.stack([vectors[t] for t in modified]) if modified else np.zeros((0, 1), np.float32)
    return Similarities((a * b).sum(axis=1), cached, len(missing))


def _cached_vectors(texts: list[str], embeddings_dir: Path | None) -> tuple[dict[str, np.ndarray], int]:
    if embeddings_dir is None:
        return {}, 0
    cache = load_embeddings(embeddings_dir, "texts")
    rows = cache.index_of(pa.array([text_id(t) for t in texts], pa.string()))
    found = {t: _unit(cache.matrix[r]) for t, r in zip(texts, rows) if r >= 0}
    return found, len(found)


def _encode(
    texts: list[str], embeddings_dir: Path | None, encoder: str | Encoder | None
) -> dict[str, np.ndarray]:
    if encoder is None:
        where = f"the cache {embeddings_dir}" if embeddings_dir else "no --embeddings cache"
        raise ScotInputError(
            f"similarity_band: {len(texts)} texts have no vector in {where} and no --encoder is given"
        )
    if isinstance(encoder, str):
        encoder = create_encoder(encoder)
    _check_same_encoder(encoder, embeddings_dir)
    matrix = encoder.encode_texts(texts).numpy()
    return {t: _unit(v) for t, v in zip(texts, matrix)}


def _check_same_encoder(encoder: Encoder, embeddings_dir: Path | None) -> None:
    """Cached and fresh vectors are only comparable from the same weights (precision may
    differ: a GPU's bf16 vectors match a CPU cache's to ~1e-3)."""
    cached = (
        ((read_manifest(embeddings_dir) or {}).get("encoder") or {}).get("identity")
        if embeddings_dir
        else None
    )
    mine = encoder.identity
    if cached and (cached["model_name"], cached["weights_sha256"]) != (mine.model_name, mine.weights_sha256):
        raise ScotInputError(f"--encoder is {mine.model_name} ({mine.weights_sha256[:12]}), "
                             f"not the encoder of the cache {embeddings_dir}")  # fmt: skip


def _unit(vector: np.ndarray) -> np.ndarray:
    v = vector.astype(np.float32)
    return v / max(float(np.linalg.norm(v)), 1e-12)


# --- the stage -----------------------------------------------------------------------------


@dataclass
class FilterSummary:
    """What one run dropped and why; printed by the CLI and stored as ``stats.json``."""

    out_dir: str
    input_triplets: int = 0
    triplets: int = 0
    dropped: int = 0
    rejects: int = 0
    dropped_by: dict[str, int] = field(default_factory=dict)
    would_drop_alone: dict[str, int] = field(default_factory=dict)
    filters: list[str] = field(default_factory=list)
    texts_cached: int = 0
    texts_encoded: int = 0
    edit_types: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    skipped: bool = False


@writes_folder(STAGE)
def filter_triplets(
    triplets_dir: str | Path,
    out_dir: str | Path,
    cfg: FilterConfig,
    embeddings_dir: str | Path | None = None,
    encoder: str | Encoder | None = None,
    force: bool = False,
) -> FilterSummary:
    """Write the triplets of ``triplets_dir`` that pass every enabled filter to ``out_dir``
    as a finished triplets stage; a finished run with the same inputs and config is skipped."""
    started = time.perf_counter()
    source, out = Path(triplets_dir), Path(out_dir)
    embeddings = Path(embeddings_dir) if embeddings_dir is not None and cfg.similarity_band else None
    if out.resolve() == source.resolve():
        raise ScotInputError(f"--out {out} is the input directory; write the filtered triplets elsewhere")
    inputs = _inputs(source, embeddings, cfg)
    config = _stage_config(cfg, encoder)
    if is_complete(out, STAGE, stage_fingerprint(STAGE, config, inputs)):
        return finished_summary(out, FilterSummary)
    (out / MANIFEST_NAME).unlink(missing_ok=True)
    table = pq.read_table(source / TRIPLETS_FILE)
    sims = _similarities(table, cfg, embeddings, encoder)
    shots = load_shots(cfg)
    problems = [find_problems(r, s, cfg, shots) for r, s in zip(table.to_pylist(), _floats(sims, table))]
    summary = _write(
        source, out, table, problems, FilterSummary(out_dir=str(out), filters=list(cfg.enabled()))
    )
    summary.texts_cached, summary.texts_encoded = (sims.cached, sims.encoded) if sims else (0, 0)
    summary.seconds = round(time.perf_counter() - started, 2)
    _finish(out, config, inputs, summary)
    return summary


def _inputs(source: Path, embeddings: Path | None, cfg: FilterConfig) -> list[InputRef]:
    """The input triplets' and cache's manifests (they hash every file) and the prompt."""
    inputs = [finished_input(source, STAGE, "--triplets")]
    if embeddings is not None:
        inputs.append(finished_input(embeddings, stages.EMBED, "--embeddings"))
    if cfg.few_shot_copy:
        inputs.append(fingerprint_input(cfg.prompt))
    return inputs


def _stage_config(cfg: FilterConfig, encoder: str | Encoder | None) -> dict[str, Any]:
    encoder_key = encoder if isinstance(encoder, str) or encoder is None else encoder.identity.key()
    return {"filters": cfg.model_dump(mode="json"), "encoder": encoder_key if cfg.similarity_band else None}


def _similarities(
    table: pa.Table, cfg: FilterConfig, embeddings: Path | None, encoder: str | Encoder | None
) -> Similarities | None:
    if not cfg.similarity_band:
        return None
    return caption_similarities(
        table.column("caption").to_pylist(), table.column("modified_caption").to_pylist(), embeddings, encoder
    )


def _floats(sims: Similarities | None, table: pa.Table) -> list[float | None]:
    return [float(v) for v in sims.values] if sims is not None else [None] * table.num_rows


def _write(
    source: Path, out: Path, table: pa.Table, problems: list[dict[str, str]], summary: FilterSummary
) -> FilterSummary:
    """Kept rows (the input's schema, untouched), then rejects: the input's plus ours."""
    keep = pa.array([not p for p in problems])
    kept = table.filter(keep)
    dropped = [_reject(row, p) for row, p in zip(table.to_pylist(), problems) if p]
    rejects = pa.concat_tables([_input_rejects(source), to_table(dropped, REJECTS_SCHEMA)])
    atomic_write_parquet(out / TRIPLETS_FILE, kept, **PARQUET_OPTIONS)
    atomic_write_parquet(out / REJECTS_FILE, rejects, **PARQUET_OPTIONS)
    summary.input_triplets, summary.triplets, summary.dropped = table.num_rows, kept.num_rows, len(dropped)
    summary.rejects = rejects.num_rows
    summary.dropped_by = dict(Counter(next(iter(p)) for p in problems if p).most_common())
    summary.would_drop_alone = {name: sum(name in p for p in problems) for name in summary.filters}
    edit_types = pc.value_counts(kept.column("edit_type")).to_pylist() if kept.num_rows else []
    summary.edit_types = {e["values"]: e["counts"] for e in sorted(edit_types, key=lambda e: -e["counts"])}
    return summary


def _reject(row: dict[str, Any], problems: dict[str, str]) -> TripletReject:
    name, detail = next(iter(problems.items()))
    return TripletReject(row["caption_id"], row["caption"], json.dumps(row), f"{name}: {detail}",
                         row["llm_model"], row["prompt_version"])  # fmt: skip


def _input_rejects(source: Path) -> pa.Table:
    path = source / REJECTS_FILE
    return (
        pq.read_table(path).select(REJECTS_SCHEMA.names).cast(REJECTS_SCHEMA)
        if path.exists()
        else to_table([], REJECTS_SCHEMA)
    )


def _finish(out: Path, config: dict[str, Any], inputs: list[InputRef], summary: FilterSummary) -> None:
    """Stats, then the manifest (last)."""
    atomic_write_json(out / STATS_FILE, asdict(summary))
    files = {TRIPLETS_FILE: summary.triplets, REJECTS_FILE: summary.rejects, STATS_FILE: None}
    write_manifest(
        out,
        STAGE,
        config,
        inputs,
        files,
        extra={"stats": asdict(summary), "filtered_from": str(inputs[0].path)},
    )
