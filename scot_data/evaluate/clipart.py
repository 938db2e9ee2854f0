"""A composed-retrieval benchmark from clip-art that training never saw, in the CIRR rc2 layout.

The caption stage can hold images out of training (``holdout.parquet``); this module turns
those drawings into edit queries whose answers are known by construction. Each drawing is
one object on white, so it is cut out by its non-white pixels and composited into scenes:
one object centred or two side by side, on white or on a named colour, optionally tinted.
A query pairs a reference scene with a target scene that differs by one edit (replace,
add, remove, background, recolour) and a short text naming it; its CIRR image set adds
hard negatives that share parts with the reference or the target, so R_subset@K checks
that a model follows the text rather than copying the reference.

Only objects whose name never occurs in ``captions.parquet`` are used, so a model trained
on those captions has seen neither the drawings nor their names. The output is read
unchanged by :func:`scot_data.evaluate.cirr.read_split` and scored by the CIRR protocol.

Two splits over disjoint objects: ``val`` (choose every setting on it) and ``test`` (report
it). The unseen objects are dealt to the splits by a seeded hash of their names (40/60 by
default), and each split's queries use only its own objects, so no drawing, name or image
of the test split is ever looked at while choosing.

Everything is deterministic: objects and queries come from seeded hashes, images are named
by a hash of their composition (an image shared by queries is written once), PNGs carry
no metadata and JSON is key-sorted, so the same inputs and config give identical files.
Images are written atomically and an image already present is not rendered again, so a
killed build resumes; ``manifest.json`` is written last.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from io import BytesIO
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageColor, ImageFilter, ImageOps
from pydantic import BaseModel, ConfigDict, Field, field_validator
from rich.progress import Progress

from scot_data import ids
from scot_data.atomic import atomic_write_bytes, atomic_write_json
from scot_data.captions.ingest import CAPTIONS_FILE, HOLDOUT_FILE
from scot_data.captions.records import CAPTIONS_SCHEMA
from scot_data.errors import ScotInputError
from scot_data.evaluate.cirr import read_split
from scot_data.manifest import (
    MANIFEST_NAME,
    InputRef,
    fingerprint_input,
    finished_summary,
    is_complete,
    stage_fingerprint,
    write_manifest,
)
from scot_data.outdir import writes_folder

STAGE = "benchmark"
STATS_FILE = "stats.json"
IMAGES_DIR = "images"
IMAGE_PREFIX = "clipart-"
_MISSING_HINTS = {
    HOLDOUT_FILE: "build the captions with captions.holdout > 0 so some images are held out of training",
    CAPTIONS_FILE: "the benchmark needs the training captions to leave their object names out",
}
# Bump when rendering changes: it is part of every image name, so old images are not reused.
RENDER_VERSION = "1"

EditKind = Literal["replace", "add", "remove", "background", "recolour"]
KINDS: tuple[EditKind, ...] = ("replace", "add", "remove", "background", "recolour")
# Hard negatives built per query (see _edit); ``distractors`` takes the first ones.
HARD_NEGATIVES = 4
# Distinct objects and colours one query draws (A..E; background needs X, Y, Z, W).
OBJECTS_PER_QUERY = 5
COLOURS_PER_QUERY = 4
# Draws allowed per wanted query before giving up (repeated reference/target pairs are redrawn).
DRAWS_PER_QUERY = 50

# A pixel is ink when its darkest channel is below this (anti-aliased paper stays paper).
WHITE_LEVEL = 235
# Drawings with less ink than this share of the canvas are nearly blank.
MIN_INK_SHARE = 0.02
# Drawings with more ink than this share of the canvas are pictures, not objects on paper.
MAX_INK_SHARE = 0.85
# Drawings filling more than this share of their own bounding box are panels (a filled
# rectangle behind the object): they composite as a box, not as the object.
MAX_BOX_FILL = 0.97
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

_NAME = re.compile(r"[a-z]+(?: [a-z]+)*")
_SPACES = re.compile(r"\s+")
_LEADING_ARTICLE = re.compile(r"^(?:a|an|the) (?=\S)")
# Plural endings: a name like "dead frogs" is several objects and reads badly after "a".
_SINGULAR_S_ENDINGS = ("ss", "us", "is", "ous")
# First letters and prefixes for "a" or "an" (spelling, not sound, except these).
_AN_PREFIXES_OVERRIDE = ("hour", "honest", "heir")
_A_PREFIXES_OVERRIDE = ("uni", "use", "usu", "eu", "one", "once")

PHRASINGS: dict[EditKind, tuple[str, ...]] = {
    "replace": ("replace the {b} with {a_c}", "change the {b} into {a_c}", "swap the {b} for {a_c}"),
    "add": ("add {a_b}", "add {a_b} next to the {a}", "put {a_b} beside the {a}"),
    "remove": ("remove the {b}", "take the {b} away", "get rid of the {b}"),
    "background": ("put it on {a_y_background}", "make the background {y}", "change the background to {y}"),
    "recolour": ("make it {y}", "make the {a} {y}", "colour the {a} {y}"),
}


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


@dataclass
class ClipartBenchSummary:
    """What one build did; the build's stats are stored in its manifest."""

    out_dir: str
    unseen_drawings: int = 0  # held-out drawings whose name is usable and not in training
    objects_available: int = 0
    objects_used: dict[str, int] = field(default_factory=dict)  # per split
    queries: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> kind -> count
    gallery_images: int = 0
    images_rendered: int = 0
    seconds: float = 0.0
    skipped: bool = False


