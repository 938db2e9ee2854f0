"""A drawing's object cut out of its paper: the ink, plus the paper it encloses, as a mask."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

# A pixel is ink when its darkest channel is below this (anti-aliased paper stays paper).
WHITE_LEVEL = 235
# Drawings with less ink than this share of the canvas are nearly blank.
MIN_INK_SHARE = 0.02
# Drawings with more ink than this share of the canvas are pictures, not objects on paper.
MAX_INK_SHARE = 0.85
# Drawings filling more than this share of their own bounding box are panels (a filled
# rectangle behind the object): they composite as a box, not as the object.
MAX_BOX_FILL = 0.97


@dataclass(frozen=True)
class Cutout:
    """An object cropped to its ink, with its mask (interior white parts count as object)."""

    rgb: Image.Image
    mask: Image.Image


def _on_white(image: Image.Image) -> Image.Image:
    """RGB with any transparency flattened onto white paper."""
    if image.mode in ("RGBA", "LA", "P") and (image.mode != "P" or "transparency" in image.info):
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(paper, rgba).convert("RGB")
    return image.convert("RGB")


def fill_holes(ink: np.ndarray) -> np.ndarray:
    """``ink`` plus the paper it encloses: only paper reachable from the border stays paper.

    A penguin's white belly is part of the object; left out, a coloured background would
    show through it.
    """
    paper = np.pad(~ink, 1, constant_values=True)
    outside = np.zeros_like(paper)
    outside[0, :] = outside[-1, :] = outside[:, 0] = outside[:, -1] = True
    while True:
        grown = outside.copy()
        grown[1:, :] |= outside[:-1, :]
        grown[:-1, :] |= outside[1:, :]
        grown[:, 1:] |= outside[:, :-1]
        grown[:, :-1] |= outside[:, 1:]
        grown &= paper
        if np.array_equal(grown, outside):
            return ~outside[1:-1, 1:-1]
        outside = grown


def load_cutout(uri: str) -> Cutout | None:
    """The object of a drawing cut out of its paper, or None when it would composite badly."""
    try:
        with Image.open(uri) as image:
            rgb = _on_white(image)
    except (OSError, ValueError):
        return None
    mask = fill_holes(np.asarray(rgb).min(axis=2) < WHITE_LEVEL)
    ink_share = float(mask.mean())
    if not MIN_INK_SHARE <= ink_share <= MAX_INK_SHARE:
        return None
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
    if mask.sum() > MAX_BOX_FILL * (box[2] - box[0]) * (box[3] - box[1]):
        return None
    alpha = Image.fromarray(mask.astype(np.uint8) * 255, "L")
    return Cutout(rgb.crop(box), alpha.crop(box))
