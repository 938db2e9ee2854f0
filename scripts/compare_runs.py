"""Compare two runs of a pipeline file by file: is the output the same?

    python scripts/compare_runs.py BEFORE AFTER [--rename OLD=NEW ...] [--skip FOLDER ...]

Every file under BEFORE is looked for under AFTER (``--rename`` maps a stage folder renamed
between the two, e.g. ``embeddings=embed``). A file counts as *identical* when its bytes
match, and as *same content* when they differ only where a run is allowed to: the run's own
location and stage folder names inside paths, wall-clock figures (``*seconds``, rates,
``created_at``, the code version, parts reused by a resume), and the key order of a
safetensors header (its writer does not keep one). Parquet tables are compared row by row, safetensors tensor by tensor,
JSON value by value. Locks and logs are skipped. Prints one row per stage folder and exits
1 when any file differs in content or is missing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

SKIPPED_NAMES = {".scot-lock"}
SKIPPED_FOLDERS = {"logs"}
# How a run went, not what it made: wall-clock figures, when, which code, what it resumed.
RUN_KEYS = ("seconds", "per_second", "ms_per_step", "created_at", "code_version", "reused")
# Digests inside a file (fingerprints, a heads file's sha256) name other files, which are
# compared themselves; a fingerprint also holds the run's location.
CLOCK_FIGURES = re.compile(r"[\d.,]+ ?(?:s|ms|images/s)\b")
HEX = re.compile(r"\b[0-9a-f]{16,64}\b")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Normaliser:
    """Rewrites what may differ between two runs of the same work into one spelling."""

    def __init__(self, root: Path, renames: dict[str, str]) -> None:
        self.prefixes = [(str(root.resolve()) + "/", ""), (str(root) + "/", "")]
        self.renames = renames

    def text(self, value: str) -> str:
        value = HEX.sub("<sha>", value)
        for prefix, plain in self.prefixes:
            value = value.replace(prefix, plain)
        for old, new in self.renames.items():
            value = value.replace(f"/{old}/", f"/{new}/").replace(f"/{old}\"", f"/{new}\"")
            value = value[: -len(old)] + new if value.endswith(f"/{old}") else value
        return value

    def value(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items() if not any(c in k for c in RUN_KEYS)}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        return self.text(value) if isinstance(value, str) else value


def content(path: Path, norm: Normaliser) -> str:
    """A digest of what the file holds, with the allowed differences written away."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = norm.value(pq.read_table(path).to_pylist())
        return hashlib.sha256(json.dumps(rows, sort_keys=True, default=repr).encode()).hexdigest()
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        tensors = load_file(str(path))
        digest = hashlib.sha256()
        for name in sorted(tensors):
            digest.update(name.encode() + tensors[name].tobytes())
        return digest.hexdigest()
    if path.suffix == ".json":
        loaded = json.loads(path.read_text(encoding="utf-8"))
        if path.name == "manifest.json":  # what it says of each output, not when or from where
            outputs = loaded["outputs"].items()
            loaded = sorted((name, entry.get("rows")) for name, entry in outputs)
        return hashlib.sha256(json.dumps(norm.value(loaded), sort_keys=True).encode()).hexdigest()
    if path.suffix in {".md", ".html", ".jsonl"}:
        text = CLOCK_FIGURES.sub("<clock>", norm.text(path.read_text(encoding="utf-8")))
        return hashlib.sha256(text.encode()).hexdigest()
    return sha256(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--rename", action="append", default=[], help="OLD=NEW stage folder")
    parser.add_argument("--skip", action="append", default=[], help="a top folder of BEFORE not compared")
    args = parser.parse_args(argv)
    renames = dict(pair.split("=", 1) for pair in args.rename)
    before, after = Normaliser(args.before, renames), Normaliser(args.after, {})
    rows: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # identical, same content, differing, missing
    problems: list[str] = []
    for path in sorted(p for p in args.before.rglob("*") if p.is_file()):
        relative = path.relative_to(args.before)
        top = relative.parts[0]
        if top in SKIPPED_FOLDERS or top in args.skip or path.name in SKIPPED_NAMES or len(relative.parts) == 1:
            continue
        other = args.after / renames.get(top, top) / Path(*relative.parts[1:])
        if not other.is_file():
            rows[top][3] += 1
            problems.append(f"missing {other}")
        elif sha256(path) == sha256(other):
            rows[top][0] += 1
        elif content(path, before) == content(other, after):
            rows[top][1] += 1
        else:
            rows[top][2] += 1
            problems.append(f"differs {relative} vs {other}")
    print(f"{'folder':<26}{'identical':>10}{'same content':>14}{'differing':>10}{'missing':>9}")
    for top, counts in rows.items():
        cells = "".join(f"{n:>{w}}" for n, w in zip(counts, (10, 14, 10, 9)))
        print(f"{top + ' -> ' + renames.get(top, top):<26}{cells}")
    for line in problems[:40]:
        print(line)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