@dataclass(frozen=True)
class ClipartObject:
    """One unseen object: the drawing chosen for its name."""

    name: str
    image_id: str
    image_uri: str


@dataclass(frozen=True)
class Cutout:
    """An object cropped to its ink, with its mask (interior white parts count as object)."""

    rgb: Image.Image
    mask: Image.Image


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


@dataclass(frozen=True)
class PlannedQuery:
    """A query before rendering: scenes of the reference, the target and the distractors."""

    kind: EditKind
    text: str
    reference: Scene
    target: Scene
    distractors: tuple[Scene, ...]


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


def _require(path: Path) -> Path:
    if not path.is_file():
        raise ScotInputError(f"{path}: missing; {_MISSING_HINTS[path.name]}")
    return path


def _read_rows(path: Path) -> list[dict[str, str]]:
    return pq.read_table(_require(path), columns=["image_id", "image_uri", "caption"]).to_pylist()


def training_names(captions_file: Path) -> set[str]:
    """Every object name the training captions mention."""
    return {normalise_name(row["caption"]) for row in _read_rows(captions_file)}


def candidate_drawings(
    holdout_file: Path, excluded: set[str], max_words: int, vocabulary: frozenset[str] | None = None
) -> dict[str, list[ClipartObject]]:
    """Held-out drawings per usable unseen name (one entry per distinct image)."""
    candidates: dict[str, dict[str, ClipartObject]] = {}
    for row in _read_rows(holdout_file):
        name = normalise_name(row["caption"])
        if name in excluded or not is_usable_name(name, max_words, vocabulary):
            continue
        candidates.setdefault(name, {})[row["image_id"]] = ClipartObject(
            name, row["image_id"], row["image_uri"]
        )
    return {name: list(by_id.values()) for name, by_id in candidates.items()}


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


def select_objects(
    drawings: dict[str, list[ClipartObject]], seed: int, progress: Progress
) -> tuple[list[ClipartObject], dict[str, Cutout]]:
    """One usable drawing per name (the first in seeded order), names in seeded order."""
    task = progress.add_task("clip-art objects", total=len(drawings))
    chosen: list[ClipartObject] = []
    cutouts: dict[str, Cutout] = {}
    for name in sorted(drawings, key=lambda n: ids.sample_rank(seed, n)):
        for obj in sorted(drawings[name], key=lambda o: ids.sample_rank(seed, o.image_id)):
            cutout = load_cutout(obj.image_uri)
            if cutout is not None:
                chosen.append(obj)
                cutouts[obj.image_id] = cutout
                break
        progress.advance(task)
    return chosen, cutouts


def _scene(*objects: ClipartObject, background: str | None = None, tint: str | None = None) -> Scene:
    """A scene whose first object carries ``tint`` (the others keep their colours)."""
    items = tuple(Placed(o, tint if i == 0 else None) for i, o in enumerate(objects))
    return Scene(items, background)


Edit = tuple[Scene, Scene, tuple[Scene, ...]]


