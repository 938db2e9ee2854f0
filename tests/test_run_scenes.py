"""``scot run`` with the scenes and mix sections on real clip-art: which tables each stage
reads, and one image-tower pass (embed's vectors from the fit's features equal a tower run)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from scot_data.embed.config import EmbedConfig
from scot_data.embed.stage import embed_stage
from scot_data.embed.view import load_embeddings
from scot_data.encoders import EncoderSpec
from scot_data.errors import ScotInputError
from scot_data.pipeline import run_pipeline
from scot_data.spec import load_spec
from tests.conftest import REAL_CLIPART

SCENES, EDITS = 60, 2


def write_spec(tmp_path: Path, **sections: object) -> Path:
    body = {"name": "scenes", "output_dir": str(tmp_path / "run"),
            "captions": {"format": "openclipart", "input": str(REAL_CLIPART), "limit": 300, "holdout": 0.15},
            **sections}  # fmt: skip
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def inputs(stage_dir: Path) -> list[str]:
    manifest = json.loads((stage_dir / "manifest.json").read_text())
    return [Path(i["path"]).relative_to(stage_dir.parent).as_posix() for i in manifest["inputs"]]


def test_a_mix_names_only_stages_the_spec_runs(tmp_path: Path) -> None:
    runs_no_scenes = r"spec.yaml: mix.sources names 'scenes', a stage this spec does not run$"
    with pytest.raises(ScotInputError, match=runs_no_scenes):
        load_spec(write_spec(tmp_path, triplets={"backend": "template"}, mix={"sources": {"scenes": 1}}))
    with pytest.raises(ScotInputError, match=r"mix\.sources: .*'embed' is not a stage with triplets"):
        load_spec(write_spec(tmp_path, triplets={"backend": "template"}, mix={"sources": {"embed": 1}}))
    with pytest.raises(ScotInputError, match=r"weight -1\.0 must be positive"):
        load_spec(write_spec(tmp_path, triplets={"backend": "template"}, mix={"sources": {"triplets": -1}}))


@pytest.mark.slow
@pytest.mark.skipif(not REAL_CLIPART.is_dir(), reason="needs Debian openclipart-svg")
def test_scenes_run_reads_scene_tables_and_runs_the_image_tower_once(tmp_path: Path) -> None:
    spec = load_spec(write_spec(
        tmp_path,
        scenes={"count": SCENES, "edits_per_scene": EDITS},
        triplets={"backend": "template"},
        mix={"sources": {"scenes": 0.5, "triplets": 0.5}},
        embed={"encoder": "lit-mini", "fit_lit": True, "device": "cpu"},
        train={"epochs": 1, "batch_size": 16, "device": "cpu"},
    ))  # fmt: skip
    results = {r.stage: r for r in run_pipeline(spec, show_progress=False)}
    run = tmp_path / "run"
    assert list(results) == ["captions", "scenes", "triplets", "mix", "embed", "train"]
    scenes = results["scenes"].summary
    assert scenes["scenes"] == SCENES and scenes["triplets"] == SCENES * EDITS

    # the LLM stage (here: templates) rewrites the scene captions; the mix draws 1:1 on both
    assert inputs(run / "triplets") == ["scenes/captions/captions.parquet"]
    mix = results["mix"].summary
    assert [s["taken"] for s in mix["sources"]] == [SCENES, SCENES] and mix["triplets"] == 2 * SCENES
    assert inputs(run / "train") == ["embed/manifest.json", "mix/manifest.json"]
    assert inputs(run / "fit-lit") == ["captions/captions.parquet", "scenes/captions/captions.parquet"]

    # embed: every scene image through the head only, on the fit's features ...
    embed = results["embed"].summary
    assert embed["images"] == SCENES and embed["images_from_tower_features"] == SCENES
    # ... giving the vectors a tower run of the same encoder gives
    heads = run / "fit-lit" / "heads.safetensors"
    cfg = EmbedConfig(encoder=EncoderSpec(backend="lit-mini", weights=str(heads)), device="cpu")
    tower = embed_stage(cfg, run / "scenes/captions", run / "mix", tmp_path / "tower", show_progress=False)
    assert tower.images_embedded == SCENES and tower.images_from_tower_features == 0
    ours, theirs = load_embeddings(run / "embed", "images"), load_embeddings(tmp_path / "tower", "images")
    assert ours.ids.to_pylist() == theirs.ids.to_pylist()
    gap = np.abs(ours.matrix.astype(np.float32) - theirs.matrix.astype(np.float32)).max()
    assert gap < 2e-3  # float16 rounding of the same float32 vectors (batching aside)

    # a changed image is not taken from the features: its file stamp no longer matches
    from scot_data.encoders.lit import LitEncoder
    from scot_data.encoders.lit_family import LIT_MINI
    from scot_data.fit_lit.features import image_features_for

    encoder = LitEncoder(LIT_MINI, heads=heads, device="cpu")
    known = image_features_for(run / "fit-lit" / "tower_features.safetensors", encoder)
    scene_uri = pq.read_table(run / "scenes/captions/captions.parquet").column("image_uri")[0].as_py()
    assert scene_uri in {path for path, _ in known.values()}
    os.utime(scene_uri, ns=(1, 1))
    again = image_features_for(run / "fit-lit" / "tower_features.safetensors", encoder)
    assert len(again) == len(known) - 1 and scene_uri not in {path for path, _ in again.values()}

    second = {r.stage: r.status for r in run_pipeline(spec, show_progress=False)}
    assert set(second.values()) == {"skipped (complete)"}
