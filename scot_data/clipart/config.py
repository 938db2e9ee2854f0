"""The clip-art look (image size, palette, render version) and the benchmark's settings.

``ClipartBenchConfig`` is the benchmark's config; its look (``render_config``, ``rgb``) is
what scene builds reuse, so training and test scenes share their look but no object.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from PIL import ImageColor
from pydantic import BaseModel, ConfigDict, Field, field_validator

from scot_data.clipart.names import _NAME

# Bump when rendering changes: it is part of every image name, so old images are not reused.
RENDER_VERSION = "1"

EditKind = Literal["replace", "add", "remove", "background", "recolour"]
KINDS: tuple[EditKind, ...] = ("replace", "add", "remove", "background", "recolour")
# Hard negatives built per query (see _edit); ``distractors`` takes the first ones.
HARD_NEGATIVES = 4
# Distinct objects and colours one query draws (A..E; background needs X, Y, Z, W).
OBJECTS_PER_QUERY = 5
COLOURS_PER_QUERY = 4

DEFAULT_COLOURS: dict[str, str] = {
    "red": "#d62020",
    "orange": "#f57c0a",
    "yellow": "#f5d000",
    "green": "#22a03a",
    "blue": "#1f4fd6",
    "purple": "#7b2fb0",
    "pink": "#f06eb4",
    "brown": "#7a4a1e",
}
MIN_COLOURS = COLOURS_PER_QUERY
# val chooses every setting, test reports: disjoint objects, so test stays out of sample.
DEFAULT_SPLITS = {"val": 0.4, "test": 0.6}
_SPLIT_NAME = re.compile(r"[A-Za-z0-9_-]+")


class ClipartBenchConfig(BaseModel):
    """What the clip-art benchmark holds; every field is part of its fingerprint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    splits: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_SPLITS),
        description="split name -> share of the unseen objects (val: choose settings, test: report)",
    )
    queries_per_kind: int = Field(100, ge=1, description="queries of each edit kind, in each split")
    distractors: int = Field(
        4, ge=1, le=HARD_NEGATIVES, description="hard negatives per query (CIRR sets: reference + target + 4)"
    )
    image_size: int = Field(224, ge=32, description="side of the square gallery images, pixels")
    seed: int = Field(0, description="seed of the object choice, the queries and the member order")
    kinds: tuple[EditKind, ...] = Field(KINDS, min_length=1, description="edit kinds to build")
    max_name_words: int = Field(3, ge=1, description="longest object name used, in words")
    known_words: bool = Field(True, description="only names whose words the text tower's vocabulary holds")
    min_objects: int = Field(
        20, ge=OBJECTS_PER_QUERY, description="fewest usable unseen objects each split accepts"
    )
    colours: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_COLOURS),
        description="named colours (name -> '#rrggbb') for backgrounds and tints; keep them far apart",
    )

    @field_validator("kinds")
    @classmethod
    def _distinct_kinds(cls, kinds: tuple[EditKind, ...]) -> tuple[EditKind, ...]:
        if len(set(kinds)) != len(kinds):
            raise ValueError("kinds must be distinct")
        return kinds

    @field_validator("splits")
    @classmethod
    def _valid_splits(cls, splits: dict[str, float]) -> dict[str, float]:
        if not splits:
            raise ValueError("need at least one split")
        for name, share in splits.items():
            if not _SPLIT_NAME.fullmatch(name) or share <= 0:
                raise ValueError(f"split {name!r}: a name of letters, digits, _ or -, and a share above 0")
        return splits

    @field_validator("colours")
    @classmethod
    def _valid_colours(cls, colours: dict[str, str]) -> dict[str, str]:
        if len(colours) < MIN_COLOURS:
            raise ValueError(f"need at least {MIN_COLOURS} colours")
        for name, value in colours.items():
            if not _NAME.fullmatch(name):
                raise ValueError(f"colour name {name!r}: lower-case words only")
            ImageColor.getrgb(value)
        return colours

    def render_config(self) -> dict[str, Any]:
        """What decides a scene's pixels (size, palette, renderer): scene builds reuse the look
        and are fingerprinted by this alone, not by how many queries a benchmark draws."""
        return {"image_size": self.image_size, "colours": self.colours, "render_version": RENDER_VERSION}

    def rgb(self, colour: str) -> tuple[int, int, int]:
        """The (r, g, b) of a named colour of the palette."""
        red, green, blue = ImageColor.getrgb(self.colours[colour])[:3]
        return red, green, blue
