"""The command line's exit codes and messages, and pipeline-spec validation."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from scot_data.cli import app
from scot_data.errors import ScotInputError
from scot_data.pipeline import run_pipeline
from scot_data.spec import load_spec

REPO = Path(__file__).resolve().parents[1]


def scot(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scot_data", *args], capture_output=True, text=True, cwd=cwd,
                          check=False)  # fmt: skip


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


def test_an_old_section_name_is_one_line_naming_the_new_one(tmp_path: Path) -> None:
    path = write_spec(tmp_path, {"name": "x", "captions": {"format": "openclipart", "input": "svg"},
                                 "encoder": {"backend": "lit-mini", "fit_lit": True}})  # fmt: skip
    result = scot("spec", "check", str(path))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {path}: section 'encoder' is now 'embed' (the stage's name everywhere)"


def test_the_embed_section_takes_the_encoder_as_text_or_mapping_and_checks_the_backend(tmp_path: Path) -> None:
    base = {"name": "x", "captions": {"format": "openclipart", "input": "svg"}}
    as_text = load_spec(write_spec(tmp_path, {**base, "embed": {"encoder": "open_clip:ViT-B-32@/w.pt"}}))
    as_mapping = load_spec(write_spec(tmp_path, {**base, "embed": {
        "encoder": {"backend": "open_clip", "model": "ViT-B-32", "weights": "/w.pt"}}}))  # fmt: skip
    assert as_text.embed == as_mapping.embed and str(as_text.embed.encoder) == "open_clip:ViT-B-32@/w.pt"
    with pytest.raises(ScotInputError, match=r"embed.encoder.backend: unknown backend 'clip9'"):
        load_spec(write_spec(tmp_path, {**base, "embed": {"encoder": "clip9:big"}}))
    with pytest.raises(ScotInputError, match=r"embed.encoder.pretrained: unknown key"):
        load_spec(write_spec(tmp_path, {**base, "embed": {"encoder": {"backend": "lit-mini", "pretrained": "h"}}}))
    fit_lit_needs_lit = r"fit_lit: fits a LiT encoder's heads \(lit-mini, lit-base\); the encoder is open_clip"
    with pytest.raises(ScotInputError, match=fit_lit_needs_lit):
        load_spec(write_spec(tmp_path, {**base, "embed": {"encoder": "open_clip:ViT-B-32", "fit_lit": True}}))


@pytest.mark.parametrize("name", ["demo", "coco-290k"])
def test_shipped_specs_validate(name: str) -> None:
    spec = load_spec(REPO / "pipelines" / f"{name}.yaml")
    assert spec.name == name and spec.out == Path("shards") / name
    assert spec.triplets is not None and spec.embed is not None


@pytest.mark.parametrize("name", ["clipart", "demo"])
def test_shipped_ablations_choose_on_val_and_report_test(name: str) -> None:
    from scot_data.evaluate.ablate import load_ablation

    ablation = load_ablation(REPO / "pipelines" / "ablations" / f"{name}.yaml")
    assert (ablation.select_split, ablation.report_split) == ("val", "test") and len(ablation.seeds) == 3
    demo = load_spec(REPO / "pipelines" / "demo.yaml")
    assert demo.evaluate is not None and demo.evaluate.benchmarks[0].splits == ("val", "test")
    assert ablation.benchmark == demo.evaluate.benchmarks[0].data and ablation.cache == demo.out / "evaluate" / "cache"


def test_shipped_files_by_bare_name_from_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``demo``, ``v1``: the package's own files, from a folder with no pipelines/ in it; a
    name with a suffix or a folder is a path; the checkout's pipelines/ is the same files."""
    from scot_data.evaluate.ablate import load_ablation
    from scot_data.triplets.config import TripletsConfig
    from scot_data.triplets.generate import make_run
    from scot_data.triplets.prompts import load_prompt

    shipped = REPO / "scot_data" / "pipelines"
    assert (REPO / "pipelines").resolve() == shipped
    monkeypatch.chdir(tmp_path)
    assert load_spec("demo") == load_spec(shipped / "demo.yaml")
    assert load_ablation("clipart") == load_ablation(shipped / "ablations" / "clipart.yaml")
    demo_prompt = load_spec("demo").triplets.prompt  # type: ignore[union-attr]
    assert str(demo_prompt) == "scenes-v1" and load_prompt(demo_prompt).version == "scenes-v1"
    default = TripletsConfig()
    assert load_prompt(default.prompt).sha256 == hashlib.sha256((shipped / "prompts/v1.yaml").read_bytes()).hexdigest()
    by_path = TripletsConfig(prompt=REPO / "pipelines" / "prompts" / "v1.yaml")
    assert make_run(default).run_key == make_run(by_path).run_key  # one prompt text, one set of parts
    with pytest.raises(ScotInputError, match=r"^no-such: no shipped pipeline spec .*\(shipped: coco-290k, demo;"):
        load_spec("no-such")
    with pytest.raises(ScotInputError, match=r"^pipeline spec not found: demo\.yaml$"):
        load_spec("demo.yaml")  # a suffix makes it a path, here in the working folder
    (tmp_path / "demo.yaml").write_text(yaml.safe_dump({"name": "mine", "captions": {"format": "table", "input": "c"}}))
    assert load_spec("demo.yaml").name == "mine" and load_spec("demo").name == "demo"
    listed = CliRunner().invoke(app, ["spec", "list"])
    assert listed.exit_code == 0, listed.output
    rows = [line.split() for line in listed.stdout.splitlines()]
    assert [(row[-2], Path(row[-1])) for row in rows] == [
        ("coco-290k", shipped / "coco-290k.yaml"), ("demo", shipped / "demo.yaml"),
        ("clipart", shipped / "ablations/clipart.yaml"),
        ("demo-recipe", shipped / "ablations/demo-recipe.yaml"), ("demo", shipped / "ablations/demo.yaml"),
        ("scenes-v1", shipped / "prompts/scenes-v1.yaml"), ("v1", shipped / "prompts/v1.yaml"),
    ]  # fmt: skip


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
    assert first["evaluate"].status == "done"
    assert first["evaluate"].summary == {"metrics": {}, "deltas": {}, "reports": []}

    second = {r.stage: r for r in run_pipeline(spec, show_progress=False)}
    assert second["captions"].status == "skipped (complete)" and second["captions"].summary["rows"] == 5

    annotations.write_text(annotations.read_text().replace("A bowl of fruit.", "A bowl of pears."))
    third = {r.stage: r for r in run_pipeline(spec, show_progress=False)}
    assert third["captions"].status == "done"
    captions = pq.read_table(tmp_path / "run/captions/captions.parquet").column("caption").to_pylist()
    assert "A bowl of pears." in captions and "A bowl of fruit." not in captions


