"""How long ``scot`` takes to start, against the libraries it cannot start without.

Baseline: ``python -c "import typer, rich, pydantic"`` (the CLI's own floor). Measured:
``scot --help`` and ``scot spec check pipelines/demo.yaml``, each the best of ``--runs``
fresh interpreters (the best run is the one least disturbed by a busy machine). The goal
is under 1 s for both; a ratio near 1.0 means the CLI adds nothing to its libraries.

Run: .venv/bin/python bench/bench_cli_startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMANDS = {
    "import typer, rich, pydantic": ["-c", "import typer, rich, pydantic"],
    "scot --help": ["-m", "scot_data", "--help"],
    "scot spec check pipelines/demo.yaml": ["-m", "scot_data", "spec", "check", "pipelines/demo.yaml"],
}


def best_seconds(args: list[str], runs: int) -> float:
    """The fastest of ``runs`` fresh interpreters running ``args`` (quiet: output discarded)."""
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, *args], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       check=True)  # fmt: skip
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7, help="fresh interpreters per command (best is kept)")
    args = parser.parse_args()
    baseline_name, *measured = COMMANDS
    best_seconds(COMMANDS[baseline_name], 1)  # warm the file cache
    baseline = best_seconds(COMMANDS[baseline_name], args.runs)
    print(f"{baseline_name}: {baseline:.3f} s (baseline, best of {args.runs})")
    for name in measured:
        seconds = best_seconds(COMMANDS[name], args.runs)
        verdict = "under" if seconds < 1.0 else "OVER"
        print(f"{name}: {seconds:.3f} s = {seconds / baseline:.2f}x baseline ({verdict} the 1 s goal)")
        print("RESULT " + json.dumps({"compared": f"{name} / import typer, rich, pydantic",
                                      "ratio": round(seconds / baseline, 3),
                                      "figure": f"{seconds:.2f} s (baseline {baseline:.2f} s)"}))  # fmt: skip


if __name__ == "__main__":
    main()
