"""Resume at scale (issue 16): ``kill -9`` the real ``scot run`` midway through the triplet
stage and again midway through the embed stage, run it again to the end, and check that the
result is the uninterrupted run's, byte for byte, with at most the work in flight redone.

Run A is the rehearsal (``bench/rehearse.py``: input, stand-ins, the coco-290k-shaped spec,
``scot run`` through Prefect, measured per stage). Run B is the same spec on the same input
in a folder of its own, by the CLI (``python -m scot_data run``) in a process group of its
own, against a fresh stand-in LLM host that stays up across B's three legs:

1. start; SIGKILL the group once ``triplets/parts`` holds half of the stage's batches;
2. start again; SIGKILL once ``embed/images`` holds half of the image parts;
3. start again; run to the end.

Checks: every file of A's stage folders against B's (``scripts/compare_runs.py``: identical
bytes, or the same content where a run may differ: clocks, paths, resumed counts), the sha256
of every data file (Parquet, shards, safetensors) listed side by side, no temporaries left,
and what was redone: the stand-in's chat requests in B minus A's (its fault memory is per
caption, so a redone caption costs one request and no new fault; answers are journalled as
they arrive, so only the requests in flight at the kill are redone), and parts written twice
(parts finished at a kill, plus parts the next leg wrote, minus the parts an uninterrupted
run writes). Prints a table; writes ``drill.json`` in ``--out`` and each leg's log beside it.

Run from the repository root:
    .venv/bin/python -m bench.resume_drill --triplets 10000 --out /tmp/drill-10k
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

from bench.rehearse import REPO, rehearse, stand_in, stand_in_options, write_spec
from scot_data.atomic import TMP_MARK
from scripts import compare_runs
from tests.scripted_openai_server import server_stats, stop_server

DATA_SUFFIXES = {".parquet", ".tar", ".safetensors", ".npy"}


@dataclass
class Leg:
    """One start of ``scot run`` in B: killed at ``killed_at`` parts of a stage, or run through."""

    name: str
    seconds: float
    exit_code: int
    killed_in: str | None = None
    parts_at_kill: list[str] = field(default_factory=list)
    requests_so_far: int = 0
    outlived_kill: list[str] = field(default_factory=list)  # descendants in sessions of their own
    parts_mtimes: dict[str, int] = field(default_factory=dict)


# ``python -m scot_data``, after registering the stand-in encoder's architecture (A's process
# registered it in itself; open_clip keeps its model configs in memory).
SCOT_WITH_STAND_IN = "import sys, open_clip; open_clip.add_model_config(sys.argv.pop(1)); import scot_data.__main__"


def scot_run(spec: Path, log: Path, env: dict[str, str], encoder_config: Path) -> subprocess.Popen:
    """``scot run SPEC`` (Prefect engine) in a new session, so one killpg ends it and its workers."""
    command = [sys.executable, "-c", SCOT_WITH_STAND_IN, str(encoder_config), "run", str(spec), "--no-progress"]
    with log.open("w") as handle:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip


def end_survivors(descendants: list[psutil.Process]) -> list[str]:
    """Descendants still running after the kill (none expected), ended here so they do not
    pile up; returns what each was."""
    survivors = []
    for process in descendants:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                survivors.append(" ".join(process.cmdline()))
                process.kill()
        except psutil.Error:  # ended meanwhile
            continue
    return survivors


def kill_midway(name: str, spec: Path, env: dict[str, str], stage_dir: Path, parts: str, at: int) -> Leg:
    """Start ``scot run``, SIGKILL its group once ``stage_dir/parts`` matches ``at`` files;
    raises if the run ends first or the stage finished before the kill landed."""
    process = scot_run(spec, spec.parent / f"{name}.log", env, encoder_config(spec))
    started = time.perf_counter()
    descendants: list[psutil.Process] = []
    while len(list(stage_dir.glob(parts))) < at:
        if process.poll() is not None:
            raise RuntimeError(f"{name}: scot run ended (exit {process.returncode}) before {at} parts of {stage_dir}")
        # Listed while waiting, so the kill follows the count at once: at 1K a part takes
        # milliseconds, and listing them after the count let a whole stage finish first.
        descendants = psutil.Process(process.pid).children(recursive=True)
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    code = process.wait()
    seconds = time.perf_counter() - started
    # The group dies with its leader's signal; Prefect's API server, in a session of its own,
    # on the SIGTERM its parent's death sends it (flows/pipeline.py).
    _, alive = psutil.wait_procs(descendants, timeout=15)
    if (stage_dir / "manifest.json").exists():
        raise RuntimeError(f"{name}: {stage_dir.name} finished before the kill landed")
    finished = {str(p.relative_to(stage_dir)): p.stat().st_mtime_ns for p in stage_dir.glob(parts)}
    return Leg(name, round(seconds, 1), code, killed_in=stage_dir.name, parts_at_kill=sorted(finished),
               outlived_kill=end_survivors(alive), parts_mtimes=finished)  # fmt: skip


def encoder_config(spec: Path) -> Path:
    """The stand-in encoder's open_clip config, written by the rehearsal beside run A."""
    model = yaml.safe_load(spec.read_text())["embed"]["encoder"]["model"]
    return spec.parents[1] / "a" / "open_clip" / f"{model}.json"


