"""Every command of ``scot``, run with arguments a user could get wrong: each ends with exit
code 2 and one line naming the file, row or option, never a traceback.

The commands are found by walking the typer app, so a new command fails
``test_every_command_has_bad_argument_cases`` until it gets cases here. Each case is run
in-process (``CliRunner``); the inputs are wrong enough that no command gets past its
argument checks: no server starts, nothing is downloaded, no model is trained.

A case's ``names`` is the text the ``error:`` line must contain (a path or an option);
``USAGE`` marks a malformed option that click itself refuses (its usage box, exit 2).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from scot_data.cli import app
from scot_data.train.synthetic import write_synthetic_cache

USAGE = None
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Case:
    """``args`` is split on spaces; ``{name}`` in it (and in ``names``) is a path of ``bad``."""

    command: str
    args: str
    names: str | None

    @property
    def id(self) -> str:
        return f"{self.command} {self.args}".replace("{", "").replace("}", "")


CASES: dict[str, list[tuple[str, str | None]]] = {
    "captions ingest": [
        ("--format flickr --input {missing} --out {out}", "'flickr'"),
        ("--format coco --input {missing} --images {empty} --out {out}", "{missing}"),
        ("--format coco --input {empty} --images {empty} --out {out}", "{empty}"),
        ("--format coco --input {garbage_json} --images {empty} --out {out}", "{garbage_json}"),
        ("--format coco --input {coco_json} --images {missing} --out {out}", "{missing}"),
        ("--format coco --input {coco_json} --images {garbage} --out {out}", "{garbage}"),
        ("--format coco --input {coco_json} --images {empty} --out {garbage}", "{garbage}"),
        ("--format table --input {missing} --out {out}", "{missing}"),
        ("--format table --input {garbage_parquet} --out {out}", "{garbage_parquet}"),
        ("--format table --input {empty} --out {out}", "{empty}"),
        ("--format wds --input {missing} --out {out}", "{missing}"),
        ("--format wds --input {empty} --out {out}", "{empty}"),
        ("--format openclipart --input {missing} --out {out}", "{missing}"),
        ("--format openclipart --input {garbage} --out {out}", "{garbage}"),
        ("--format table --input {missing} --out {out} --limit 0", "--limit"),
        ("--format table --input {missing} --out {out} --limit -1", "--limit"),
        ("--format table --input {missing} --out {out} --workers 0", "--workers"),
        ("--format table --input {missing} --out {out} --part-size 0", "--part-size"),
        ("--format table --input {missing} --out {out} --part-size -1", "--part-size"),
        ("--format table --input {missing} --out {out} --holdout -1", "--holdout"),
        ("--format table --input {missing} --out {out} --holdout 1", "--holdout"),
        ("--format table --input {missing} --out {out} --limit many", USAGE),
    ],
    "scenes": [
        ("--captions {missing} --out {out}", "{missing}"),
        ("--captions {garbage} --out {out}", "{garbage}"),
        ("--captions {empty} --out {out}", "{empty}"),
        ("--captions {triplets} --out {out}", "{triplets}"),
        ("--captions {empty} --out {out} --count 0", "--count"),
        ("--captions {empty} --out {out} --count -1", "--count"),
        ("--captions {empty} --out {out} --edits-per-scene 0", "--edits-per-scene"),
    ],
    "triplets generate": [
        ("--captions {missing} --out {out} --backend template", "{missing}"),
        ("--captions {garbage} --out {out} --backend template", "{garbage}"),
        ("--captions {empty} --out {out} --backend template", "{empty}"),
        ("--captions {triplets} --out {out} --backend template", "{triplets}"),
        ("--captions {empty} --out {out} --backend gpt", "--backend"),
        ("--captions {empty} --out {out} --backend template --limit 0", "--limit"),
        ("--captions {empty} --out {out} --backend template --batch-size -1", "--batch-size"),
        ("--captions {empty} --out {out} --backend llm --concurrency 0", "--concurrency"),
        ("--captions {empty} --out {out} --backend llm --timeout -1", "--timeout"),
        ("--captions {empty} --out {out} --backend llm --response-format xml", "--response-format"),
        ("--captions {captions} --out {garbage} --backend template", "{garbage}"),
        ("--captions {captions} --out {out} --backend llm --endpoint {endpoint} --prompt {missing}",
         "{missing}"),
        ("--captions {captions} --out {out} --backend llm --endpoint {endpoint} --prompt {empty}", "{empty}"),
        ("--captions {captions} --out {out} --backend llm --endpoint {endpoint} --prompt {garbage_yaml}",
         "{garbage_yaml}"),
        ("--captions {captions} --out {out} --backend llm --endpoint {endpoint} --prompt {list_yaml}",
         "{list_yaml}"),
        ("--captions {captions} --out {out} --backend llm --endpoint {endpoint} --prompt v0", "v0"),
    ],
    "triplets filter": [
        ("--triplets {missing} --out {out}", "{missing}"),
        ("--triplets {garbage} --out {out}", "{garbage}"),
        ("--triplets {empty} --out {out}", "{empty}"),
        ("--triplets {embeddings} --out {out}", "{embeddings}"),
        ("--triplets {bad_manifest} --out {out}", "{bad_manifest}"),
        ("--triplets {triplets} --out {out} --embeddings {missing}", "{missing}"),
        ("--triplets {triplets} --out {out} --embeddings {triplets}", "{triplets}"),
        ("--triplets {triplets} --out {out} --low 2", "--low"),
        ("--triplets {triplets} --out {out} --low 0.9 --high 0.1", "low (0.9) must be below high (0.1)"),
        ("--triplets {triplets} --out {garbage}", "{garbage}"),
        ("--triplets {triplets} --out {out} --prompt {missing}", "{missing}"),
        ("--triplets {triplets} --out {out} --prompt {garbage_yaml}", "{garbage_yaml}"),
        ("--triplets {triplets} --out {out} --prompt v0", "v0"),
        ("--triplets {triplets} --out {out} --encoder nosuch:model", "nosuch"),
    ],
    "triplets score-labelled": [
        ("--labelled {missing}", "{missing}"),
        ("--labelled {empty}", "{empty}"),
        ("--labelled {garbage}", "{garbage}"),
        ("--labelled {garbage_json}", "{garbage_json}"),
        ("--labelled {list_jsonl}", "{list_jsonl}"),
        ("--labelled {labelled} --prompt {missing}", "{missing}"),
        ("--labelled {labelled} --prompt {garbage_yaml}", "{garbage_yaml}"),
        ("--labelled {labelled} --prompt v0", "v0"),
    ],
    "mix": [
        ("--source {missing}:1 --out {out}", "{missing}"),
        ("--source {garbage}:1 --out {out}", "{garbage}"),
        ("--source {empty}:1 --out {out}", "{empty}"),
        ("--source {embeddings}:1 --out {out}", "{embeddings}"),
        ("--source {triplets} --out {out}", "--source"),
        ("--source {triplets}:0 --out {out}", "--source"),
        ("--source {triplets}:-1 --out {out}", "--source"),
        ("--source {triplets}:heavy --out {out}", "--source"),
        ("--source {triplets}:1 --out {out} --total 0", "--total"),
        ("--source {triplets}:1 --out {out} --total -1", "--total"),
        ("--source {triplets}:1 --out {garbage}", "{garbage}"),
    ],
    "llm serve": [
        ("--port 0", "--port"),
        ("--port -1", "--port"),
        ("--port 70000", "--port"),
        ("--kv-cache-gib 0", "--kv-cache-gib"),
        ("--kv-cache-gib -1", "--kv-cache-gib"),
        ("--max-model-len 0", "--max-model-len"),
        ("--timeout 0", "--timeout"),
        ("--timeout -1", "--timeout"),
        ("--venv {missing}", "{missing}"),
        ("--venv {garbage}", "{garbage}"),
        ("--venv {empty}", "{empty}"),
        ("--venv {venv} --model {missing}", "{missing}"),
        ("--venv {venv} --model {garbage}", "{garbage}"),
        ("--venv {venv} --model {empty}", "{empty}"),
        ("--port eighty", USAGE),
    ],
    "llm stop": [
        ("--port 0", "--port"),
        ("--port -1", "--port"),
        ("--port 70000", "--port"),
        ("--port eighty", USAGE),
    ],
    "llm status": [
        ("extra", USAGE),
        ("--port 8000", USAGE),
    ],
    "fit-lit": [
        ("--captions {missing} --out {out}", "{missing}"),
        ("--captions {garbage} --out {out}", "{garbage}"),
        ("--captions {garbage_parquet} --out {out}", "{garbage_parquet}"),
        ("--captions {empty} --out {out}", "{empty}"),
        ("--captions {triplets} --out {out}", "{triplets}"),
        ("--captions {empty} --out {out} --held-out-fraction 0", "--held-out-fraction"),
        ("--captions {empty} --out {out} --held-out-fraction 1", "--held-out-fraction"),
        ("--captions {empty} --out {out} --held-out-fraction -1", "--held-out-fraction"),
        ("--captions {empty} --out {out} --max-steps 0", "--max-steps"),
        ("--captions {empty} --out {out} --max-steps -1", "--max-steps"),
        ("--captions {empty} --out {out} --workers -1", "--workers"),
        ("--captions {captions} --out {out} --device tpu", "--device"),
        ("--captions {captions} --out {out} --device cuda:99", "--device"),
        ("--captions {captions} --out {garbage}", "{garbage}"),
    ],
    "encoder recall": [
        ("--captions {missing} --encoder lit-mini", "{missing}"),
        ("--captions {empty} --encoder lit-mini", "{empty}"),
        ("--captions {garbage_parquet} --encoder lit-mini", "{garbage_parquet}"),
        ("--captions {triplets_parquet} --encoder lit-mini", "{triplets_parquet}"),
        ("--captions {captions_parquet} --encoder nosuch:model", "nosuch"),
        ("--captions {captions_parquet} --encoder lit-mini@{missing}", "{missing}"),
        ("--captions {captions_parquet} --encoder lit-mini --limit 0", "--limit"),
        ("--captions {captions_parquet} --encoder lit-mini --limit -1", "--limit"),
    ],
    "encoder info": [
        ("nosuch:model", "nosuch"),
        ("lit-mini@{missing}", "{missing}"),
        ("lit-mini@{garbage_safetensors}", "{garbage_safetensors}"),
        ("lit-mini@{empty}", "{empty}"),
        ("hf:{missing}", "{missing}"),
        ("hf:{empty}", "{empty}"),
        ("open_clip:no-such-architecture", "no-such-architecture"),
        ("open_clip:ViT-B-32@{missing}", "{missing}"),
    ],
    "embed": [
        ("--captions {missing} --out {out}", "{missing}"),
        ("--captions {garbage} --out {out}", "{garbage}"),
        ("--captions {empty} --out {out}", "{empty}"),
        ("--captions {triplets} --out {out}", "{triplets}"),
        ("--captions {bad_manifest} --out {out}", "{bad_manifest}"),
        ("--captions {captions} --out {out} --encoder nosuch:model", "nosuch"),
        ("--captions {captions} --out {out} --encoder lit-mini@{garbage_safetensors}",
         "{garbage_safetensors}"),
        ("--captions {captions} --out {out} --triplets {missing}", "{missing}"),
        ("--captions {captions} --out {out} --triplets {embeddings}", "{embeddings}"),
        ("--captions {captions} --out {garbage}", "{garbage}"),
        ("--captions {captions} --out {out} --device tpu", "--device"),
        ("--captions {empty} --out {out} --image-batch-size 0", "--image-batch-size"),
        ("--captions {empty} --out {out} --text-batch-size -1", "--text-batch-size"),
        ("--captions {empty} --out {out} --workers -1", "--workers"),
        ("--captions {empty} --out {out} --shard-max-rows 0", "--shard-max-rows"),
        ("--captions {empty} --out {out} --shard-max-bytes -1", "--shard-max-bytes"),
        ("--captions {empty} --out {out} --block-rows 0", "--block-rows"),
        ("--captions {captions} --out {out} --encoder {tiny} --reuse {missing}", "{missing}"),
    ],
    "verify": [
        ("{missing}", "{missing}"),
        ("{garbage}", "{garbage}"),
        ("{empty}", "{empty}"),
        ("nosuchprotocol://bucket/x", "nosuchprotocol"),
    ],
    "publish": [
        ("{missing} {out}", "{missing}"),
        ("{garbage} {out}", "{garbage}"),
        ("{empty} {out}", "{empty}"),
        ("{triplets} {garbage}", "{garbage}"),
        ("{triplets} nosuchprotocol://bucket/x", "nosuchprotocol"),
        ("{triplets} hf://owner/model", "hf://owner/model"),
        ("{triplets} hf://datasets/owner", "hf://datasets/owner"),
        ("{triplets} hf://datasets/owner/name@dev", "@dev"),
        ("{triplets} hf://datasets/owner/na*me", "na*me"),
        ("{triplets} hf://datasets/owner/name/../up", "'..'"),
        ("{triplets} hf://datasets/owner/name --license Not-A-License!", "--license"),
        ("{triplets} {out} --license cc0-1.0", "--license"),
    ],
    "export": [
        ("{missing} {out}", "{missing}"),
        ("{garbage} {out}", "{garbage}"),
        ("{empty} {out}", "{empty}"),
        ("{triplets} {out}", "{triplets}"),
        ("{bad_manifest} {out}", "{bad_manifest}"),
        ("{embeddings} {garbage}", "{garbage}"),
        ("{embeddings} {embeddings}", "{embeddings}"),
        ("{embeddings} {out}", "--captions"),
        ("{embeddings} {out} --captions {missing}", "{missing}"),
        ("{embeddings} {out} --captions {triplets}", "{triplets}"),
        ("{embeddings} {out} --format parquet", "--format"),
        ("{embeddings} {out} --dtype int8", "--dtype"),
        ("{embeddings} {out} --block-rows 0", "--block-rows"),
        ("{embeddings} {out} --block-rows many", USAGE),
    ],
    "train": [
        ("--embeddings {missing} --triplets {triplets} --out {out}", "{missing}"),
        ("--embeddings {garbage} --triplets {triplets} --out {out}", "{garbage}"),
        ("--embeddings {empty} --triplets {triplets} --out {out}", "{empty}"),
        ("--embeddings {triplets} --triplets {triplets} --out {out}", "{triplets}"),
        ("--embeddings {bad_manifest} --triplets {triplets} --out {out}", "{bad_manifest}"),
        ("--embeddings {embeddings} --triplets {missing} --out {out}", "{missing}"),
        ("--embeddings {embeddings} --triplets {embeddings} --out {out}", "{embeddings}"),
        ("--embeddings {embeddings} --triplets {triplets} --out {garbage}", "{garbage}"),
        ("--embeddings {embeddings} --triplets {triplets} --out {out} --epochs 0", "--epochs"),
        ("--embeddings {embeddings} --triplets {triplets} --out {out} --epochs -1", "--epochs"),
        ("--embeddings {embeddings} --triplets {triplets} --out {out} --batch-size 0", "--batch-size"),
        ("--embeddings {embeddings} --triplets {triplets} --out {out} --lr 0", "--lr"),
        ("--embeddings {embeddings} --triplets {triplets} --out {out} --lr -1", "--lr"),
        ("--embeddings {embeddings} --triplets {triplets} --out {out} --max-triplets 0", "--max-triplets"),
        ("--embeddings {embeddings} --triplets {triplets} --out {out} --target audio", "--target"),
        ("--embeddings {embeddings} --triplets {triplets} --out {out} --device tpu", "--device"),
        ("--embeddings {embeddings} --triplets {triplets} --out {out} --device cuda:99", "--device"),
    ],
    "evaluate": [
        ("--benchmark nosuch --data {cirr} --out {out}", "--benchmark"),
        ("--benchmark cirr --data {missing} --out {out} --encoder {tiny}", "{missing}"),
        ("--benchmark cirr --data {garbage} --out {out} --encoder {tiny}", "{garbage}"),
        ("--benchmark cirr --data {empty} --out {out} --encoder {tiny}", "{empty}"),
        ("--benchmark clipart --data {empty} --out {out} --encoder {tiny}", "{empty}"),
        ("--benchmark fashioniq --data {empty} --out {out} --encoder {tiny}", "{empty}"),
        ("--benchmark circo --data {empty} --out {out} --encoder {tiny}", "{empty}"),
        ("--benchmark cirr --data {cirr} --out {out}", "--encoder"),
        ("--benchmark cirr --data {cirr} --out {out} --encoder {tiny} --split train2", "train2"),
        ("--benchmark clipart --data {cirr} --out {out} --encoder {tiny} --split nosuch", "nosuch"),
        ("--benchmark fashioniq --data {empty} --out {out} --encoder {tiny} --category hats", "hats"),
        ("--benchmark cirr --data {cirr} --out {out} --combiner {missing}", "{missing}"),
        ("--benchmark cirr --data {cirr} --out {out} --combiner {garbage_safetensors}",
         "{garbage_safetensors}"),
        ("--benchmark cirr --data {cirr} --out {out} --combiner {empty}", "{empty}"),
        ("--benchmark cirr --data {cirr} --out {out} --encoder nosuch:model", "nosuch"),
        ("--benchmark cirr --data {cirr} --out {out} --encoder {tiny} --device tpu", "--device"),
        ("--benchmark cirr --data {cirr} --out {out} --encoder {tiny} --workers -1", "--workers"),
        ("--benchmark cirr --data {cirr} --out {out} --encoder {tiny} --image-root {missing}", "{missing}"),
        ("--benchmark cirr --data {cirr} --out {out} --encoder {tiny} --cache {garbage}", "{garbage}"),
        ("--benchmark cirr --data {cirr} --out {garbage} --encoder {tiny}", "{garbage}"),
    ],
    "ablate": [
        ("{missing} --out {out}", "{missing}"),
        ("{empty} --out {out}", "{empty}"),
        ("{garbage_yaml} --out {out}", "{garbage_yaml}"),
        ("{list_yaml} --out {out}", "{list_yaml}"),
        ("{garbage} --out {out}", "{garbage}"),
        ("{ablation} --out {garbage}", "{garbage}"),
        ("no-such-ablation --out {out}", "no-such-ablation"),
    ],
    "search": [
        ("--gallery {missing} --text red", "{missing}"),
        ("--gallery {garbage} --text red", "{garbage}"),
        ("--gallery {empty} --text red", "{empty}"),
        ("--gallery {triplets} --text red", "{triplets}"),
        ("--gallery {bad_manifest} --text red", "{bad_manifest}"),
        ("--gallery {gallery}", "--text"),
        ("--gallery {gallery} --text red -k 0", "--top-k"),
        ("--gallery {gallery} --text red -k -1", "--top-k"),
        ("--gallery {embeddings} --text red", "{embeddings}"),
        ("--gallery {gallery} --image {missing}", "{missing}"),
        ("--gallery {gallery} --image {empty}", "{empty}"),
        ("--gallery {gallery} --image {garbage}", "{garbage}"),
        ("--gallery {gallery} --text red --combiner {missing}", "{missing}"),
        ("--gallery {gallery} --text red --combiner {garbage_safetensors}", "{garbage_safetensors}"),
        ("--gallery {gallery} --text red --encoder nosuch:model", "nosuch"),
        ("--gallery {gallery} --text red --device tpu", "--device"),
        ("--gallery {gallery} --text red -k many", USAGE),
    ],
    "report": [
        ("{missing}", "{missing}"),
        ("{empty}", "{empty}"),
        ("{garbage_json}", "{garbage_json}"),
        ("{list_json}", "{list_json}"),
        ("{object_json}", "{object_json}"),
        ("{results_json} --out {garbage}", "{garbage}"),
    ],
    "run": [
        ("{missing} --engine local", "{missing}"),
        ("{empty} --engine local", "{empty}"),
        ("{garbage_yaml} --engine local", "{garbage_yaml}"),
        ("{list_yaml} --engine local", "{list_yaml}"),
        ("{garbage} --engine local", "{garbage}"),
        ("{missing} --engine airflow", USAGE),
        ("no-such-spec --engine local", "no-such-spec"),
    ],
    "spec check": [
        ("{missing}", "{missing}"),
        ("{empty}", "{empty}"),
        ("{garbage_yaml}", "{garbage_yaml}"),
        ("{list_yaml}", "{list_yaml}"),
        ("{garbage}", "{garbage}"),
        ("no-such-spec", "no-such-spec"),
    ],
    "spec list": [
        ("demo", USAGE),
    ],
    "bench build-clipart": [
        ("--captions {missing} --out {out}", "{missing}"),
        ("--captions {garbage} --out {out}", "{garbage}"),
        ("--captions {empty} --out {out}", "{empty}"),
        ("--captions {triplets} --out {out}", "{triplets}"),
        ("--captions {empty} --out {out} --queries-per-kind 0", "--queries-per-kind"),
        ("--captions {empty} --out {out} --queries-per-kind -1", "--queries-per-kind"),
    ],
    "bench captions": [
        ("--data {missing} --out {out}", "{missing}"),
        ("--data {garbage} --out {out}", "{garbage}"),
        ("--data {empty} --out {out}", "{empty}"),
        ("--data {empty} --out {out} --split train", "train"),
        ("--data {empty} --out {empty}", "{empty}"),
    ],
}


def all_cases() -> list[Case]:
    return [Case(command, args, names) for command, cases in CASES.items() for args, names in cases]


def command_names() -> list[str]:
    """Every leaf command of the app, as typed after ``scot``."""
    names: list[str] = []

    def walk(group: Any, prefix: tuple[str, ...]) -> None:
        for name, command in group.commands.items():
            if hasattr(command, "commands"):  # a group (typer vendors its own click)
                walk(command, (*prefix, name))
            else:
                names.append(" ".join((*prefix, name)))

    walk(typer.main.get_command(app), ())
    return sorted(names)


def test_every_command_has_bad_argument_cases() -> None:
    commands = command_names()
    assert len(commands) > 20
    assert sorted(set(commands) - set(CASES)) == [], "commands without bad-argument cases"
    assert sorted(set(CASES) - set(commands)) == [], "cases for commands that do not exist"


def finished_stages(root: Path, tiny_spec: str) -> dict[str, Path]:
    """Small real stage folders, for cases where one input is right and the next is wrong: a
    caption stage (3 images), a synthetic embedding cache and its triplets, a CIRR-layout
    benchmark and the gallery cache its evaluation embedded with the tiny encoder."""
    from scot_data.captions.config import CocoCaptions
    from scot_data.captions.ingest import ingest_captions
    from scot_data.evaluate.evaluate import EvalConfig, evaluate
    from tests.conftest import png_bytes
    from tests.test_evaluate import cirr_layout

    images = root / "coco" / "images"
    images.mkdir(parents=True)
    for i in range(3):
        (images / f"{i}.png").write_bytes(png_bytes(i))
    coco = {"images": [{"id": i, "file_name": f"{i}.png"} for i in range(3)],
            "annotations": [{"id": 10 + i, "image_id": i, "caption": f"a shape number {i}"}
                            for i in range(3)]}  # fmt: skip
    (root / "coco" / "captions.json").write_text(json.dumps(coco))
    config = CocoCaptions(input=root / "coco" / "captions.json", images=images, workers=1)
    ingest_captions(config, root / "captions", show_progress=False)
    embeddings, triplets = write_synthetic_cache(root / "stages", images=4, per_image=2, dim=8)
    cirr = cirr_layout(root / "cirr")
    evaluate(EvalConfig(benchmark="cirr", data=cirr, encoder=tiny_spec, device="cpu", num_workers=0),
             root / "eval", show_progress=False)  # fmt: skip
    return {"captions": root / "captions", "captions_parquet": root / "captions" / "captions.parquet",
            "embeddings": embeddings, "triplets": triplets, "triplets_parquet": triplets / "triplets.parquet",
            "cirr": cirr, "gallery": root / "eval" / "cache" / "cirr-val"}  # fmt: skip


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory, tiny_spec: str) -> dict[str, str]:
    """Wrong inputs of every kind, real finished stages to be wrong about, and right values
    for the arguments a case does not test."""
    root = tmp_path_factory.mktemp("bad")
    paths = {
        "missing": root / "no-such-thing",
        "empty": root / "empty",
        "garbage": root / "garbage.bin",
        "garbage_json": root / "garbage.json",
        "garbage_yaml": root / "garbage.yaml",
        "garbage_parquet": root / "garbage.parquet",
        "garbage_safetensors": root / "garbage.safetensors",
        "list_yaml": root / "list.yaml",
        "list_json": root / "list.json",
        "list_jsonl": root / "list.jsonl",
        "object_json": root / "object.json",
        "coco_json": root / "coco.json",
        "results_json": root / "results.json",
        "labelled": root / "labelled.jsonl",
        "bad_manifest": root / "bad-manifest",
        "venv": root / "venv",
        "ablation": REPO / "pipelines" / "ablations" / "demo.yaml",
        **finished_stages(root, tiny_spec),
    }
    paths["empty"].mkdir()
    noise = bytes(range(256)) * 4
    for name in ("garbage", "garbage_parquet", "garbage_safetensors"):
        paths[name].write_bytes(noise)
    paths["garbage_json"].write_text('{"images": [1, 2,\n')
    paths["garbage_yaml"].write_text("name: [unclosed\n  - : x\n\t")
    paths["list_yaml"].write_text("- a\n- b\n")
    paths["list_json"].write_text("[1, 2]\n")
    paths["list_jsonl"].write_text("[1, 2]\n[3]\n")
    paths["object_json"].write_text('{"benchmark": "cirr"}\n')
    paths["coco_json"].write_text(json.dumps({"images": [], "annotations": []}))
    paths["results_json"].write_text(json.dumps({"benchmark": "cirr", "metrics": {}}))
    rows = [{"triplet_id": str(i), "caption": "a red car", "modification": "make it blue",
             "modified_caption": "a blue car", "label": "good" if i % 2 else "bad",
             "similarity": 0.5 + i / 100} for i in range(20)]  # fmt: skip
    paths["labelled"].write_text("".join(json.dumps(r) + "\n" for r in rows))
    paths["bad_manifest"].mkdir()
    (paths["bad_manifest"] / "manifest.json").write_text("{not json")
    (paths["venv"] / "bin").mkdir(parents=True)
    python = paths["venv"] / "bin" / "python"  # never run: every case stops before it (if not, it fails fast)
    python.write_text("#!/bin/sh\nexit 1\n")
    python.chmod(0o755)
    # nothing listens on port 9 (discard); no case gets as far as asking it
    return {**{k: str(v) for k, v in paths.items()}, "tiny": tiny_spec, "endpoint": "http://127.0.0.1:9/v1"}


@pytest.mark.parametrize("case", all_cases(), ids=lambda c: c.id)
def test_bad_argument_exits_2_with_one_line(case: Case, bad: dict[str, str], tmp_path: Path) -> None:
    paths = {**bad, "out": str(tmp_path / "out")}
    args = [*case.command.split(), *(token.format(**paths) for token in case.args.split())]
    result = CliRunner().invoke(app, args)
    shown = f"{' '.join(args)}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), (
        f"uncaught {type(result.exception).__name__}: {result.exception}\n{shown}"
    )
    assert "Traceback" not in result.stdout + result.stderr, shown
    assert result.exit_code == 2, shown
    if case.names is USAGE:
        assert "Usage:" in result.stderr and "Error" in result.stderr, shown
        return
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), shown
    assert case.names.format(**paths) in lines[0], shown
