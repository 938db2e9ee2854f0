"""``bench/gpu_check.sh`` at tiny sizes on the CPU, seeing only what the GPU machine will have.

The script runs under a Python that hides every installed distribution that is neither in
the GPU image (``bench/gpu_image_packages.txt``) nor in ``bench/gpu_wheels.txt``: an import
the GPU machine could not satisfy fails here too (dropping pydantic from the wheels does).
The JSON must hold every figure the H200 run reports. ~15 s."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
HIDING_PYTHON = '''
import importlib.abc, importlib.metadata, os, runpy, sys
allowed = set(os.environ["GPU_CHECK_ALLOWED"].split(","))
owners = {module: {d.lower().replace("_", "-") for d in dists}
          for module, dists in importlib.metadata.packages_distributions().items()}
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        owner = owners.get(name.split(".")[0])
        if owner and not owner & allowed:
            raise ModuleNotFoundError(f"No module named {name!r} (not on the GPU machine)", name=name)
sys.meta_path.insert(0, Hide())
sys.path.insert(0, os.getcwd())
flag, target, *rest = sys.argv[1:]
sys.argv = [target, *rest]
exec(target) if flag == "-c" else runpy.run_module(target, run_name="__main__", alter_sys=True)
'''


def names(path: Path) -> set[str]:
    """Normalised distribution names of a list file (``name`` or ``name==version`` per line)."""
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return {normal(re.split(r"[=<>]", line)[0]) for line in lines if line}


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(dist: str) -> set[str]:
    """What an installed distribution needs at run time (no extras), by normalised name."""
    needed = set()
    for text in metadata.requires(dist) or []:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            needed.add(normal(requirement.name))
    return needed


def test_the_listed_wheels_need_nothing_beyond_the_image_and_each_other() -> None:
    image, wheels = names(REPO / "bench/gpu_image_packages.txt"), names(REPO / "bench/gpu_wheels.txt")
    assert {"torch", "torchvision", "pyarrow", "pillow"} <= image and not wheels & image - {"typing-extensions"}
    for wheel in wheels:
        assert requirements(wheel) <= image | wheels, f"{wheel} needs {requirements(wheel) - image - wheels}"


def test_tiny_check_runs_with_only_the_gpu_machines_packages(tmp_path: Path) -> None:
    allowed = names(REPO / "bench/gpu_image_packages.txt") | names(REPO / "bench/gpu_wheels.txt") | {"scot"}
    python = tmp_path / "python"
    (tmp_path / "hide.py").write_text(HIDING_PYTHON)
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{tmp_path / "hide.py"}" "$@"\n')
    python.chmod(0o755)
    args = "--tiny --device cpu --images 24 --texts 48 --batch 8 --repeats 1 --triplets 1024 --dim 32 --train-batch 256 --workers 1"
    env = {**os.environ, "PYTHON": str(python), "GPU_CHECK_ALLOWED": ",".join(sorted(allowed)), "GPU_CHECK_ARGS": args}
    out = tmp_path / "gpu_check.json"
    done = subprocess.run(["bash", "bench/gpu_check.sh", str(out)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["device"] == "cpu" and report["encoder"]["spec"] == "open_clip:scot-rehearse-tiny-32"
    assert report["forward"]["batch"] == 8 and report["forward"]["images_per_s"] > 0 < report["forward"]["texts_per_s"]
    stage = report["stage"]
    assert stage["images"] == 24 and stage["texts"] == 48 and stage["images_per_s"] > 0 < stage["texts_per_s"]
    for kind in ("images", "texts"):
        ratio = report["ratios"][f"{kind}_stage_over_forward"]
        assert ratio == round(stage[f"{kind}_per_s"] / report["forward"][f"{kind}_per_s"], 3) and ratio > 0
    combiner = report["combiner"]
    assert (combiner["triplets"], combiner["dim"], combiner["batch_size"], combiner["steps"]) == (1024, 32, 256, 4)
    assert combiner["meets_goal"] == (combiner["epoch_seconds"] < combiner["goal_seconds"] == 2.0)
    assert combiner["samples_per_s"] > 0 and combiner["peak_cuda_gib"] is None
    assert {normal(d) for d in report["imported_distributions"]} <= allowed  # what the hiding let through
