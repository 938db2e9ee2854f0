"""The text rules behind the semantic filters (``scot_data.triplets.filters``): content
words, the edit a modification names, loops, copies of the prompt's few-shot examples and
the similarity band. Pure functions of strings and numbers: light, no model, no table."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise

from scot_data.triplets.prompts import PromptTemplate
from scot_data.triplets.validate import normalise

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


# --- the rules ----------------------------------------------------------------------------


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