def _edit(kind: EditKind, objs: Sequence[ClipartObject], colours: Sequence[str], on_colour: bool) -> Edit:
    """Reference, target and hard negatives of one query.

    Objects A..E and colours X..W are distinct, so the six scenes differ. Negatives keep
    one part of the answer and break another: the other object, the wrong colour, the
    colour in the wrong place, the edit applied to the wrong object.
    """
    a, b, c, d, e = objs
    x, y, z, w = colours
    if kind == "replace":
        negatives = (_scene(a, d), _scene(e, c), _scene(c), _scene(a, c, background=x))
        return _scene(a, b), _scene(a, c), negatives
    if kind == "add":
        negatives = (_scene(a, d), _scene(e, b), _scene(b), _scene(a, b, background=x))
        return _scene(a), _scene(a, b), negatives
    if kind == "remove":
        negatives = (_scene(b), _scene(a, d), _scene(a, tint=x), _scene(a, background=x))
        return _scene(a, b), _scene(a), negatives
    if kind == "background":
        negatives = (
            _scene(a, background=z),
            _scene(a, background=w),
            _scene(b, background=y),
            _scene(a, tint=y),
        )
        return _scene(a, background=x if on_colour else None), _scene(a, background=y), negatives
    negatives = (_scene(a, tint=z), _scene(a, tint=w), _scene(b, tint=y), _scene(a, background=y))
    return _scene(a), _scene(a, tint=y), negatives


def query_text(kind: EditKind, phrasing: int, objs: Sequence[ClipartObject], colours: Sequence[str]) -> str:
    """The modification text: one of the kind's phrasings with the names of ``_edit``'s roles.

    In every kind B is the object added, removed or replaced, C its replacement and Y the
    new colour, so one set of fields serves all phrasings.
    """
    a, b, c = (o.name for o in objs[:3])
    y = colours[1]
    fields = {"a": a, "b": b, "a_b": article(b), "a_c": article(c), "y": y,
              "a_y_background": article(f"{y} background")}  # fmt: skip
    return PHRASINGS[kind][phrasing].format(**fields)


def _share_words(objs: Sequence[ClipartObject]) -> bool:
    """Whether two names share a word ("biohazard", "biohazard symbol"): such objects may
    look alike and their texts blur, so a draw with them is redrawn."""
    words = [set(o.name.split()) for o in objs]
    return sum(map(len, words)) != len(set().union(*words))


def plan_kind(
    kind: EditKind, objects: list[ClipartObject], cfg: ClipartBenchConfig, split: str = "val"
) -> list[PlannedQuery]:
    """``queries_per_kind`` queries drawn from one seeded stream per kind.

    A draw repeating an earlier (reference, target) pair, or whose names share a word, is
    redrawn; a larger count keeps every query a smaller one drew.
    """
    rng = random.Random(int(ids.stable_id("clipart-queries", str(cfg.seed), split, kind), 16))
    palette = list(cfg.colours)
    planned: list[PlannedQuery] = []
    seen: set[tuple[Scene, Scene]] = set()
    for _ in range(cfg.queries_per_kind * DRAWS_PER_QUERY):
        if len(planned) == cfg.queries_per_kind:
            break
        objs, colours = rng.sample(objects, OBJECTS_PER_QUERY), rng.sample(palette, COLOURS_PER_QUERY)
        on_colour, phrasing = rng.random() < 0.5, rng.randrange(len(PHRASINGS[kind]))
        reference, target, negatives = _edit(kind, objs, colours, on_colour)
        if (reference, target) in seen or _share_words(objs):
            continue
        seen.add((reference, target))
        text = query_text(kind, phrasing, objs, colours)
        planned.append(PlannedQuery(kind, text, reference, target, negatives[: cfg.distractors]))
    if len(planned) < cfg.queries_per_kind:
        raise ScotInputError(
            f"{split} {kind}: only {len(planned)} distinct queries from {len(objects)} objects, "
            f"{cfg.queries_per_kind} wanted; lower queries_per_kind or hold out more images"
        )
    return planned


def plan_queries(
    objects: list[ClipartObject], cfg: ClipartBenchConfig, split: str = "val"
) -> list[PlannedQuery]:
    """Every query of one split, kind by kind in ``cfg.kinds`` order."""
    return [q for kind in cfg.kinds for q in plan_kind(kind, objects, cfg, split)]


def split_objects(objects: list[ClipartObject], cfg: ClipartBenchConfig) -> dict[str, list[ClipartObject]]:
    """The objects dealt to the splits by their shares, in a seeded order of their names.

    Disjoint by construction; each split keeps the objects' original (seeded) order.
    """
    order = sorted(objects, key=lambda o: ids.sample_rank(cfg.seed, f"split:{o.name}"))
    total, parts, start, cumulative = sum(cfg.splits.values()), {}, 0, 0.0
    for split, share in cfg.splits.items():
        cumulative += share
        end = round(len(order) * cumulative / total)
        chosen = {o.image_id for o in order[start:end]}
        parts[split], start = [o for o in objects if o.image_id in chosen], end
    return parts


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


