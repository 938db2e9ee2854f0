"""Paper scale, rehearsed on this machine: the real ``scot run`` on a spec shaped like
``pipelines/coco-290k.yaml``, only its GPU-bound parts swapped for stand-ins with the same
interfaces, and the cost of every stage measured, so growth with N shows before a GPU run.

Real: the spec (coco-290k's sections and options, read from that file and patched only where
listed below), ``scot run`` through Prefect (``flows.pipeline.run_spec``, what the CLI runs;
``--engine local`` the in-process loop), every stage's code, and ``scot publish`` / ``scot
verify`` (subprocesses) against an S3 API. Stand-ins:

- COCO: a ``captions_train2017.json`` of synthetic 64-px images (JPEG, every fourth PNG;
  shapes on a colour), 5 varied captions each, annotations shuffled as COCO's are, sized
  like COCO against the spec's ``triplets.limit`` (591,753 captions for 290,000 sampled), so
  the triplet stage samples N of 2.04 N captions;
- the GPU vLLM host: ``tests/scripted_openai_server.py`` in its own process, serving the
  spec's model name; realistic edits after ``--latency`` (20 ms); a ``--fault-rate`` (2%)
  of captions dealt a 500, garbage JSON, a hang past the client ``--timeout`` or a cut
  connection;
- ViT-L-14: a tiny open_clip architecture, random init, ``--dim`` wide, on the CPU;
- train: one epoch on the CPU; evaluate is left out (its benchmarks' files are not here);
- S3: moto's server, in its own process.

Per stage: items, seconds, items/s, CPU seconds (this process and its reaped workers), peak
RSS (this process plus its live workers, sampled every 0.1 s; the stand-in servers and
Prefect's API server are not counted), bytes written. A table on stdout, ``rehearse.json``
in ``--out``. ``--compare-engines`` then runs the triplet stage again on the same captions
three ways: ``scot run`` (Prefect), ``scot run --engine local``, and the per-batch task flow
(``flows/triplets.py``, the watch deployment's).

The pipeline is imported inside the functions that run it: the caption stage's workers are
spawned, and a spawned worker re-imports the main module (this one, run with ``-m``); under
``scot`` that is the light CLI, and here it must be as light.

Run from the repository root (so this tree's code is used):
    .venv/bin/python -m bench.rehearse --triplets 10000 --out /tmp/rehearse-10k
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import yaml

from bench.synthetic_coco import sizes, tiny_encoder, write_coco
from tests.scripted_openai_server import free_port, server_stats, start_server, stop_server

if TYPE_CHECKING:
    from scot_data.pipeline import StageResult

REPO = Path(__file__).resolve().parents[1]
BASE_SPEC = REPO / "pipelines" / "coco-290k.yaml"
BUCKET = "rehearse"
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}

# ---------------------------------------------------------------------------------- the spec


def rehearsal_spec(triplets: int, coco: tuple[Path, Path], run_dir: Path, endpoint: str, encoder: str,
                   args: argparse.Namespace) -> dict[str, Any]:  # fmt: skip
    """coco-290k.yaml with only the data, the LLM host, the encoder, the device and the epochs swapped."""
    spec = copy.deepcopy(yaml.safe_load(BASE_SPEC.read_text()))
    spec.update(name=f"rehearse-{triplets}", output_dir=str(run_dir), description="bench/rehearse.py")
    spec["captions"].update(input=str(coco[0]), images=str(coco[1]),
                            workers=min(spec["captions"]["workers"], os.cpu_count() or 1))  # fmt: skip
    spec["triplets"].update(endpoints=[endpoint], limit=triplets, timeout=args.timeout)
    spec["embed"].update(encoder={"backend": "open_clip", "model": encoder}, device="cpu")
    spec["train"].update(epochs=1, device="cpu")
    if args.train_max_triplets:  # the whole view is still loaded; the epoch is timed on a seeded sample
        spec["train"]["max_triplets"] = args.train_max_triplets
    if args.embed_part_rows:  # runtime-only: more parts, so a small run has a middle to kill in
        spec["embed"]["part_rows"] = args.embed_part_rows
    spec.pop("evaluate", None)
    return spec


def write_spec(spec: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


# -------------------------------------------------------------------------------- measuring


class MemorySampler(threading.Thread):
    """Per label: peak RSS of this process (every ``interval`` s, cheap) and peak PSS of this
    process plus its live workers (every ``tree_every`` samples: reading ``smaps_rollup``
    costs ~35 ms a process here). PSS splits pages a forked worker shares with this process
    (a DataLoader's) instead of counting them twice, as summed RSS would.

    Services are not the pipeline's cost: processes in ``exclude`` (the stand-in servers) and
    Prefect's API server (a child started by ``run_spec``) are left out.
    """

    def __init__(self, exclude: set[int], interval: float = 0.1, tree_every: int = 10) -> None:
        super().__init__(daemon=True)
        self.exclude, self.interval, self.tree_every = exclude, interval, tree_every
        self.label: str | None = None
        self.rss_peaks: dict[str, int] = {}
        self.tree_peaks: dict[str, int] = {}
        self._done = threading.Event()
        self._service: dict[int, bool] = {}

    def _is_service(self, process: psutil.Process) -> bool:
        if process.pid not in self._service:
            command = " ".join(process.cmdline())
            self._service[process.pid] = process.pid in self.exclude or "prefect.server" in command
        return self._service[process.pid]

    def tree_pss(self) -> int:
        me = psutil.Process()
        total = pss(me.pid)
        for child in me.children(recursive=True):
            try:
                if not self._is_service(child) and not any(self._is_service(p) for p in child.parents()):
                    total += pss(child.pid)
            except (psutil.Error, OSError):  # a worker that ended between the listing and the reading
                continue
        return total

    def sample(self, tick: int) -> None:
        label = self.label
        if label is None:
            return
        self.rss_peaks[label] = max(self.rss_peaks.get(label, 0), psutil.Process().memory_info().rss)
        if tick % self.tree_every == 0:
            self.tree_peaks[label] = max(self.tree_peaks.get(label, 0), self.tree_pss())

    def run(self) -> None:
        tick = 0
        while not self._done.wait(self.interval):
            self.sample(tick)
            tick += 1

    def stop(self) -> None:
        self._done.set()
        self.join()

    def peaks_mib(self, label: str) -> tuple[float, float]:
        return round(self.rss_peaks.get(label, 0) / 2**20, 1), round(self.tree_peaks.get(label, 0) / 2**20, 1)


def pss(pid: int) -> int:
    """Proportional set size of a process in bytes (``/proc/PID/smaps_rollup``)."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_seconds() -> float:
    """CPU time of this process and of its workers that have ended (pools are reaped per stage)."""
    times = psutil.Process().cpu_times()
    return times.user + times.system + times.children_user + times.children_system


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


@dataclass
class StageCost:
    """One stage of the rehearsal, as the cost-growth table shows it."""

    stage: str
    items: int
    item: str
    seconds: float
    cpu_seconds: float
    peak_rss_mib: float  # this process (publish: the ``scot publish`` process)
    peak_tree_pss_mib: float  # this process and its workers
    bytes_written: int
    counts: dict[str, Any] = field(default_factory=dict)

    @property
    def items_per_second(self) -> float:
        return self.items / self.seconds if self.seconds else 0.0


ITEMS: dict[str, tuple[str, Callable[[dict[str, Any]], int]]] = {
    "captions": ("captions checked", lambda s: s["candidates"]),
    "triplets": ("captions sampled", lambda s: s["captions"]),
    "embed": ("images + texts", lambda s: s["images_embedded"] + s["texts_embedded"]),
    "train": ("samples", lambda s: s["steps"] * min(s["triplets_train"], s.get("batch_size") or s["triplets_train"])),
}


class Recorder:
    """A ``PipelineObserver`` that prices each stage: seconds, CPU, peak RSS, bytes written."""

    live = False

    def __init__(self, sampler: MemorySampler, run_dir: Path, batch_size: int) -> None:
        self.sampler, self.run_dir, self.batch_size = sampler, run_dir, batch_size
        self.costs: list[StageCost] = []
        self._cpu = 0.0

    def stage_started(self, stage: str) -> None:
        self._cpu = cpu_seconds()
        self.sampler.label = stage

    def stage_finished(self, result: StageResult) -> None:
        cpu = cpu_seconds() - self._cpu
        time.sleep(2 * self.sampler.interval)  # one more sample of the stage's end
        self.sampler.label = None
        summary = {**result.summary, "batch_size": self.batch_size}
        item, count = ITEMS[result.stage]
        self.costs.append(StageCost(result.stage, count(summary), item, result.seconds, round(cpu, 1),
                                    *self.sampler.peaks_mib(result.stage), folder_bytes(self.run_dir / result.stage),
                                    result.counts))  # fmt: skip

    def stage_failed(self, stage: str, seconds: float, error: BaseException) -> None:
        self.sampler.label = None


def run_spec_with(engine: str, spec_path: Path, recorder: Recorder | None) -> list[StageResult]:
    """``scot run SPEC`` by ``engine`` in this process, as the CLI runs it (no live view)."""
    from scot_data.pipeline import observed_by, run_pipeline, signals_as_interrupt
    from scot_data.spec import load_spec

    with signals_as_interrupt(), observed_by(recorder):
        if engine == "local":
            return run_pipeline(load_spec(spec_path), show_progress=False)
        from flows.pipeline import run_spec

        return run_spec(str(spec_path), show_progress=False)


# ------------------------------------------------------------------------------ publishing


def start_moto() -> tuple[subprocess.Popen, str]:
    """moto's S3 server in its own process, with the rehearsal's bucket."""
    import boto3

    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")  # fmt: skip
    for _ in range(300):
        try:
            client.create_bucket(Bucket=BUCKET)
            return process, endpoint
        except Exception:  # noqa: BLE001 (not up yet: botocore raises several kinds)
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("moto server did not start")


@dataclass
class CliRun:
    """One ``scot`` subprocess: exit code, output, and its own peak RSS."""

    code: int
    output: str
    peak_rss: int
    seconds: float


def scot_cli(args: list[str], endpoint: str) -> CliRun:
    """``scot ARGS`` from this tree, with the S3 endpoint in the environment as a user would
    set it; its RSS is polled (``ru_maxrss`` of a child counts this process's pages from
    before its exec)."""
    env = {**os.environ, **S3_ENV, "AWS_ENDPOINT_URL": endpoint}
    started, peak = time.perf_counter(), 0
    with tempfile.TemporaryFile("w+") as log:
        process = psutil.Popen([sys.executable, "-m", "scot_data", *args], cwd=REPO, env=env, stdout=log,
                               stderr=subprocess.STDOUT, text=True)  # fmt: skip
        while process.poll() is None:
            try:
                peak = max(peak, process.memory_info().rss)
            except psutil.Error:  # ended between poll and reading
                break
            time.sleep(0.05)
        log.seek(0)
        return CliRun(process.wait(), log.read().strip()[-400:], peak, time.perf_counter() - started)


def publish_and_verify(embed_dir: Path, name: str) -> tuple[StageCost, dict[str, Any]]:
    """``scot publish`` the embedding cache to moto S3, then ``scot verify`` the copy there."""
    moto, endpoint = start_moto()
    url = f"s3://{BUCKET}/{name}/embed"
    try:
        cpu = cpu_seconds()
        published = scot_cli(["publish", str(embed_dir), url], endpoint)
        cpu = cpu_seconds() - cpu
        verified = scot_cli(["verify", url], endpoint)
    finally:
        stop_server(moto)
    files = len(json.loads((embed_dir / "manifest.json").read_text())["outputs"]) + 1
    rss = round(published.peak_rss / 2**20, 1)
    cost = StageCost("publish", files, "files", round(published.seconds, 2), round(cpu, 1), rss, rss,
                     folder_bytes(embed_dir))  # fmt: skip
    check = {"url": url, "publish_exit": published.code, "publish_output": published.output,
             "verify_exit": verified.code, "verify_output": verified.output, "verify_seconds": round(verified.seconds, 1)}  # fmt: skip
    return cost, check


# ---------------------------------------------------------------------------------- checks


def triplet_checks(summary: dict[str, Any], captions_rows: int, limit: int, served: dict[str, Any]) -> dict[str, Any]:
    """Every sampled caption ends as a triplet or a reject, answered once; every injected
    transport fault was retried; every garbage answer became a reject."""
    faults = served["faults"]
    transport = sum(faults.get(kind, 0) for kind in ("500", "hang", "drop"))
    sampled = min(limit, captions_rows)
    bad_json = summary["reasons"].get("bad json", 0)
    checks = {
        "sampled": sampled,
        "triplets": summary["triplets"],
        "rejects": summary["rejects"],
        "accounted": summary["triplets"] + summary["rejects"] == summary["captions"] == sampled,
        "answered_once": summary["requests"] == sampled,
        "faults_served": faults,
        "retries": summary["attempts"] - summary["requests"],
        "transport_faults_retried": summary["attempts"] - summary["requests"] >= transport,
        "garbage_rejected": bad_json == faults.get("bad-json", 0),
        "server_chat_requests": served["chat_requests"],
    }
    return checks


# -------------------------------------------------------------------- engines compared


def compare_engines(spec: dict[str, Any], out: Path, server: dict[str, Any]) -> dict[str, float]:
    """The triplet stage again on the same captions, by each engine, the stand-in fresh each time."""
    from flows.triplets import triplets_flow

    seconds: dict[str, float] = {}
    for engine in ("prefect", "local", "prefect-tasks"):
        restart(server)
        run_dir = out / "engines" / engine
        shutil.copytree(Path(spec["output_dir"]) / "captions", run_dir / "captions")
        alone = {**{k: spec[k] for k in ("name", "captions")}, "output_dir": str(run_dir),
                 "triplets": {**spec["triplets"], "endpoints": [server["endpoint"]]}}  # fmt: skip
        started = time.perf_counter()
        if engine == "prefect-tasks":
            triplets_flow(alone["triplets"], str(run_dir / "captions"), str(run_dir / "triplets"))
            seconds[engine] = round(time.perf_counter() - started, 2)
        else:
            results = run_spec_with(engine, write_spec(alone, run_dir / "spec.yaml"), None)
            seconds[engine] = next(r.seconds for r in results if r.stage == "triplets")
        print(f"  triplet stage by {engine}: {seconds[engine]:.1f} s", flush=True)
    return seconds


def stand_in(args: argparse.Namespace) -> dict[str, Any]:
    """The stand-in LLM host, started, serving coco-290k's model name."""
    model = yaml.safe_load(BASE_SPEC.read_text())["triplets"]["model"]
    server = {"latency": args.latency, "fault_rate": args.fault_rate, "model": model}
    restart(server)
    return server


def restart(server: dict[str, Any]) -> None:
    """A fresh stand-in (its per-caption fault memory cleared) on a new port."""
    if server.get("process") is not None:
        stop_server(server["process"])
    port = free_port()
    server["process"] = start_server(port, delay=server["latency"], fault_rate=server["fault_rate"], varied=True,
                                     model=server["model"])  # fmt: skip
    server["endpoint"] = f"http://127.0.0.1:{port}/v1"


# ----------------------------------------------------------------------------- reporting


def train_epoch(summary: dict[str, Any], triplets: int) -> dict[str, Any]:
    """The epoch's time: measured when it trained on every training triplet, else the
    measured samples/s extrapolated to them (held-out images' triplets excluded)."""
    trained, full = summary["triplets_train"], triplets - summary["triplets_val"]
    return {"dim": summary["dim"], "triplets_trained": trained, "triplets_train_full": full,
            "samples_per_second": summary["samples_per_second"], "stage_seconds": summary["seconds"],
            "epoch_seconds": round(full / summary["samples_per_second"], 1) if summary["samples_per_second"] else None,
            "epoch": "measured" if trained == full else f"extrapolated from {trained:,} of {full:,}"}  # fmt: skip


def machine() -> dict[str, Any]:
    import torch

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())  # fmt: skip
    return {"cpu": model, "cores": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "load_average_start": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip


def table(costs: list[StageCost]) -> str:
    header = (f"{'stage':<10}{'items':>10} {'item':<18}{'seconds':>9}{'items/s':>10}{'cpu s':>8}{'RSS MiB':>9}"
              f"{'tree PSS MiB':>14}{'MiB written':>13}")
    rows = [header, "-" * len(header)]
    for c in costs:
        rows.append(f"{c.stage:<10}{c.items:>10,} {c.item:<18}{c.seconds:>9.1f}{c.items_per_second:>10.1f}"
                    f"{c.cpu_seconds:>8.1f}{c.peak_rss_mib:>9.0f}{c.peak_tree_pss_mib:>14.0f}"
                    f"{c.bytes_written / 2**20:>13.1f}")  # fmt: skip
    return "\n".join(rows)


def stand_in_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of the input and the stand-ins (shared with ``bench/resume_drill.py``)."""
    parser.add_argument("--triplets", type=int, required=True, help="captions the triplet stage samples (N)")
    parser.add_argument("--out", type=Path, help="a new or empty folder (default: a temporary one, kept)")
    parser.add_argument("--latency", type=float, default=0.02, help="the stand-in LLM's seconds per answer")
    parser.add_argument("--fault-rate", type=float, default=0.02, help="share of captions dealt one fault")
    parser.add_argument("--timeout", type=float, default=5.0, help="the client's seconds per request (a hang's cost)")
    parser.add_argument("--dim", type=int, default=128, help="the stand-in encoder's embedding width")
    parser.add_argument("--train-max-triplets", type=int,
                        help="train on a seeded sample of this many (the spec's max_triplets): the whole view is "
                             "loaded, the epoch's time is extrapolated to every training triplet")  # fmt: skip
    parser.add_argument("--embed-part-rows", type=int, help="the embed stage's part_rows (runtime-only)")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch threads of this process: on a shared 2-core machine 2 OpenMP threads ran the "
                             "stand-in's text tower 4x slower than 1 (train pins 1 for the same reason)")  # fmt: skip
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = stand_in_options(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--engine", choices=("prefect", "local"), default="prefect")
    parser.add_argument("--compare-engines", action="store_true", help="then time the triplet stage three ways")
    return parser.parse_args(argv)


def rehearse(args: argparse.Namespace) -> dict[str, Any]:
    """Build the input, run the spec, publish, check; returns what ``rehearse.json`` holds."""
    import torch

    torch.set_num_threads(args.torch_threads)
    from scot_data.cli.run import PREFECT_DEFAULTS

    for key, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(key, value)
    out = (args.out or Path(f"/tmp/scot-rehearse-{args.triplets}-{os.getpid()}")).resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SystemExit(f"error: {out}: not an empty folder (the rehearsal measures a run from scratch)")
    report: dict[str, Any] = {"command": " ".join(["python -m bench.rehearse", *sys.argv[1:]]), "out": str(out),
                              "machine": machine()}
    images, captions = sizes(args.triplets)
    started = time.perf_counter()
    coco = write_coco(out / "input", images)
    report["input"] = {"images": images, "captions": captions, "seconds": round(time.perf_counter() - started, 1)}
    print(f"input: {images:,} images, {captions:,} captions ({report['input']['seconds']} s) in {out / 'input'}")
    encoder = tiny_encoder(args.dim, out / "open_clip")
    server = stand_in(args)
    spec = rehearsal_spec(args.triplets, coco, out / "run", server["endpoint"], encoder, args)
    spec_path = write_spec(spec, out / "spec.yaml")
    from scot_data.memory import release_freed_memory

    release_freed_memory()  # writing the input is the bench's work, not scot run's: its garbage goes
    sampler = MemorySampler({server["process"].pid})
    sampler.start()
    report["rss_before_run_mib"] = round(psutil.Process().memory_info().rss / 2**20, 1)  # imports: torch alone ~600
    recorder = Recorder(sampler, out / "run", spec["train"]["batch_size"])
    try:
        started = time.perf_counter()
        results = run_spec_with(args.engine, spec_path, recorder)
        report["run_seconds"] = round(time.perf_counter() - started, 1)
        report["server"] = server_stats(server["endpoint"])
        publish, report["publish"] = publish_and_verify(out / "run" / "embed", spec["name"])
        recorder.costs.append(publish)
        if args.compare_engines:
            report["engines"] = compare_engines(spec, out, server)
    finally:
        stop_server(server["process"])
        sampler.stop()
    by_stage = {r.stage: r.summary for r in results}
    report["stages"] = [{**asdict(c), "items_per_second": round(c.items_per_second, 1)} for c in recorder.costs]
    report["status"] = {r.stage: r.status for r in results}
    report["checks"] = triplet_checks(by_stage["triplets"], by_stage["captions"]["rows"], args.triplets,
                                      report["server"])  # fmt: skip
    report["checks"]["published_verifies"] = report["publish"]["verify_exit"] == 0
    report["train_epoch"] = train_epoch(by_stage["train"], by_stage["triplets"]["triplets"])
    report["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    (out / "rehearse.json").write_text(json.dumps(report, indent=2))
    return report


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.chdir(REPO)  # the spec's prompt path is relative to the repository, as coco-290k.yaml's is
    report = rehearse(args)
    costs = [StageCost(**{k: v for k, v in s.items() if k != "items_per_second"}) for s in report["stages"]]
    print(table(costs))
    print(f"scot run {report['run_seconds']} s; checks: {json.dumps(report['checks'])}")
    print(f"train epoch: {json.dumps(report['train_epoch'])}")
    if "engines" in report:
        print(f"triplet stage by engine (s): {report['engines']}")
    print(f"report: {report['out']}/rehearse.json")


if __name__ == "__main__":
    main()
