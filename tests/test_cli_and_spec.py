"""The command line's exit codes and messages, and pipeline-spec validation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from scot_data.errors import ScotInputError
from scot_data.pipeline import run_pipeline
from scot_data.spec import load_spec

REPO = Path(__file__).resolve().parents[1]


def scot(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scot_data", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "flickr", "--input", "x", "--out", "o"], "error: unknown format 'flickr' (choose from coco"),
        (["--format", "coco", "--input", "/nope.json", "--images", "/tmp", "--out", "o"],
         "error: COCO captions file not found: /nope.json"),
        (["--format", "wds", "--input", "/nope-{0..1}.tar", "--out", "o"], "error: WebDataset shard not found: /nope-0.tar"),
        (["--format", "openclipart", "--input", "/nope", "--out", "o"], "error: openclipart SVG folder not found: /nope"),
        (["--format", "table", "--input", "/nope.csv", "--out", "o", "--limit", "0"], "error: --limit: Input should be"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_with_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    result = scot("captions", "ingest", *args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_cli_ingest_prints_summary(coco_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = scot(
        "captions", "ingest", "--format", "coco", "--input", str(coco_dir / "annotations/captions_train2017.json"),
        "--images", str(coco_dir / "train2017"), "--out", str(out), "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "rows" in result.stdout and "reject_reasons" in result.stdout
    assert pq.read_metadata(out / "captions.parquet").num_rows == 5


def write_spec(tmp_path: Path, body: dict) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    path = write_spec(tmp_path, {"name": "x", "captions": {"format": "openclipart", "max_keywrods": 2}})
    with pytest.raises(ScotInputError) as error:
        load_spec(path)
    assert str(error.value) == f"{path}: captions.openclipart.max_keywrods: unknown key"


def test_unknown_section_and_bad_values(tmp_path: Path) -> None:
    path = write_spec(
        tmp_path,
        {"name": "x", "captoins": {}, "captions": {"format": "table", "input": "t.csv"}, "train": {"epochs": 0}},
    )
    with pytest.raises(ScotInputError) as error:
        load_spec(path)
    message = str(error.value)
    assert "captoins: unknown key" in message
    assert "train.epochs: Input should be greater than or equal to 1" in message


def test_unknown_format_in_spec(tmp_path: Path) -> None:
    path = write_spec(tmp_path, {"name": "x", "captions": {"format": "flickr"}})
    with pytest.raises(ScotInputError, match=r"captions: Input tag 'flickr' found using 'format' does not match"):
        load_spec(path)


def test_bad_yaml_names_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ncaptions: [unclosed\n")
    with pytest.raises(ScotInputError, match=r"bad.yaml: not valid YAML"):
        load_spec(path)


def test_cli_spec_error_exit_code(tmp_path: Path) -> None:
    path = write_spec(tmp_path, {"name": "x", "captions": {"format": "openclipart", "colour": "red"}})
    result = scot("run", str(path))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {path}: captions.openclipart.colour: unknown key"


@pytest.mark.parametrize("name", ["demo", "coco-290k"])
def test_shipped_specs_validate(name: str) -> None:
    spec = load_spec(REPO / "pipelines" / f"{name}.yaml")
    assert spec.name == name and spec.out == Path("shards") / name
    assert spec.triplets is not None and spec.encoder is not None


def test_run_skips_complete_stage_and_reruns_on_change(coco_dir: Path, tmp_path: Path) -> None:
    annotations = coco_dir / "annotations/captions_train2017.json"
    body = {
        "name": "t",
        "output_dir": str(tmp_path / "run"),
        "captions": {"format": "coco", "input": str(annotations), "images": str(coco_dir / "train2017")},
        "evaluate": {"benchmarks": []},
    }
    spec = load_spec(write_spec(tmp_path, body))
    first = {r.stage: r for r in run_pipeline(spec, show_progress=False)}
    assert first["captions"].status == "done" and first["captions"].summary["rows"] == 5
    assert first["evaluate"].status == "done" and first["evaluate"].summary == {"metrics": {}, "reports": []}

    second = {r.stage: r for r in run_pipeline(spec, show_progress=False)}
    assert second["captions"].status == "skipped (complete)" and second["captions"].summary["rows"] == 5

    annotations.write_text(annotations.read_text().replace("A bowl of fruit.", "A bowl of pears."))
    third = {r.stage: r for r in run_pipeline(spec, show_progress=False)}
    assert third["captions"].status == "done"
    captions = pq.read_table(tmp_path / "run/captions/captions.parquet").column("caption").to_pylist()
    assert "A bowl of pears." in captions and "A bowl of fruit." not in captions