def run_through(name: str, spec: Path, env: dict[str, str]) -> Leg:
    process = scot_run(spec, spec.parent / f"{name}.log", env, encoder_config(spec))
    started = time.perf_counter()
    code = process.wait()
    return Leg(name, round(time.perf_counter() - started, 1), code)


def data_digests(a: Path, b: Path) -> list[dict[str, Any]]:
    """sha256 of every data file of A's stage folders and of B's file of the same name; where
    the bytes differ, whether the content is the same (``compare_runs.content``: tables row by
    row, safetensors tensor by tensor)."""
    rows = []
    for path in sorted(p for p in a.rglob("*") if p.is_file() and p.suffix in DATA_SUFFIXES):
        relative = path.relative_to(a)
        other = b / relative
        row = {"file": str(relative), "bytes": path.stat().st_size, "sha256_a": compare_runs.sha256(path),
               "sha256_b": compare_runs.sha256(other) if other.is_file() else None}  # fmt: skip
        row["same_content"] = row["sha256_a"] == row["sha256_b"] or (
            other.is_file() and compare_runs.content(path, compare_runs.Normaliser(a, {}))
            == compare_runs.content(other, compare_runs.Normaliser(b, {}))
        )
        rows.append(row)
    return rows


def json_differences(a: Path, b: Path, table: str) -> dict[str, list[str]]:
    """The keys by which each JSON file ``compare_runs`` found differing differs (clocks and
    paths already written away): a resumed run's own counts are expected there."""
    found = {}
    for line in table.splitlines():
        if line.startswith("differs ") and line.split()[1].endswith(".json"):
            relative = line.split()[1]
            left, right = (compare_runs.Normaliser(root, {}).value(json.loads((root / relative).read_text()))
                           for root in (a, b))  # fmt: skip
            found[relative] = sorted(k for k in left.keys() | right.keys() if left.get(k) != right.get(k))
    return found


def compared(a: Path, b: Path) -> tuple[int, str]:
    """``scripts/compare_runs.py A B``: its exit code and its table."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = compare_runs.main([str(a), str(b)])
    return code, printed.getvalue()


def embedded(run: Path) -> int:
    """Images and texts the run that finished the embed stage embedded itself."""
    stats = json.loads((run / "embed" / "stats.json").read_text())
    return stats["images_embedded"] + stats["texts_embedded"]


def redone(a_run: Path, b_run: Path, legs: list[Leg], a_requests: int, b_requests: int) -> dict[str, Any]:
    """What B did twice: chat requests beyond A's (those in flight at the kill), parts finished at a kill and written again, and vectors
    computed beyond A's (rows of the parts finished at the kill, plus what the next leg embedded)."""
    import pyarrow.parquet as pq

    result: dict[str, Any] = {"requests_a": a_requests, "requests_b": b_requests, "requests_redone": b_requests - a_requests}
    for leg in legs:
        if leg.killed_in:
            stage_dir = b_run / leg.killed_in
            result[f"{leg.killed_in}_parts_at_kill"] = len(leg.parts_mtimes)
            result[f"{leg.killed_in}_parts_rewritten"] = sum(
                not (stage_dir / name).is_file() or (stage_dir / name).stat().st_mtime_ns != mtime
                for name, mtime in leg.parts_mtimes.items()
            )
    (kill,) = (leg for leg in legs if leg.killed_in == "embed")
    rows_at_kill = sum(pq.read_metadata(b_run / "embed" / name).num_rows for name in kill.parts_mtimes)
    result["embed_rows_at_kill"] = rows_at_kill
    result["embed_rows_redone"] = rows_at_kill + embedded(b_run) - embedded(a_run)
    result["triplets_parts_reused"] = json.loads((b_run / "triplets" / "stats.json").read_text())["parts_reused"]
    return result


