"""Scenes of clip-art objects and their rendering: one object centred or two side by side,
on white or a named colour, optionally tinted; a scene's image name is a hash of everything
that decides its pixels, and its PNG carries no metadata, so the same scene is the same bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from io import BytesIO

from PIL import Image, ImageFilter, ImageOps

from scot_data import ids
from scot_data.clipart.config import RENDER_VERSION, ClipartBenchConfig
from scot_data.clipart.cutout import Cutout
from scot_data.clipart.names import article

IMAGE_PREFIX = "clipart-"

# Softening of the cut-out's edge (pixels), so composited edges are not jagged.
FEATHER_RADIUS = 0.6
# Box an object is fitted into, as shares of the canvas (width, height): a single object,
# and each of two objects side by side (centred near a quarter and three quarters).
SINGLE_BOX = (0.72, 0.72)
PAIR_BOX = (0.44, 0.62)
PAIR_CENTRES = (0.26, 0.74)
# A tint maps the drawing's grey levels black -> colour * TINT_SHADE, mid -> colour,
# white -> colour blended TINT_LIGHT of the way to white: dark lines stay dark, the hue wins.
TINT_SHADE = 0.55
TINT_LIGHT = 0.5


@dataclass(frozen=True)
class ClipartObject:
    """One unseen object: the drawing chosen for its name."""

    name: str
    image_id: str
    image_uri: str


@dataclass(frozen=True)
class Placed:
    """An object in a scene, optionally tinted to a named colour."""

    obj: ClipartObject
    tint: str | None = None


@dataclass(frozen=True)
class Scene:
    """A gallery image: one or two objects (left to right) on white or a named colour."""

    items: tuple[Placed, ...]
    background: str | None = None

    def name(self, cfg: ClipartBenchConfig) -> str:
        """A name that is a hash of everything that decides the pixels."""
        key = {
            "render": RENDER_VERSION,
            "size": cfg.image_size,
            "background": cfg.colours[self.background] if self.background else None,
            "items": [[p.obj.image_id, cfg.colours[p.tint] if p.tint else None] for p in self.items],
        }
        return IMAGE_PREFIX + ids.stable_id("clipart-scene", json.dumps(key, sort_keys=True))


def _tinted(rgb: Image.Image, colour: tuple[int, int, int]) -> Image.Image:
    shade = tuple(round(c * TINT_SHADE) for c in colour)
    light = tuple(round(c + (255 - c) * TINT_LIGHT) for c in colour)
    return ImageOps.colorize(rgb.convert("L"), black=shade, white=light, mid=colour)


def _fit(cutout: Cutout, box: tuple[int, int]) -> Cutout:
    """The cut-out scaled (up or down) to fit ``box`` keeping its aspect, edge feathered."""
    scale = min(box[0] / cutout.rgb.width, box[1] / cutout.rgb.height)
    size = (max(1, round(cutout.rgb.width * scale)), max(1, round(cutout.rgb.height * scale)))
    mask = cutout.mask.resize(size, Image.Resampling.BILINEAR).filter(
        ImageFilter.GaussianBlur(FEATHER_RADIUS)
    )
    return Cutout(cutout.rgb.resize(size, Image.Resampling.LANCZOS), mask)


def render_scene(scene: Scene, cutouts: dict[str, Cutout], cfg: ClipartBenchConfig) -> Image.Image:
    """The scene's pixels: each object fitted into its slot and pasted through its mask."""
    side = cfg.image_size
    paper = cfg.rgb(scene.background) if scene.background else (255, 255, 255)
    canvas = Image.new("RGB", (side, side), paper)
    single = len(scene.items) == 1
    share = SINGLE_BOX if single else PAIR_BOX
    centres = (0.5,) if single else PAIR_CENTRES
    for placed, centre in zip(scene.items, centres):
        cutout = cutouts[placed.obj.image_id]
        if placed.tint:
            cutout = Cutout(_tinted(cutout.rgb, cfg.rgb(placed.tint)), cutout.mask)
        fitted = _fit(cutout, (round(share[0] * side), round(share[1] * side)))
        corner = (round(centre * side - fitted.rgb.width / 2), round((side - fitted.rgb.height) / 2))
        canvas.paste(fitted.rgb, corner, fitted.mask)
    return canvas


def png_bytes(image: Image.Image) -> bytes:
    """PNG without metadata, so the same pixels are the same bytes."""
    buffer = BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def scene_caption(scene: Scene) -> str:
    """A compositional caption: objects left to right with their tint, then the background.

    Scene training captions use it, and each benchmark query records its target's: that
    text used as the query shows how well the encoder finds the answer from its description.
    """
    things = " and ".join(article(f"{p.tint} {p.obj.name}" if p.tint else p.obj.name) for p in scene.items)
    return f"{things} on {article(scene.background)} background" if scene.background else things
