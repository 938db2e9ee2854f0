"""Scene captions and scene triplets: training clip-art objects composed into scenes.

Single drawings on white teach neither the encoder nor the Combiner what a composed query
looks like ("the lamp, but with a violin instead of the cup"): DESIGN.md section 5 measured
that triplets over single objects do not transfer to two-object composites. This module
composes the *training* objects (never the held-out ones the clip-art benchmark uses) into
scenes of one or two objects, on white or a coloured background, optionally tinted, with
compositional captions ("a red lamp and a violin on a blue background"), and writes:

- ``captions/``: a finished caption-stage directory of the reference scenes (their PNGs in
  ``captions/images``), which ``scot fit-lit`` and ``scot embed`` read as any other;
- ``triplets/``: a finished triplet-stage directory with ``edits_per_scene`` template edits
  per scene (replace, add, remove, background, recolour), whose modified caption describes
  the edited scene. The phrasings differ from the benchmark's, so a model cannot win by
  matching them. Several edits per scene grow the training set without new reference
  images, so the image tower (the expensive part) runs once per scene.

With ``render_targets`` each edit's target scene is rendered too: the caption table then
also holds the target scenes, and the triplets name theirs in ``target_image_id``. That
is not the paper's method (which has no target image) but its control: the Combiner
trained towards the target *image* (``train.target: rendered``) measures how much the
text-space target costs.

The scene kit, renderer and edits are the benchmark's (``scot_data.clipart``), so training
and test scenes share their look but no object.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from rich.progress import Progress

from scot_data import ids, stages
from scot_data.atomic import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_parquet,
)
from scot_data.captions.ingest import CAPTIONS_FILE, PARQUET_OPTIONS, REJECTS_FILE, STATS_FILE
from scot_data.captions.records import CAPTIONS_SCHEMA, REJECTS_SCHEMA
from scot_data.clipart.config import ClipartBenchConfig, EditKind
from scot_data.clipart.cutout import load_cutout
from scot_data.clipart.edits import apply_edit
from scot_data.clipart.names import article, is_usable_name, normalise_name, word_vocabulary
from scot_data.clipart.scene import ClipartObject, Placed, Scene, png_bytes, render_scene, scene_caption
from scot_data.errors import ScotInputError
from scot_data.manifest import (
    fingerprint_input,
    finished_summary,
    is_complete,
    stage_fingerprint,
    write_manifest,
)
from scot_data.outdir import writes_folder
from scot_data.scenes.config import ScenesConfig
from scot_data.triplets.records import TARGET_IMAGE_COLUMN, TRIPLETS_FILE, TRIPLETS_SCHEMA

SOURCE = "openclipart-scenes"
TEMPLATE_VERSION = "scene-template-v1"
# Training phrasings, deliberately not the benchmark's (scot_data.evaluate.clipart.PHRASINGS).
TRAIN_PHRASINGS: dict[EditKind, tuple[str, ...]] = {
    "replace": ("{a_c} in place of the {b}", "the {b} becomes {a_c}", "instead of the {b}, show {a_c}"),
    "add": ("also show {a_b}", "with {a_b} as well", "include {a_b}"),
    "remove": ("without the {b}", "only the {a}, no {b}", "delete the {b}"),
    "background": ("{a_y} backdrop", "set it against {y}", "{y} behind it"),
    "recolour": ("paint it {y}", "the {a} in {y}", "{y} instead"),
}
# "paint it red" is ambiguous when a scene holds two objects: name the one to recolour.
TWO_OBJECT_RECOLOUR = ("the {a} in {y}", "paint the {a} {y}", "make the {a} {y}")
# The edits a reference of one or of two objects allows (scenes hold at most two).
EDITS_BY_SIZE: dict[int, tuple[EditKind, ...]] = {
    1: ("add", "background", "recolour"),
    2: ("replace", "remove", "background", "recolour"),
}
# Draws per wanted further edit before a scene settles for fewer (its targets must differ).
DRAWS_PER_EDIT = 10


@dataclass
class ScenesSummary:
    out_dir: str
    objects: int = 0
    scenes: int = 0
    triplets: int = 0
    edit_types: dict[str, int] = field(default_factory=dict)
    images_rendered: int = 0
    seconds: float = 0.0
    skipped: bool = False


@dataclass(frozen=True)
class SceneTriplet:
    kind: EditKind
    reference: Scene
    target: Scene
    modification: str


def training_objects(
    captions_file: Path, max_words: int, seed: int, vocabulary: frozenset[str] | None = None
) -> list[ClipartObject]:
    """One drawing per usable name of the training captions that cuts out cleanly."""
    if not captions_file.is_file():
        raise ScotInputError(f"{captions_file}: missing (run the caption stage first)")
    by_name: dict[str, list[ClipartObject]] = {}
    for row in pq.read_table(captions_file, columns=["image_id", "image_uri", "caption"]).to_pylist():
        name = normalise_name(row["caption"])
        if is_usable_name(name, max_words, vocabulary):
            by_name.setdefault(name, []).append(ClipartObject(name, row["image_id"], row["image_uri"]))
    return [min(found, key=lambda o: ids.sample_rank(seed, o.image_id)) for found in by_name.values()]


def _words_overlap(objs: list[ClipartObject]) -> bool:
    words = [set(o.name.split()) for o in objs]
    return sum(map(len, words)) != len(set().union(*words))


def _edit(kind: EditKind, rng: random.Random, objs: list[ClipartObject], palette: list[str],
          background_share: float) -> SceneTriplet:  # fmt: skip
    """One scene edit of ``kind``: objects A, B, C and colours X (reference), Y (new). The
    reference holds A and B for replace and remove (B is edited), A alone otherwise."""
    a, b, c = objs
    x, y = rng.sample(palette, 2)
    backdrop = x if rng.random() < background_share else None
    phrasing = rng.choice(TRAIN_PHRASINGS[kind])
    fields = {
        "a": a.name,
        "b": b.name,
        "a_b": article(b.name),
        "a_c": article(c.name),
        "y": y,
        "a_y": article(y),
    }
    two = kind in ("replace", "remove")
    reference = Scene((Placed(a), Placed(b)) if two else (Placed(a),), backdrop)
    target = apply_edit(reference, kind, len(reference.items) - 1, c if kind == "replace" else b, y)
    return SceneTriplet(kind, reference, target, phrasing.format(**fields))


def plan_scene_triplets(
    objects: list[ClipartObject], cfg: ScenesConfig, palette: list[str]
) -> list[SceneTriplet]:
    """``count`` distinct reference scenes and their first edit, kinds in turn, from one seeded stream."""
    rng = random.Random(int(ids.stable_id("scene-triplets", str(cfg.seed)), 16))
    planned: list[SceneTriplet] = []
    seen: set[Scene] = set()
    for attempt in range(cfg.count * 20):
        if len(planned) == cfg.count:
            return planned
        objs = rng.sample(objects, 3)
        edit = _edit(cfg.kinds[attempt % len(cfg.kinds)], rng, objs, palette, cfg.background_share)
        if edit.reference in seen or _words_overlap(objs):
            continue
        seen.add(edit.reference)
        planned.append(edit)
    raise ScotInputError(
        f"only {len(planned)} distinct scenes from {len(objects)} objects; lower scenes.count"
    )


def _fresh_object(rng: random.Random, objects: list[ClipartObject], scene: Scene) -> ClipartObject:
    """An object sharing no word with those already in ``scene``."""
    present = {w for p in scene.items for w in p.obj.name.split()}
    for _ in range(DRAWS_PER_EDIT * 10):
        candidate = rng.choice(objects)
        if present.isdisjoint(candidate.name.split()):
            return candidate
    raise ScotInputError(f"no object unlike {scene_caption(scene)!r} among {len(objects)}; too few objects")


def _edit_of(reference: Scene, kind: EditKind, rng: random.Random, objects: list[ClipartObject],
             palette: list[str]) -> SceneTriplet:  # fmt: skip
    """An edit of ``kind`` applied to an existing reference, on one of its objects at random."""
    items = reference.items
    i = rng.randrange(len(items))
    edited, kept = items[i].obj, items[1 - i].obj if len(items) == 2 else None
    y = rng.choice([c for c in palette if c != reference.background])
    added = _fresh_object(rng, objects, reference)
    fields = {"a": kept.name if kind == "remove" and kept else edited.name,
              "b": added.name if kind == "add" else edited.name,
              "a_b": article(added.name), "a_c": article(added.name), "y": y, "a_y": article(y)}  # fmt: skip
    phrasings = TWO_OBJECT_RECOLOUR if kind == "recolour" and kept else TRAIN_PHRASINGS[kind]
    text = rng.choice(phrasings).format(**fields)
    return SceneTriplet(kind, reference, apply_edit(reference, kind, i, added, y), text)


def further_edits(first: SceneTriplet, cfg: ScenesConfig, objects: list[ClipartObject],
                  palette: list[str]) -> list[SceneTriplet]:  # fmt: skip
    """Up to ``edits_per_scene - 1`` more edits of ``first``'s reference, kinds other than the
    first's before repeats, each to a new target. Seeded by the scene alone, so the scenes
    and their first edits are exactly the one-edit build's."""
    reference = first.reference
    key = [p.obj.image_id for p in reference.items] + [reference.background or "white"]
    rng = random.Random(int(ids.stable_id("scene-further-edits", str(cfg.seed), *key), 16))
    applicable = [k for k in EDITS_BY_SIZE[len(reference.items)] if k in cfg.kinds]
    others = [k for k in applicable if k != first.kind]
    order = rng.sample(others, len(others))
    wanted = cfg.edits_per_scene - 1
    targets, found = {reference, first.target}, []
    for attempt in range(wanted * DRAWS_PER_EDIT if applicable else 0):
        if len(found) == wanted:
            break
        kind = order[attempt] if attempt < len(order) else rng.choice(applicable)
        edit = _edit_of(reference, kind, rng, objects, palette)
        if edit.target not in targets:
            targets.add(edit.target)
            found.append(edit)
    return found


