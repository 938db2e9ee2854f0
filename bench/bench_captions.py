"""Caption stage throughput against its own core work, measured in the same run.

Baseline: rendering the same SVGs in a plain loop (what the stage cannot avoid).
Measured: the whole stage (scan, dedup, parts, atomic writes, manifest) with 1 and 2
workers. A ratio near 1.0 with one worker means the pipeline adds little; with two
workers it shows how much the process pool buys on this machine.

Run: .venv/bin/python bench/bench_captions.py [--n 300]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from scot_data.captions.config import OpenclipartCaptions
from scot_data.captions.images import render_svg
from scot_data.captions.ingest import ingest_captions, select
from scot_data.captions.readers.openclipart import scan_openclipart


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    cfg = OpenclipartCaptions(limit=args.n, seed=args.seed, workers=1, part_size=64)
    started = time.perf_counter()
    candidates, _, _ = select(scan_openclipart(cfg), cfg.limit, cfg.seed)
    scan_seconds = time.perf_counter() - started

    started = time.perf_counter()
    for candidate in candidates:
        try:
            render_svg(candidate.image.svg_path, cfg.render_size)  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - failures cost time too; the stage rejects them
            pass
    render_rate = len(candidates) / (time.perf_counter() - started)

    rows = []
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as out:
            stage_cfg = cfg.model_copy(update={"workers": workers})
            started = time.perf_counter()
            ingest_captions(stage_cfg, Path(out), show_progress=False)
            seconds = time.perf_counter() - started
        rows.append((workers, len(candidates) / seconds, len(candidates) / max(seconds - scan_seconds, 1e-9)))

    print(f"captions bench: {len(candidates)} SVGs, metadata scan of the whole tree {scan_seconds:.1f} s")
    print(f"{'what':<34}{'images/s':>10}{'ratio':>8}")
    print(f"{'render loop (baseline)':<34}{render_rate:>10.1f}{1.0:>8.2f}")
    for workers, rate, rate_without_scan in rows:
        print(f"{f'stage, {workers} worker(s)':<34}{rate:>10.1f}{rate / render_rate:>8.2f}")
        print(f"{f'stage, {workers} worker(s), excl. scan':<34}{rate_without_scan:>10.1f}{rate_without_scan / render_rate:>8.2f}")
        print("RESULT " + json.dumps({"compared": f"stage ({workers} worker(s), excl. scan) / render loop",
                                      "ratio": round(rate_without_scan / render_rate, 3),
                                      "figure": f"{rate_without_scan:.1f} images/s ({rate:.1f} incl. scan)"}))


if __name__ == "__main__":
    main()