def test_run_evaluates_a_real_benchmark_on_each_split(coco_dir: Path, tiny_spec: str, tmp_path: Path) -> None:
    """captions -> template triplets -> embeddings -> Combiner -> evaluate on a CIRR-layout
    benchmark with val and test splits whose targets are pixel copies of their references:
    image-only search must find every one at rank 1 (the reference removed), on both splits."""
    from tests.test_evaluate import COPIES, copy_cirr_layout

    bench = copy_cirr_layout(copy_cirr_layout(tmp_path / "bench", "val"), "test")
    body = {
        "name": "t", "output_dir": str(tmp_path / "run"),
        "captions": {"format": "coco", "input": str(coco_dir / "annotations/captions_train2017.json"),
                     "images": str(coco_dir / "train2017")},
        "triplets": {"backend": "template"},
        "embed": {"encoder": tiny_spec, "device": "cpu"},
        "train": {"epochs": 2, "batch_size": 4, "device": "cpu", "val_fraction": 0.0},
        "evaluate": {"benchmarks": [{"name": "cirr", "data": str(bench), "splits": ["val", "test"]}]},
    }  # fmt: skip
    results = {r.stage: r for r in run_pipeline(load_spec(write_spec(tmp_path, body)), show_progress=False)}
    summary = results["evaluate"].summary
    assert list(summary["metrics"]) == ["cirr val", "cirr test"]
    for split in ("val", "test"):
        metrics, deltas = summary["metrics"][f"cirr {split}"], summary["deltas"][f"cirr {split}"]
        assert set(metrics) == {"image_only", "text_only", "sum", "combiner"}
        assert metrics["image_only"]["R@1"] == 100.0 and metrics["image_only"]["R_subset@1"] == 100.0
        assert deltas["image_only"]["R@1"]["mean"] == pytest.approx(100.0 - metrics["sum"]["R@1"], abs=0.051)
        ranks = pq.read_table(tmp_path / "run" / "evaluate" / f"cirr-{split}" / "queries.parquet")
        assert ranks.column("rank_image_only").to_pylist() == [1] * COPIES
        assert all(0.0 < lam < 1.0 for lam in ranks.column("lambda").to_pylist())
    assert [Path(p).parent.name for p in summary["reports"]] == ["cirr-val", "cirr-test"]


