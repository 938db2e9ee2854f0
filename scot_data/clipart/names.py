"""Object names of clip-art captions: the name of a drawing, whether a scene text can use
it, the text tower's word vocabulary, and "a"/"an". Shared by the scene builder and the
clip-art benchmark.
"""

from __future__ import annotations

import re
from functools import lru_cache

_NAME = re.compile(r"[a-z]+(?: [a-z]+)*")
_SPACES = re.compile(r"\s+")
_LEADING_ARTICLE = re.compile(r"^(?:a|an|the) (?=\S)")
# Plural endings: a name like "dead frogs" is several objects and reads badly after "a".
_SINGULAR_S_ENDINGS = ("ss", "us", "is", "ous")
# First letters and prefixes for "a" or "an" (spelling, not sound, except these).
_AN_PREFIXES_OVERRIDE = ("hour", "honest", "heir")
_A_PREFIXES_OVERRIDE = ("uni", "use", "usu", "eu", "one", "once")


def normalise_name(caption: str) -> str:
    """The object name of a clip-art caption: the text before " (" and ". ", lower case,
    without a leading article (the texts add their own)."""
    head = caption.split(" (", 1)[0].split(". ", 1)[0]
    return _LEADING_ARTICLE.sub("", _SPACES.sub(" ", head.lower()).strip())


def is_usable_name(name: str, max_words: int, vocabulary: frozenset[str] | None = None) -> bool:
    """1..max_words alphabetic words, not plural-looking (the texts put "a"/"the" before it),
    and, given a ``vocabulary``, every word of at least three letters found in it."""
    if not _NAME.fullmatch(name) or len(name.split()) > max_words:
        return False
    if vocabulary is not None and not all(len(w) >= 3 and w in vocabulary for w in name.split()):
        return False
    return not (name.endswith("s") and not name.endswith(_SINGULAR_S_ENDINGS))


@lru_cache(maxsize=1)
def word_vocabulary() -> frozenset[str]:
    """Whole words of the MiniLM tokenizer (30k word pieces, English): a name made of them is
    one the text tower knows, unlike file-name debris ("kgoldrunner", "rpswb") or Italian
    titles ("scolapasta e pentola") that openclipart has many of."""
    from scot_data.encoders.package_data import minilm_dir

    words = (minilm_dir() / "vocab.txt").read_text(encoding="utf-8").split()
    return frozenset(w for w in words if w.isalpha() and w.islower())


def article(phrase: str) -> str:
    """``phrase`` with "a" or "an" in front."""
    if phrase.startswith(_AN_PREFIXES_OVERRIDE):
        return f"an {phrase}"
    if phrase.startswith(_A_PREFIXES_OVERRIDE):
        return f"a {phrase}"
    return f"{'an' if phrase[0] in 'aeiou' else 'a'} {phrase}"
