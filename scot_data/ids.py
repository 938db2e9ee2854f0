"""Stable identifiers: the same input always gets the same id, on any machine.

Ids are short BLAKE2b digests of the parts that define a thing, joined by a separator
that cannot occur in ordinary text, so ("ab", "c") and ("a", "bc") never collide.
"""

from __future__ import annotations

import hashlib

_SEPARATOR = "\x1f"
ID_HEX_CHARS = 20


def utf8_problem(text: str) -> str | None:
    """Why ``text`` has no UTF-8 form, or None: JSON's ``"\\ud800"`` escape decodes to a lone
    surrogate, valid in a Python string but not encodable, so no id or Parquet cell can hold it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"lone surrogate {text[exc.start]!r} at character {exc.start}"
    return None


def stable_id(*parts: str) -> str:
    """Return a 20-hex-character id derived from ``parts`` only (each must be valid UTF-8)."""
    try:
        data = _SEPARATOR.join(parts).encode("utf-8")
    except UnicodeEncodeError:
        number, problem = next((n, p) for n, p in enumerate(map(utf8_problem, parts), start=1) if p)
        raise ValueError(f"id part {number} is not valid UTF-8 text ({problem})") from None
    return hashlib.blake2b(data, digest_size=ID_HEX_CHARS // 2).hexdigest()


def image_id(source: str, image_key: str) -> str:
    """One id per distinct image of a source (the key is the image's path or name there)."""
    return stable_id("image", source, image_key)


def caption_id(source: str, image_key: str, caption: str) -> str:
    """One id per distinct (image, caption) pair of a source."""
    return stable_id("caption", source, image_key, caption)


def sample_rank(seed: int, item_id: str) -> str:
    """A seeded sort key: ordering ids by it is a deterministic random permutation.

    Sampling the first N items in this order picks the same items whatever order the
    source lists them in, and a larger N keeps every item a smaller N picked.
    """
    return stable_id("sample", str(seed), item_id)