def _render(scenes: list[Scene], images: Path, cutouts: dict, look: ClipartBenchConfig,
            progress: Progress) -> int:  # fmt: skip
    """Write each scene's PNG once (resumable: existing files are kept)."""
    rendered = 0
    task = progress.add_task("scenes", total=len(scenes))
    for scene in scenes:
        path = images / f"{scene.name(look)}.png"
        if not path.exists():
            atomic_write_bytes(path, png_bytes(render_scene(scene, cutouts, look)))
            rendered += 1
        progress.advance(task)
    return rendered


def _captions_table(scenes: list[Scene], images: Path, look: ClipartBenchConfig) -> pa.Table:
    rows = []
    for scene in scenes:
        name = scene.name(look)
        caption = scene_caption(scene)
        rows.append({"caption_id": ids.caption_id(SOURCE, name, caption), "image_id": ids.image_id(SOURCE, name),
                     "image_uri": str((images / f"{name}.png").resolve()), "caption": caption, "source": SOURCE})  # fmt: skip
    return pa.Table.from_pylist(rows, schema=CAPTIONS_SCHEMA)


def _triplets_table(edits: list[list[SceneTriplet]], captions: pa.Table, seed: int,
                    target_ids: dict[Scene, str] | None) -> pa.Table:  # fmt: skip
    """Each scene's edits, in order, against its caption row (and its target's image id).
    The reference scenes are the table's first rows; rendered targets follow them."""
    rows = []
    for scene_edits, ref in zip(edits, captions.slice(0, len(edits)).to_pylist(), strict=True):
        for edit in scene_edits:
            modified = scene_caption(edit.target)
            rows.append({
                "triplet_id": ids.stable_id("triplet", ref["caption_id"], edit.modification, modified),
                "caption_id": ref["caption_id"], "image_id": ref["image_id"], "caption": ref["caption"],
                "modification": edit.modification, "modified_caption": modified, "edit_type": edit.kind,
                "llm_model": TEMPLATE_VERSION, "prompt_version": TEMPLATE_VERSION, "seed": seed,
            })  # fmt: skip
            if target_ids is not None:
                rows[-1][TARGET_IMAGE_COLUMN] = target_ids[edit.target]
    schema = TRIPLETS_SCHEMA
    if target_ids is not None:
        schema = schema.append(pa.field(TARGET_IMAGE_COLUMN, pa.string()))
    return pa.Table.from_pylist(rows, schema=schema)


