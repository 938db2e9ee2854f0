"""Scene captions and scene triplets: training clip-art objects composed into scenes.

Single drawings on white teach neither the encoder nor the Combiner what a composed query
looks like ("the lamp, but with a violin instead of the cup"): DESIGN.md section 5 measured
that triplets over single objects do not transfer to two-object composites. This module
composes the *training* objects (never the held-out ones the clip-art benchmark uses) into
scenes of one or two objects, on white or a coloured background, optionally tinted, with
compositional captions ("a red lamp and a violin on a blue background"), and writes:

- ``captions/``: a finished caption-stage directory of the reference scenes (their PNGs in
  ``captions/images``), which ``scot encoder fit-lit`` and ``scot embed`` read as any other;
- ``triplets/``: a finished triplet-stage directory with one template edit per scene
  (replace, add, remove, background, recolour), whose modified caption describes the edited
  scene. The phrasings differ from the benchmark's, so a model cannot win by matching them.

The renderer is the benchmark's (``scot_data.evaluate.clipart``), so training and test
scenes share their look but no object.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field
from rich.progress import Progress

from scot_data import ids
from scot_data.atomic import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_parquet,
    remove_stale_temporaries,
)
from scot_data.captions.ingest import CAPTIONS_FILE, PARQUET_OPTIONS, REJECTS_FILE, STATS_FILE
from scot_data.captions.records import CAPTIONS_SCHEMA, REJECTS_SCHEMA
from scot_data.errors import ScotInputError
from scot_data.evaluate.clipart import (
    KINDS,
    ClipartBenchConfig,
    ClipartObject,
    EditKind,
    Placed,
    Scene,
    article,
    is_usable_name,
    load_cutout,
    normalise_name,
    png_bytes,
    render_scene,
    scene_caption,
    word_vocabulary,
)
from scot_data.manifest import (
    fingerprint_input,
    finished_summary,
    is_complete,
    stage_fingerprint,
    write_manifest,
)
from scot_data.triplets.records import TRIPLETS_FILE, TRIPLETS_SCHEMA

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


class ScenesConfig(BaseModel):
    """How many scenes, and how they vary."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int = Field(4000, ge=1, description="reference scenes, one triplet each")
    kinds: tuple[EditKind, ...] = KINDS
    background_share: float = Field(0.3, ge=0.0, le=1.0, description="share of references on a colour")
    max_name_words: int = Field(3, ge=1)
    known_words: bool = Field(True, description="only names whose words the text tower's vocabulary holds")
    seed: int = 0


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
    """One scene edit of ``kind``: objects A, B, C and colours X (reference), Y (new)."""
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
    text = phrasing.format(**fields)
    if kind == "replace":
        return SceneTriplet(
            kind, Scene((Placed(a), Placed(b)), backdrop), Scene((Placed(a), Placed(c)), backdrop), text
        )
    if kind == "add":
        return SceneTriplet(
            kind, Scene((Placed(a),), backdrop), Scene((Placed(a), Placed(b)), backdrop), text
        )
    if kind == "remove":
        return SceneTriplet(
            kind, Scene((Placed(a), Placed(b)), backdrop), Scene((Placed(a),), backdrop), text
        )
    if kind == "background":
        return SceneTriplet(kind, Scene((Placed(a),), backdrop), Scene((Placed(a),), y), text)
    return SceneTriplet(kind, Scene((Placed(a),), backdrop), Scene((Placed(a, y),), backdrop), text)


def plan_scene_triplets(
    objects: list[ClipartObject], cfg: ScenesConfig, palette: list[str]
) -> list[SceneTriplet]:
    """``count`` distinct edits, kinds in turn, from one seeded stream."""
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


def _render(planned: list[SceneTriplet], images: Path, cutouts: dict, look: ClipartBenchConfig,
            progress: Progress) -> int:  # fmt: skip
    """Write each reference scene's PNG once (resumable: existing files are kept)."""
    rendered = 0
    task = progress.add_task("scenes", total=len(planned))
    for edit in planned:
        path = images / f"{edit.reference.name(look)}.png"
        if not path.exists():
            atomic_write_bytes(path, png_bytes(render_scene(edit.reference, cutouts, look)))
            rendered += 1
        progress.advance(task)
    return rendered