def cirr_records(queries: list[PlannedQuery], cfg: ClipartBenchConfig) -> list[dict[str, Any]]:
    """The ``cap.rc2.<split>.json`` records; members are shuffled by a per-query seeded hash."""
    records = []
    for pairid, query in enumerate(queries):
        reference, target = query.reference.name(cfg), query.target.name(cfg)
        members = [reference, target, *(s.name(cfg) for s in query.distractors)]
        members.sort(key=lambda n: ids.sample_rank(cfg.seed, f"{pairid}:{n}"))
        records.append({
            "pairid": pairid,
            "reference": reference,
            "target_hard": target,
            "target_soft": {target: 1.0},
            "caption": query.text,
            "img_set": {"id": pairid, "members": members,
                        "reference_rank": members.index(reference), "target_rank": members.index(target)},
            "edit_kind": query.kind,
            "target_caption": scene_caption(query.target),
        })  # fmt: skip
    return records


def scene_caption(scene: Scene) -> str:
    """A compositional caption: objects left to right with their tint, then the background.

    Scene training captions use it, and each benchmark query records its target's: that
    text used as the query shows how well the encoder finds the answer from its description.
    """
    things = " and ".join(article(f"{p.tint} {p.obj.name}" if p.tint else p.obj.name) for p in scene.items)
    return f"{things} on {article(scene.background)} background" if scene.background else things


def gallery_scenes(queries: Iterable[PlannedQuery], cfg: ClipartBenchConfig) -> dict[str, Scene]:
    """Every image the queries need, by name, each once."""
    gallery: dict[str, Scene] = {}
    for query in queries:
        for scene in (query.reference, query.target, *query.distractors):
            gallery.setdefault(scene.name(cfg), scene)
    return dict(sorted(gallery.items()))


def render_gallery(
    gallery: dict[str, Scene],
    cutouts: dict[str, Cutout],
    cfg: ClipartBenchConfig,
    out: Path,
    progress: Progress,
) -> int:
    """Write the images not already there, atomically; remove stale ones; return how many were written."""
    images = out / IMAGES_DIR
    images.mkdir(parents=True, exist_ok=True)
    for stale in images.glob(f"{IMAGE_PREFIX}*.png"):
        if stale.stem not in gallery:
            stale.unlink()
    todo = [name for name in gallery if not (images / f"{name}.png").is_file()]
    task = progress.add_task("clip-art gallery", total=len(gallery), completed=len(gallery) - len(todo))
    for name in todo:
        atomic_write_bytes(images / f"{name}.png", png_bytes(render_scene(gallery[name], cutouts, cfg)))
        progress.advance(task)
    return len(todo)


def stage_inputs(captions_dir: Path) -> list[InputRef]:
    """Both caption tables, fingerprinted: a new holdout or new training names mean a rebuild."""
    return [fingerprint_input(_require(captions_dir / name)) for name in (HOLDOUT_FILE, CAPTIONS_FILE)]


def stage_config(cfg: ClipartBenchConfig) -> dict[str, Any]:
    """The config with the render version: a rendering change is a different benchmark."""
    return {**cfg.model_dump(mode="json"), "render_version": RENDER_VERSION}


