"""Rule-based triplets from the caption alone, in the spirit of template-generated CIR data.

One edit per caption, chosen and phrased by a generator seeded with the caption id, so the
output is deterministic: swap a colour word, change a count, replace an object word by an
object another caption names, or put the subject on a coloured background. It needs no
LLM, and it is the baseline that the paper's LLM triplets are compared against.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence

from scot_data import ids
from scot_data.triplets.config import TEMPLATE_VERSION as TEMPLATE_VERSION  # the template backend's version
from scot_data.triplets.records import CaptionIn

COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "gray")
COUNTS = ("two", "three", "four", "five", "six")
OBJECTS = (
    "airplane", "apple", "ball", "banana", "bear", "bed", "bench", "bicycle", "bird", "boat", "book", "bottle",
    "bowl", "box", "bus", "butterfly", "cake", "camera", "car", "cat", "chair", "clock", "computer", "cow", "cup",
    "dog", "dolphin", "door", "duck", "elephant", "fish", "flag", "flower", "fork", "frog", "giraffe", "guitar",
    "hat", "horse", "house", "key", "kite", "knife", "lamp", "leaf", "lion", "motorcycle", "mouse", "mushroom",
    "owl", "pen", "penguin", "phone", "piano", "pizza", "rabbit", "rose", "sheep", "shoe", "star", "sun",
    "table", "tiger", "train", "tree", "truck", "umbrella", "violin", "zebra",
)  # fmt: skip


def _word(word: str) -> re.Pattern[str]:
    return re.compile(rf"\b{re.escape(word)}\b", re.IGNORECASE)


def _found(caption: str, vocabulary: Sequence[str]) -> list[str]:
    return [w for w in vocabulary if _word(w).search(caption)]


def _article(noun: str) -> str:
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"


Edit = tuple[str, str, str]  # modification, modified caption, edit type


def colour_edit(caption: str, rng: random.Random, _: Sequence[str]) -> Edit | None:
    present = _found(caption, COLOURS)
    if not present:
        return None
    old = rng.choice(present)
    new = rng.choice([c for c in COLOURS if c not in present])
    phrase = rng.choice(("make it {new} instead of {old}", "change the {old} to {new}", "turn the {old} parts {new}"))
    return phrase.format(old=old, new=new), _word(old).sub(new, caption), "color"


def count_edit(caption: str, rng: random.Random, _: Sequence[str]) -> Edit | None:
    present = _found(caption, COUNTS)
    if not present:
        return None
    old = present[0]
    new = rng.choice([c for c in COUNTS if c != old])
    return f"show {new} instead of {old}", _word(old).sub(new, caption, count=1), "count"


def object_edit(caption: str, rng: random.Random, corpus_objects: Sequence[str]) -> Edit | None:
    present = _found(caption, OBJECTS)
    others = [o for o in corpus_objects if o not in present]
    if not present or not others:
        return None
    old, new = rng.choice(present), rng.choice(others)
    phrase = rng.choice(("replace the {old} with {new_a}", "make it {new_a} instead of {old_a}"))
    modification = phrase.format(old=old, new_a=_article(new), old_a=_article(old))
    return modification, _word(old).sub(new, caption), "object"


def scene_edit(caption: str, rng: random.Random, _: Sequence[str]) -> Edit:
    backdrop = _article(rng.choice(COLOURS[:-3])) + " background"
    phrase = rng.choice(("put it on {b}", "place it against {b}"))
    return phrase.format(b=backdrop), f"{caption.rstrip('.')} on {backdrop}", "scene"


EDITS: tuple[Callable[[str, random.Random, Sequence[str]], Edit | None], ...] = (
    colour_edit,
    count_edit,
    object_edit,
    scene_edit,
)


def corpus_objects(captions: Sequence[CaptionIn]) -> list[str]:
    """The vocabulary objects that some caption of the collection names."""
    text = "\n".join(c.caption for c in captions)
    return _found(text, OBJECTS)


def template_edit(caption: CaptionIn, seed: int, objects: Sequence[str]) -> Edit:
    """One deterministic edit of ``caption``; object, colour and count edits where they apply."""
    rng = random.Random(ids.stable_id("template", str(seed), caption.caption_id))
    applicable = [e for e in (edit(caption.caption, rng, objects) for edit in EDITS) if e is not None]
    specific = [e for e in applicable if e[2] != "scene"]
    return rng.choice(specific) if specific and rng.random() < 0.75 else applicable[-1]
