"""Stable identifiers: the same input always gets the same id, on any machine.

Ids are short BLAKE2b digests of the parts that define a thing, joined by a separator
that cannot occur in ordinary text, so ("ab", "c") and ("a", "bc") never collide.
"""

from __future__ import annotations

import hashlib

_SEPARATOR = "\x1f"
ID_HEX_CHARS = 20


def stable_id(*parts: str) -> str:
    """Return a 20-hex-character id derived from ``parts`` only."""
    digest = hashlib.blake2b(_SEPARATOR.join(parts).encode("utf-8"), digest_size=ID_HEX_CHARS // 2)
    return digest.hexdigest()


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