@writes_folder(stages.SCENES, (stages.CAPTIONS, f"{stages.CAPTIONS}/images", stages.TRIPLETS))
def build_scenes(captions_dir: str | Path, out_dir: str | Path, cfg: ScenesConfig | None = None,
                 show_progress: bool = True, force: bool = False) -> ScenesSummary:  # fmt: skip
    """Scene captions (``out/captions``) and scene triplets (``out/triplets``), each a
    finished stage directory; an identical finished build is skipped."""
    started = time.perf_counter()
    cfg = cfg or ScenesConfig()
    out, source = Path(out_dir), Path(captions_dir) / CAPTIONS_FILE
    captions_out, triplets_out = out / stages.CAPTIONS, out / stages.TRIPLETS
    inputs = [fingerprint_input(source)]
    config = {**cfg.fingerprint_config(), "render": ClipartBenchConfig().render_config()}
    done = [is_complete(d, stage, stage_fingerprint(stage, config, inputs))
            for d, stage in ((captions_out, stages.CAPTIONS), (triplets_out, stages.TRIPLETS))]  # fmt: skip
    if all(done):
        summary = finished_summary(triplets_out, ScenesSummary)
        summary.out_dir = str(out)
        return summary
    look = ClipartBenchConfig()
    images = captions_out / "images"
    images.mkdir(parents=True, exist_ok=True)
    summary = ScenesSummary(out_dir=str(out))
    with Progress(disable=not show_progress) as progress:
        vocabulary = word_vocabulary() if cfg.known_words else None
        objects = training_objects(source, cfg.max_name_words, cfg.seed, vocabulary)
        cutouts = {o.image_id: c for o in objects if (c := load_cutout(o.image_uri)) is not None}
        objects = [o for o in objects if o.image_id in cutouts]
        palette = list(look.colours)
        planned = plan_scene_triplets(objects, cfg, palette)
        edits = [[first, *further_edits(first, cfg, objects, palette)] for first in planned]
        scenes = [edit.reference for edit in planned]
        if cfg.render_targets:
            references = set(scenes)
            scenes += list(dict.fromkeys(e.target for s in edits for e in s if e.target not in references))
        summary.images_rendered = _render(scenes, images, cutouts, look, progress)
    captions = _captions_table(scenes, images, look)
    target_ids = {s: ids.image_id(SOURCE, s.name(look)) for s in scenes} if cfg.render_targets else None
    triplets = _triplets_table(edits, captions, cfg.seed, target_ids)
    summary.objects, summary.scenes, summary.triplets = len(objects), captions.num_rows, triplets.num_rows
    summary.edit_types = {k: sum(e.kind == k for scene in edits for e in scene) for k in cfg.kinds}
    summary.seconds = round(time.perf_counter() - started, 2)
    _write_stage(captions_out, stages.CAPTIONS, config, inputs,
                 {CAPTIONS_FILE: captions, REJECTS_FILE: pa.Table.from_pylist([], schema=REJECTS_SCHEMA)}, summary)  # fmt: skip
    _write_stage(triplets_out, stages.TRIPLETS, config, inputs,
                 {TRIPLETS_FILE: triplets}, summary)  # fmt: skip
    return summary


def _write_stage(out: Path, stage: str, config: dict, inputs: list, tables: dict[str, pa.Table],
                 summary: ScenesSummary) -> None:  # fmt: skip
    """Tables, stats, then the manifest last."""
    for name, table in tables.items():
        atomic_write_parquet(out / name, table, **PARQUET_OPTIONS)
    atomic_write_json(out / STATS_FILE, asdict(summary))
    files = {name: table.num_rows for name, table in tables.items()} | {STATS_FILE: None}
    write_manifest(out, stage, config, inputs, files, extra={"stats": asdict(summary)})