def coco_spec(tmp_path: Path, coco_dir: Path, out: str = "run", **sections: dict) -> Path:
    """A spec over the coco fixture: captions, template triplets, and any extra sections."""
    body = {
        "name": "t",
        "output_dir": str(tmp_path / out),
        "captions": {"format": "coco", "input": str(coco_dir / "annotations/captions_train2017.json"),
                     "images": str(coco_dir / "train2017")},
        "triplets": {"backend": "template"},
        **sections,
    }  # fmt: skip
    path = tmp_path / f"{out}.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def stage_rows(stdout: str) -> dict[str, str]:
    """Stage -> status from the final table ``scot run`` prints."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if len(cells) == 4 and cells[0] in ("captions", "triplets", "encoder", "train", "evaluate"):
            rows[cells[0]] = cells[1]
    return rows


def test_cli_run_local_prints_table_then_skips_everything(coco_dir: Path, tmp_path: Path) -> None:
    spec = coco_spec(tmp_path, coco_dir)
    first = scot("run", str(spec), "--engine", "local")
    assert first.returncode == 0, first.stderr
    assert stage_rows(first.stdout) == {"captions": "done", "triplets": "done"}, first.stdout
    assert "rows 5" in first.stdout and "total " in first.stdout
    assert first.stdout.count("pipeline t ->") == 1  # the live view is transient: one table, the final one
    second = scot("run", str(spec), "--engine", "local", "--no-progress")
    assert second.returncode == 0, second.stderr
    assert stage_rows(second.stdout) == {"captions": "skipped (complete)", "triplets": "skipped (complete)"}


def test_run_rejects_unknown_engine(coco_dir: Path, tmp_path: Path) -> None:
    result = scot("run", str(coco_spec(tmp_path, coco_dir)), "--engine", "dask")
    assert result.returncode == 2 and "dask" in result.stderr


FAKE_VLLM = REPO / "tests/fake_vllm_server.py"


def fake_vllm_venv(tmp_path: Path) -> Path:
    """A 'venv' whose python runs the stand-in server for ``python -m vllm...`` (the module
    arguments dropped), so a spec's ``serve:`` section starts it like the real one."""
    venv = tmp_path / "fake-venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin/python"
    python.write_text(f'#!/bin/sh\nshift 2\nexec {sys.executable} {FAKE_VLLM} "$@"\n')
    python.chmod(0o755)
    return venv


def served_spec(tmp_path: Path, coco_dir: Path, startup_timeout: float) -> Path:
    """A coco spec whose triplet stage starts the stand-in server on a free port."""
    from scot_data.llm.server import free_port

    port = free_port()
    triplets = {"backend": "llm", "model": "fake", "endpoints": [f"http://127.0.0.1:{port}/v1"],
                "serve": {"model": "fake", "port": port, "venv": str(fake_vllm_venv(tmp_path)),
                          "startup_timeout": startup_timeout}}  # fmt: skip
    return coco_spec(tmp_path, coco_dir, triplets=triplets)