def _captions_table(planned: list[SceneTriplet], images: Path, look: ClipartBenchConfig) -> pa.Table:
    rows = []
    for edit in planned:
        name = edit.reference.name(look)
        caption = scene_caption(edit.reference)
        rows.append({"caption_id": ids.caption_id(SOURCE, name, caption), "image_id": ids.image_id(SOURCE, name),
                     "image_uri": str((images / f"{name}.png").resolve()), "caption": caption, "source": SOURCE})  # fmt: skip
    return pa.Table.from_pylist(rows, schema=CAPTIONS_SCHEMA)


def _triplets_table(planned: list[SceneTriplet], captions: pa.Table, seed: int) -> pa.Table:
    rows = []
    for edit, ref in zip(planned, captions.to_pylist()):
        modified = scene_caption(edit.target)
        rows.append({
            "triplet_id": ids.stable_id("triplet", ref["caption_id"], edit.modification, modified),
            "caption_id": ref["caption_id"], "image_id": ref["image_id"], "caption": ref["caption"],
            "modification": edit.modification, "modified_caption": modified, "edit_type": edit.kind,
            "llm_model": TEMPLATE_VERSION, "prompt_version": TEMPLATE_VERSION, "seed": seed,
        })  # fmt: skip
    return pa.Table.from_pylist(rows, schema=TRIPLETS_SCHEMA)


def build_scenes(captions_dir: str | Path, out_dir: str | Path, cfg: ScenesConfig | None = None,
                 show_progress: bool = True) -> ScenesSummary:  # fmt: skip
    """Scene captions (``out/captions``) and scene triplets (``out/triplets``), each a
    finished stage directory; an identical finished build is skipped."""
    started = time.perf_counter()
    cfg = cfg or ScenesConfig()
    out, source = Path(out_dir), Path(captions_dir) / CAPTIONS_FILE
    captions_out, triplets_out = out / "captions", out / "triplets"
    inputs = [fingerprint_input(source)]
    config = {**cfg.model_dump(mode="json"), "render": ClipartBenchConfig().model_dump(mode="json")}
    done = [is_complete(d, stage, stage_fingerprint(stage, config, inputs))
            for d, stage in ((captions_out, "captions"), (triplets_out, "triplets"))]  # fmt: skip
    if all(done):
        summary = finished_summary(triplets_out, ScenesSummary)
        summary.out_dir = str(out)
        return summary
    look = ClipartBenchConfig()
    images = captions_out / "images"
    images.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(images)
    summary = ScenesSummary(out_dir=str(out))
    with Progress(disable=not show_progress) as progress:
        vocabulary = word_vocabulary() if cfg.known_words else None
        objects = training_objects(source, cfg.max_name_words, cfg.seed, vocabulary)
        cutouts = {o.image_id: c for o in objects if (c := load_cutout(o.image_uri)) is not None}
        objects = [o for o in objects if o.image_id in cutouts]
        planned = plan_scene_triplets(objects, cfg, list(look.colours))
        summary.images_rendered = _render(planned, images, cutouts, look, progress)
    captions = _captions_table(planned, images, look)
    triplets = _triplets_table(planned, captions, cfg.seed)
    summary.objects, summary.scenes, summary.triplets = len(objects), captions.num_rows, triplets.num_rows
    summary.edit_types = {k: sum(e.kind == k for e in planned) for k in cfg.kinds}
    summary.seconds = round(time.perf_counter() - started, 2)
    _write_stage(captions_out, "captions", config, inputs,
                 {CAPTIONS_FILE: captions, REJECTS_FILE: pa.Table.from_pylist([], schema=REJECTS_SCHEMA)}, summary)  # fmt: skip
    _write_stage(triplets_out, "triplets", config, inputs,
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