@writes_folder(STAGE, (IMAGES_DIR, "image_splits", "captions"))
def build_clipart_benchmark(
    captions_dir: str | Path,
    out_dir: str | Path,
    cfg: ClipartBenchConfig,
    show_progress: bool = True,
    force: bool = False,
) -> ClipartBenchSummary:
    """Build every split of the benchmark from a finished caption stage into ``out_dir``
    (skipped when done)."""
    started = time.perf_counter()
    captions, out = Path(captions_dir), Path(out_dir)
    inputs, config = stage_inputs(captions), stage_config(cfg)
    if is_complete(out, STAGE, stage_fingerprint(STAGE, config, inputs)):
        return finished_summary(out, ClipartBenchSummary, images_rendered=0)
    (out / MANIFEST_NAME).unlink(missing_ok=True)
    summary = ClipartBenchSummary(out_dir=str(out))

    excluded = training_names(captions / CAPTIONS_FILE)
    vocabulary = word_vocabulary() if cfg.known_words else None
    drawings = candidate_drawings(captions / HOLDOUT_FILE, excluded, cfg.max_name_words, vocabulary)
    with Progress(disable=not show_progress) as progress:
        objects, cutouts = select_objects(drawings, cfg.seed, progress)
        queries = {split: plan_queries(objs, cfg, split)
                   for split, objs in _checked_parts(objects, cfg, captions / HOLDOUT_FILE).items()}  # fmt: skip
        galleries = {split: gallery_scenes(planned, cfg) for split, planned in queries.items()}
        everything = {name: scene for gallery in galleries.values() for name, scene in gallery.items()}
        summary.images_rendered = render_gallery(dict(sorted(everything.items())), cutouts, cfg, out, progress)

    summary.unseen_drawings = sum(len(v) for v in drawings.values())
    summary.objects_available = len(objects)
    summary.objects_used = {split: len(_names_in(gallery)) for split, gallery in galleries.items()}
    summary.queries = {split: {kind: sum(q.kind == kind for q in planned) for kind in cfg.kinds}
                       for split, planned in queries.items()}  # fmt: skip
    summary.gallery_images = len(everything)
    files = write_outputs(out, cfg, queries, galleries, summary)
    summary.seconds = round(time.perf_counter() - started, 2)
    write_manifest(out, STAGE, config, inputs, files, extra={"stats": asdict(summary)})
    return summary


def _checked_parts(
    objects: list[ClipartObject], cfg: ClipartBenchConfig, holdout: Path
) -> dict[str, list[ClipartObject]]:
    """The objects of each split; a split with too few is an error naming the file."""
    parts = split_objects(objects, cfg)
    for split, objs in parts.items():
        if len(objs) < cfg.min_objects:
            raise ScotInputError(
                f"{holdout}: split {split!r} gets {len(objs)} of {len(objects)} usable unseen objects, "
                f"need at least {cfg.min_objects}; set captions.holdout higher"
            )
    return parts


def _names_in(gallery: dict[str, Scene]) -> list[str]:
    return sorted({p.obj.name for scene in gallery.values() for p in scene.items})


def write_outputs(
    out: Path,
    cfg: ClipartBenchConfig,
    queries: dict[str, list[PlannedQuery]],
    galleries: dict[str, dict[str, Scene]],
    summary: ClipartBenchSummary,
) -> dict[str, int | None]:
    """Each split's CIRR files and ``stats.json``; return every output file with its row count.

    ``stats.json`` holds only what the inputs decide (no timings or paths), so two builds of
    the same inputs are byte-identical; the run's own numbers go to the manifest.
    """
    files: dict[str, int | None] = {}
    for split, planned in queries.items():
        listing = f"image_splits/split.rc2.{split}.json"
        caps = f"captions/cap.rc2.{split}.json"
        atomic_write_json(out / listing, {name: f"./{IMAGES_DIR}/{name}.png" for name in galleries[split]})
        atomic_write_json(out / caps, cirr_records(planned, cfg))
        files |= {listing: len(galleries[split]), caps: len(planned)}
    stats = {
        "unseen_drawings": summary.unseen_drawings,
        "objects_available": summary.objects_available,
        "objects_used": summary.objects_used,
        "queries": summary.queries,
        "gallery_images": summary.gallery_images,
        "objects": {split: _names_in(gallery) for split, gallery in galleries.items()},
    }
    atomic_write_json(out / STATS_FILE, stats)
    images = {f"{IMAGES_DIR}/{name}.png": None for gallery in galleries.values() for name in gallery}
    return {**dict(sorted(images.items())), **files, STATS_FILE: None}


SOURCE_BENCHMARK = "clipart-benchmark"


def target_caption_table(data: str | Path, split: str = "val") -> pa.Table:
    """A caption table of the benchmark's distinct target scenes and their captions: held-out
    *scenes* (of objects training never saw) for ``scot encoder recall``."""
    bench = read_split(data, split, name="clipart")
    rows: dict[str, dict[str, str]] = {}
    for query in bench.queries:
        if not query.targets or query.target_caption is None:
            raise ScotInputError(f"{bench.sources[0]}: pairid {query.query_id} has no target or target_caption")
        name, caption = query.targets[0], query.target_caption
        rows.setdefault(name, {
            "caption_id": ids.caption_id(SOURCE_BENCHMARK, name, caption), "image_id": name,
            "image_uri": str(bench.gallery[name].resolve()), "caption": caption, "source": SOURCE_BENCHMARK,
        })  # fmt: skip
    return pa.Table.from_pylist(list(rows.values()), schema=CAPTIONS_SCHEMA)