def leftovers(tmp_path: Path) -> list[int]:
    """Live processes this test's run started that must not outlive it: stand-in servers,
    their children and Prefect's temporary server (all inherit its ``SCOT_TEST_TAG``)."""
    tag, marks = f"SCOT_TEST_TAG={tmp_path}".encode(), (str(FAKE_VLLM).encode(), b"time.sleep(600)", b"create_app")
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            environ, cmdline = (proc / "environ").read_bytes(), (proc / "cmdline").read_bytes()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if any(mark in cmdline for mark in marks) and state != "Z" and tag in environ.split(b"\0"):
            pids.append(int(proc.name))
    return pids


def run_in_background(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "SCOT_STATE_DIR": str(tmp_path / "state"), "FAKE_VLLM_MODE": "unhealthy",
           "SCOT_TEST_TAG": str(tmp_path)}  # fmt: skip
    return subprocess.Popen([sys.executable, "-m", "scot_data", "run", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=_interactive_signals)  # fmt: skip


def _interactive_signals() -> None:
    """The child starts as from a terminal: a shell runs background jobs (``cmd &``, as CI
    scripts may run pytest) with SIGINT ignored, and an ignored SIGINT is inherited."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for_server(tmp_path: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if list((tmp_path / "state/llm").glob("vllm-*.json")):
            return
        time.sleep(0.1)
    raise AssertionError("the stand-in server never started")


@pytest.mark.parametrize("engine", ["local", pytest.param("prefect", marks=pytest.mark.slow)])
def test_failed_stage_stops_the_server_it_started(engine: str, coco_dir: Path, tmp_path: Path) -> None:
    process = run_in_background(tmp_path, str(served_spec(tmp_path, coco_dir, startup_timeout=3)),
                                "--engine", engine)  # fmt: skip
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 1 and "not healthy after 3 s" in stderr, stderr
    assert leftovers(tmp_path) == []
    assert not list((tmp_path / "state/llm").glob("vllm-*.json"))


@pytest.mark.parametrize(
    ("engine", "signum"),
    [("local", signal.SIGINT), ("local", signal.SIGTERM), ("local", signal.SIGHUP),
     pytest.param("prefect", signal.SIGINT, marks=pytest.mark.slow)],
)
def test_interrupted_run_stops_the_server_it_started(engine: str, signum: int, coco_dir: Path,
                                                     tmp_path: Path) -> None:  # fmt: skip
    process = run_in_background(tmp_path, str(served_spec(tmp_path, coco_dir, startup_timeout=600)),
                                "--engine", engine)  # fmt: skip
    try:
        wait_for_server(tmp_path, timeout=120)
        if signum == signal.SIGINT:  # Ctrl-C at a terminal: the whole process group
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=300)  # generous: a loaded CI machine
    finally:
        process.kill()
    assert process.returncode == 130 and "interrupted" in stdout, stdout + stderr
    assert leftovers(tmp_path) == [], stderr
    assert not list((tmp_path / "state/llm").glob("vllm-*.json"))


def test_lit_mini_fit_draws_on_the_live_views_console(coco_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """Under `scot run`'s live view the fit's bars go to the console the view draws on (they
    nest there); without one, to its own stderr console."""
    import rich

    import scot_data.pipeline as pipeline
    from scot_data.run_view import PipelineView

    body = {"name": "t", "output_dir": str(tmp_path / "run"),
            "captions": {"format": "coco", "input": str(coco_dir / "annotations/captions_train2017.json"),
                         "images": str(coco_dir / "train2017")},
            "embed": {"encoder": "lit-mini", "fit_lit": True}}  # fmt: skip
    spec = load_spec(write_spec(tmp_path, body))
    calls = []

    def fit(captions, out, config, show_progress, console):
        calls.append((show_progress, console))
        raise ScotInputError("stop after the fit")  # the embedding itself is not under test

    monkeypatch.setattr(pipeline, "fit_lit_from_captions", fit)
    view = PipelineView("t", ["embed"])
    with view, pipeline.observed_by(view):
        with pytest.raises(ScotInputError):
            pipeline.RUNNERS["embed"](spec, True)
    with pytest.raises(ScotInputError):
        pipeline.RUNNERS["embed"](spec, True)
    assert calls == [(True, rich.get_console()), (True, None)]
