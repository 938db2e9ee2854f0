"""Compare two runs of a pipeline file by file (sha256): is the output byte-identical?

    python scripts/compare_runs.py BEFORE AFTER [--rename OLD=NEW ...] [--skip FOLDER ...]

Every file under BEFORE is looked for under AFTER (``--rename`` maps a stage folder renamed
between the two, e.g. ``embeddings=embed``). Locks and logs are skipped; a manifest differs
by design (its creation time, the stage's config), so of a manifest only what it says of
each output (bytes, rows, sha256) is compared. Prints one row per stage folder and exits 1
when any file differs or is missing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import defaultdict
from pathlib import Path

SKIPPED_NAMES = {".scot-lock"}
SKIPPED_FOLDERS = {"logs"}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def content(path: Path) -> str:
    """A file's identity for the comparison: its sha256, or a manifest's outputs."""
    if path.name != "manifest.json":
        return sha256(path)
    outputs = json.loads(path.read_text(encoding="utf-8")).get("outputs", {})
    return hashlib.sha256(json.dumps(outputs, sort_keys=True).encode()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--rename", action="append", default=[], help="OLD=NEW stage folder")
    parser.add_argument("--skip", action="append", default=[], help="a top folder of BEFORE not compared")
    args = parser.parse_args(argv)
    renames = dict(pair.split("=", 1) for pair in args.rename)
    rows: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # identical, differing, missing
    differing: list[str] = []
    for path in sorted(p for p in args.before.rglob("*") if p.is_file()):
        relative = path.relative_to(args.before)
        top = relative.parts[0]
        if top in SKIPPED_FOLDERS or top in args.skip or path.name in SKIPPED_NAMES or len(relative.parts) == 1:
            continue
        other = args.after / renames.get(top, top) / Path(*relative.parts[1:])
        if not other.is_file():
            rows[top][2] += 1
            differing.append(f"missing {other}")
        elif content(path) == content(other):
            rows[top][0] += 1
        else:
            rows[top][1] += 1
            differing.append(f"differs {relative} vs {other}")
    print(f"{'folder':<22}{'identical':>10}{'differing':>10}{'missing':>9}")
    for top, (same, diff, missing) in rows.items():
        print(f"{top + ' -> ' + renames.get(top, top):<22}{same:>10}{diff:>10}{missing:>9}")
    for line in differing[:40]:
        print(line)
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
