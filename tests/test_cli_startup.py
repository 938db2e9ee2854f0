"""The CLI starts without the stages' heavy libraries: importing ``scot_data.cli`` (what
``scot --help`` and ``scot spec check`` do) loads no torch, Prefect or open_clip; each
command imports its stage's code when it runs (bench/bench_cli_startup.py times it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "prefect", "open_clip", "transformers", "scot_data.pipeline")


def loaded_after(code: str) -> list[str]:
    """The heavy modules in ``sys.modules`` after ``code`` runs in a fresh interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True,
                          check=True, timeout=120)  # fmt: skip
    return json.loads(done.stdout.splitlines()[-1])


def test_importing_the_cli_loads_no_heavy_library() -> None:
    assert loaded_after("import scot_data.cli") == []


def test_spec_check_loads_no_heavy_library() -> None:
    code = ("from typer.testing import CliRunner\nfrom scot_data.cli import app\n"
            "result = CliRunner().invoke(app, ['spec', 'check', 'pipelines/demo.yaml'])\n"
            "assert result.exit_code == 0, result.output")  # fmt: skip
    assert loaded_after(code) == []
