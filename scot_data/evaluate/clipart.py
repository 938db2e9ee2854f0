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

import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from rich.progress import Progress

from scot_data import ids
from scot_data.atomic import atomic_write_bytes, atomic_write_json
from scot_data.captions.ingest import CAPTIONS_FILE, HOLDOUT_FILE
from scot_data.captions.records import CAPTIONS_SCHEMA
from scot_data.clipart.config import (
    COLOURS_PER_QUERY,
    OBJECTS_PER_QUERY,
    RENDER_VERSION,
    ClipartBenchConfig,
    EditKind,
)
from scot_data.clipart.cutout import Cutout, load_cutout
from scot_data.clipart.edits import apply_edit
from scot_data.clipart.names import article, is_usable_name, normalise_name, word_vocabulary
from scot_data.clipart.scene import (
    IMAGE_PREFIX,
    ClipartObject,
    Placed,
    Scene,
    png_bytes,
    render_scene,
    scene_caption,
)
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
_MISSING_HINTS = {
    HOLDOUT_FILE: "build the captions with captions.holdout > 0 so some images are held out of training",
    CAPTIONS_FILE: "the benchmark needs the training captions to leave their object names out",
}

# Draws allowed per wanted query before giving up (repeated reference/target pairs are redrawn).
DRAWS_PER_QUERY = 50

PHRASINGS: dict[EditKind, tuple[str, ...]] = {
    "replace": ("replace the {b} with {a_c}", "change the {b} into {a_c}", "swap the {b} for {a_c}"),
    "add": ("add {a_b}", "add {a_b} next to the {a}", "put {a_b} beside the {a}"),
    "remove": ("remove the {b}", "take the {b} away", "get rid of the {b}"),
    "background": ("put it on {a_y_background}", "make the background {y}", "change the background to {y}"),
    "recolour": ("make it {y}", "make the {a} {y}", "colour the {a} {y}"),
}


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
class PlannedQuery:
    """A query before rendering: scenes of the reference, the target and the distractors."""

    kind: EditKind
    text: str
    reference: Scene
    target: Scene
    distractors: tuple[Scene, ...]


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


def _with_target(
    reference: Scene, kind: EditKind, added: ClipartObject, y: str, negatives: tuple[Scene, ...]
) -> Edit:
    """The reference, its target (``apply_edit`` on its last object: the one B, C and Y name)
    and the negatives."""
    return reference, apply_edit(reference, kind, len(reference.items) - 1, added, y), negatives


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
        return _with_target(_scene(a, b), kind, c, y, negatives)
    if kind == "add":
        negatives = (_scene(a, d), _scene(e, b), _scene(b), _scene(a, b, background=x))
        return _with_target(_scene(a), kind, b, y, negatives)
    if kind == "remove":
        negatives = (_scene(b), _scene(a, d), _scene(a, tint=x), _scene(a, background=x))
        return _with_target(_scene(a, b), kind, b, y, negatives)
    if kind == "background":
        negatives = (
            _scene(a, background=z),
            _scene(a, background=w),
            _scene(b, background=y),
            _scene(a, tint=y),
        )
        return _with_target(_scene(a, background=x if on_colour else None), kind, b, y, negatives)
    negatives = (_scene(a, tint=z), _scene(a, tint=w), _scene(b, tint=y), _scene(a, background=y))
    return _with_target(_scene(a), kind, b, y, negatives)


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