def drill(args: argparse.Namespace) -> dict[str, Any]:
    out = args.out.resolve()
    args.out = out / "a"
    a = rehearse(args)  # run A: the rehearsal, measured
    spec = yaml.safe_load((out / "a" / "spec.yaml").read_text())
    b_run = out / "b" / "run"
    b_run.mkdir(parents=True)
    server = stand_in(args)  # fresh: its request count and per-caption fault memory start at zero
    spec.update(output_dir=str(b_run))
    spec["triplets"]["endpoints"] = [server["endpoint"]]  # runtime-only: the same fingerprint as A's
    spec_path = write_spec(spec, out / "b" / "spec.yaml")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.torch_threads)}  # A's torch threads (rehearse sets them)
    batches = math.ceil(args.triplets / spec["triplets"]["batch_size"])
    image_parts = math.ceil(a["input"]["images"] / spec["embed"].get("part_rows", 4096))
    if batches < 2 or image_parts < 2:
        raise SystemExit(f"error: {batches} batches, {image_parts} image parts: no middle to kill in "
                         "(more --triplets or a smaller --embed-part-rows)")  # fmt: skip
    legs: list[Leg] = []
    try:
        legs.append(kill_midway("leg-1", spec_path, env, b_run / "triplets", "parts/part-*.triplets.parquet",
                                batches // 2))  # fmt: skip
        legs[-1].requests_so_far = server_stats(server["endpoint"])["chat_requests"]
        legs.append(kill_midway("leg-2", spec_path, env, b_run / "embed", "images/part-*.parquet",
                                image_parts // 2))  # fmt: skip
        legs[-1].requests_so_far = server_stats(server["endpoint"])["chat_requests"]
        legs.append(run_through("leg-3", spec_path, env))
        b_requests = legs[-1].requests_so_far = server_stats(server["endpoint"])["chat_requests"]
    finally:
        stop_server(server["process"])
    if legs[-1].exit_code != 0:
        raise SystemExit(f"error: leg-3 exit {legs[-1].exit_code}; see {out / 'b' / 'leg-3.log'}")
    code, table = compared(out / "a" / "run", b_run)
    digests = data_digests(out / "a" / "run", b_run)
    redid = redone(out / "a" / "run", b_run, legs, a["server"]["chat_requests"], b_requests)
    batch_size = spec["triplets"]["batch_size"]
    report = {
        "command": " ".join(["python -m bench.resume_drill", *sys.argv[1:]]),
        "rehearsal": {k: a[k] for k in ("machine", "input", "run_seconds", "stages", "checks", "train_epoch")},
        "kill_points": {"triplets": f"{batches // 2} of {batches} batches", "embed": f"{image_parts // 2} of {image_parts} image parts"},
        "legs": [{k: v for k, v in asdict(leg).items() if k != "parts_mtimes"} | {"parts_at_kill": len(leg.parts_at_kill)}
                 for leg in legs],  # fmt: skip
        "compare_runs_exit": code,
        "compare_runs": table,
        "json_differences": json_differences(out / "a" / "run", b_run, table),
        "data_files": len(digests),
        "data_files_sha256_equal": sum(d["sha256_a"] == d["sha256_b"] for d in digests),
        "data_files_same_content": sum(d["same_content"] for d in digests),
        "digests": digests,
        "temporaries_left": [str(p) for p in b_run.rglob(f"*{TMP_MARK}*")],
        "redone": redid,
        "batch_size": batch_size,
        "concurrency": spec["triplets"]["concurrency"],
        "requests_redone_within_one_batch": redid["requests_redone"] <= batch_size,
        "part_rows": spec["embed"].get("part_rows", 4096),
    }
    (out / "drill.json").write_text(json.dumps(report, indent=2))
    return report


def summary(report: dict[str, Any]) -> str:
    r = report["redone"]
    rows = [f"{'leg':<7}{'killed in':<11}{'parts at kill':>14}{'seconds':>9}{'requests so far':>17}  outlived the kill"]
    for leg in report["legs"]:
        rows.append(f"{leg['name']:<7}{leg['killed_in'] or '-':<11}{leg['parts_at_kill']:>14}{leg['seconds']:>9.1f}"
                    f"{leg['requests_so_far']:>17,}  {'; '.join(c[-70:] for c in leg['outlived_kill']) or '-'}")  # fmt: skip
    rows += [
        f"kill points: {report['kill_points']}",
        f"data files A vs B: {report['data_files_sha256_equal']} of {report['data_files']} sha256-equal, "
        f"{report['data_files_same_content']} same content; temporaries left: {len(report['temporaries_left'])}",
        f"compare_runs exit {report['compare_runs_exit']}; JSON keys differing: {report['json_differences']}",
        f"requests: A {r['requests_a']:,}, B {r['requests_b']:,}, redone {r['requests_redone']:,} "
        f"(one batch: {report['batch_size']}; requests in flight at most: {report['concurrency']})",
        f"triplet parts finished at the kill {r['triplets_parts_at_kill']}, reused {r['triplets_parts_reused']}, "
        f"rewritten {r['triplets_parts_rewritten']}",
        f"embed parts finished at the kill {r['embed_parts_at_kill']} ({r['embed_rows_at_kill']:,} rows), rewritten "
        f"{r['embed_parts_rewritten']}; vectors computed beyond A's: {r['embed_rows_redone']:,} (part: {report['part_rows']})",
    ]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = stand_in_options(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.set_defaults(engine="prefect", compare_engines=False)
    args = parser.parse_args(argv)
    if args.out is None or (args.out.exists() and any(args.out.iterdir())):
        raise SystemExit("error: --out: a new or empty folder is needed")
    os.chdir(REPO)  # the spec's prompt path is relative to the repository, as coco-290k.yaml's is
    report = drill(args)
    print(report["compare_runs"])
    print(summary(report))
    print(f"train epoch: {json.dumps(report['rehearsal']['train_epoch'])}")
    print(f"report: {args.out.parent}/drill.json")


if __name__ == "__main__":
    main()
