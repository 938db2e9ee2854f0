"""The wheel, installed in a fresh venv and run from a folder outside the checkout.

What a user gets from ``pip install scot``: the wheel is built from this tree, installed
(without dependencies) into a new venv whose only link to this one is a ``.pth`` line to
its site-packages (torch and the rest, pinned by the set-up), so the code and the shipped
files that run are the wheel's, never the checkout's. From a folder with no ``pipelines/``
in it: captions -> template triplets -> LLM triplets with the default prompt (the shipped
``v1``) against the scripted server -> embed with the tiny test encoder (an open_clip
``local-dir:`` config, random init: no download) -> train -> evaluate on a CIRR-layout
benchmark whose targets are pixel copies (image-only R@1 is 100 by construction).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from scot_data.triplets.config import TripletsConfig
from scot_data.triplets.generate import generate_triplets
from tests.conftest import TINY_CONFIG
from tests.test_drills import write_pairs
from tests.test_evaluate import COPIES, copy_cirr_layout
from tests.test_triplets import free_port, start_server, stop_server

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
BUILD_INPUTS = ("pyproject.toml", "README.md", "scot_data", "flows")
PAIRS = 16
ENV = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "HF_HUB_OFFLINE": "1",
       "TRANSFORMERS_OFFLINE": "1", "PYTHONNOUSERSITE": "1"}  # fmt: skip


def run(command: list[str | Path], cwd: Path) -> str:
    """Run to completion; its stdout (a failure shows stderr)."""
    done = subprocess.run([str(c) for c in command], cwd=cwd, env=ENV, capture_output=True, text=True,
                          timeout=600, check=False)  # fmt: skip
    shown = f"{' '.join(map(str, command))}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    assert done.returncode == 0, shown
    return done.stdout


def build_wheel(root: Path) -> Path:
    """The wheel of this tree, built from a copy (an in-tree build would write build/ here)."""
    source = root / "source"
    source.mkdir()
    for name in BUILD_INPUTS:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(REPO / name, source / name)
    pip = [sys.executable, "-m", "pip"]
    run([*pip, "wheel", "--no-deps", "--quiet", "-w", root / "dist", f"{source}/"], root)
    (wheel,) = (root / "dist").glob("scot-*.whl")
    return wheel


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the wheel, inside a git repository that is not scot's."""
    root = tmp_path_factory.mktemp("installed")
    wheel = build_wheel(root)
    project = root / "project"
    project.mkdir()
    run(["git", "init", "-q"], project)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "x"],
        project)  # fmt: skip
    venv = project / ".venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], root)
    python = venv / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--quiet", wheel], root)
    site = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], root).strip()
    ours = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    (Path(site) / "scot-test-dependencies.pth").write_text("".join(f"{path}\n" for path in ours))
    return venv


def test_the_installed_wheel_runs_its_own_files_from_any_folder(venv: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    scot = venv / "bin" / "scot"
    located = run([venv / "bin" / "python", "-c", "import scot_data; print(scot_data.__file__)"], work)
    assert Path(located.strip()).is_relative_to(venv), located
    shipped = Path(located.strip()).parent / "pipelines"

    listed = run([scot, "spec", "list"], work)
    assert sorted(Path(line.split()[-1]) for line in listed.splitlines()) == sorted(shipped.rglob("*.yaml"))
    assert len(listed.splitlines()) == len(list((REPO / "scot_data" / "pipelines").rglob("*.yaml")))  # all shipped
    demo = json.loads(run([scot, "spec", "check", "demo"], work))
    assert demo["name"] == "demo" and demo["triplets"]["prompt"] == "scenes-v1"

    write_pairs(work, PAIRS)
    run([scot, "captions", "ingest", "--format", "table", "--input", "pairs.csv", "--out", "captions",
         "--workers", "1", "--no-progress"], work)  # fmt: skip
    assert pq.read_metadata(work / "captions" / "captions.parquet").num_rows == PAIRS
    manifest = json.loads((work / "captions" / "manifest.json").read_text())
    assert manifest["code_version"]["git_commit"] is None  # the venv's repository is not scot's

    run([scot, "triplets", "generate", "--captions", "captions", "--out", "template", "--backend", "template",
         "--no-progress"], work)  # fmt: skip
    generate_triplets(TripletsConfig(backend="template"), work / "captions", tmp_path / "checkout-template",
                      show_progress=False)  # fmt: skip
    installed_rows = pq.read_table(work / "template" / "triplets.parquet").to_pylist()
    assert installed_rows == pq.read_table(tmp_path / "checkout-template" / "triplets.parquet").to_pylist()
    assert len(installed_rows) == PAIRS

    port = free_port()
    server = start_server(port)
    try:
        run([scot, "triplets", "generate", "--captions", "captions", "--out", "triplets", "--endpoint",
             f"http://127.0.0.1:{port}/v1", "--model", "scripted", "--no-progress"], work)  # fmt: skip
    finally:
        stop_server(server)
    manifest = json.loads((work / "triplets" / "manifest.json").read_text())
    prompt_sha = hashlib.sha256((REPO / "pipelines" / "prompts" / "v1.yaml").read_bytes()).hexdigest()
    assert manifest["config"]["prompt_sha256"] == prompt_sha
    (prompt_input,) = [i for i in manifest["inputs"] if i["path"].endswith(".yaml")]
    assert Path(prompt_input["path"]) == shipped / "prompts" / "v1.yaml"
    assert prompt_input["sha256"] == prompt_sha
    assert manifest["stats"]["triplets"] == PAIRS and manifest["stats"]["requests"] == PAIRS

    encoder = work / "tiny-encoder"
    encoder.mkdir()
    (encoder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CONFIG}))
    spec = f"open_clip:local-dir:{encoder}"
    run([scot, "embed", "--captions", "captions", "--triplets", "triplets", "--out", "embed", "--encoder",
         spec, "--device", "cpu", "--workers", "0", "--no-progress"], work)  # fmt: skip
    assert json.loads((work / "embed" / "manifest.json").read_text())["stats"]["images_embedded"] == PAIRS
    run([scot, "train", "--embeddings", "embed", "--triplets", "triplets", "--out", "train", "--epochs", "2",
         "--batch-size", "8", "--device", "cpu", "--no-progress"], work)  # fmt: skip
    assert (work / "train" / "combiner.safetensors").is_file()

    copy_cirr_layout(work / "cirr")
    shown = run([scot, "evaluate", "--benchmark", "cirr", "--data", "cirr", "--combiner", "train", "--out",
                 "evaluate", "--device", "cpu", "--workers", "0", "--no-progress"], work)  # fmt: skip
    results = json.loads((work / "evaluate" / "results.json").read_text())
    assert results["encoder"] == spec and results["query_count"] == COPIES
    metrics = results["metrics"]["cirr"]
    assert sorted(metrics) == ["combiner", "image_only", "sum", "text_only"]
    assert metrics["image_only"]["R@1"] == 100.0  # every target is a pixel copy of its reference
    header = next(line for line in shown.splitlines() if "method" in line)
    assert all(metric in header for metric in metrics["sum"]), shown  # a pipe gets the whole table
