"""The deployments of ``flows/serve.py`` served for real, each piece its own process as a user
starts it: ``prefect server start`` (a temporary PREFECT_HOME and sqlite database), ``python
-m flows.serve`` against it, ``scot captions ingest`` dropping a new caption folder into the
watched root, and ``prefect deployment run NAME --watch`` triggering the deployments.

The spec is tiny and needs no server or download: captions from a four-row table, template
triplets, the offline ``lit-mini`` encoder (untrained heads). The served processes are
stopped as a user stops them (Ctrl-C: SIGINT to each one's process group, ``flows.serve``
before the server), and no process that held this test's PREFECT_HOME is left.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from scot_data.manifest import read_manifest
from scot_data.verify import verify
from tests.conftest import png_bytes

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the prefect and scot commands of this environment
CAPTIONS = ["a red square on a table", "a blue car in the street", "a green tree in a park", "a yellow dog on grass"]
DEPLOYMENTS = ["scot-pipeline/scot-pipeline", "scot-triplets-watch/scot-triplets-watch",
               "scot-embed-watch/scot-embed-watch"]  # fmt: skip


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def caption_table(root: Path) -> Path:
    """Four PNGs and a Parquet table naming them, the ``--format table`` input."""
    (root / "img").mkdir(parents=True)
    for i in range(len(CAPTIONS)):
        (root / "img" / f"{i}.png").write_bytes(png_bytes(i))
    table = pa.table({"image": [f"img/{i}.png" for i in range(len(CAPTIONS))], "caption": CAPTIONS})
    pq.write_table(table, root / "pairs.parquet")
    return root / "pairs.parquet"


def ours(home: Path) -> list[psutil.Process]:
    """Every live process started with this test's PREFECT_HOME (its environment says so)."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("PREFECT_HOME") == str(home) and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def interrupt(process: subprocess.Popen, timeout: float = 120) -> int:
    """Ctrl-C as a terminal sends it (SIGINT to the process group), then SIGTERM as a service
    manager would if it is still up (a loaded CI machine once kept ``flows.serve`` past 60 s
    after SIGINT); 0 when either stopped it cleanly. SIGKILL only if both hang."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        os.killpg(process.pid, sig)
        try:
            code = process.wait(timeout)
            return 0 if code in (0, -signal.SIGTERM, 128 + signal.SIGTERM) else code
        except subprocess.TimeoutExpired:
            continue
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    raise subprocess.TimeoutExpired(process.args, 2 * timeout)


def wait_for(check, timeout: float, what: str, process: subprocess.Popen, log: Path):
    """Poll ``check`` until it returns something truthy; fail with ``log``'s tail if the
    process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{what}: the process exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if found := check():
                return found
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{what}: not within {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def live(tmp_path: Path) -> Iterator[dict]:
    """A Prefect server and ``flows.serve`` serving the three deployments, both stopped after."""
    home, port = tmp_path / "prefect-home", free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": api, "PYTHONPATH": str(REPO),
           "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{tmp_path / 'prefect.db'}",
           "PREFECT_SERVER_UI_ENABLED": "false", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}  # fmt: skip
    env["PREFECT_RUNNER_POLL_FREQUENCY"] = "1"  # flows.serve asks for new runs every second, not every 10
    table = caption_table(tmp_path / "src")
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "live", "output_dir": str(tmp_path / "run"),
        "captions": {"format": "table", "input": str(table), "workers": 1},
        "triplets": {"backend": "template"},
        "embed": {"encoder": "lit-mini", "device": "cpu", "num_workers": 0, "image_batch_size": 4},
    }))  # fmt: skip
    logs = {name: tmp_path / f"{name}.log" for name in ("server", "serve")}
    started = []
    try:
        server = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                                  env=env, stdout=logs["server"].open("w"), stderr=subprocess.STDOUT,
                                  start_new_session=True)  # fmt: skip
        started.append(server)
        wait_for(lambda: httpx.get(f"{api}/health", timeout=2).status_code == 200, 90, "server", server, logs["server"])
        roots = {"captions": tmp_path / "in", "out": tmp_path / "out"}
        roots["captions"].mkdir()
        serve = subprocess.Popen([sys.executable, "-m", "flows.serve", "--captions-root", str(roots["captions"]),
                                  "--out-root", str(roots["out"]), "--spec", str(spec), "--every", "3600"],
                                 cwd=REPO, env=env, stdout=logs["serve"].open("w"), stderr=subprocess.STDOUT,
                                 start_new_session=True)  # fmt: skip
        started.append(serve)

        def deployed() -> bool:
            reply = httpx.post(f"{api}/deployments/filter", json={}, timeout=5).json()
            return sorted(d["name"] for d in reply) == sorted(name.split("/")[1] for name in DEPLOYMENTS)

        wait_for(deployed, 90, "deployments", serve, logs["serve"])
        yield {"env": env, "api": api, "table": table, "spec": spec, "home": home, "logs": logs, **roots}
        assert interrupt(serve) == 0, logs["serve"].read_text()[-3000:]  # flows.serve first, then the server
        assert interrupt(server) == 0, logs["server"].read_text()[-3000:]
        time.sleep(1)
        assert ours(home) == [], "processes left behind"
    finally:
        for process in started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for process in ours(home):
            process.kill()


def run_deployment(live: dict, name: str, timeout: int = 180) -> subprocess.CompletedProcess:
    """``prefect deployment run NAME --watch``: returns when the run is over; exit 0 = Completed."""
    command = [str(BIN / "prefect"), "deployment", "run", name, "--watch", "--watch-timeout", str(timeout)]
    done = subprocess.run(command, env=live["env"], capture_output=True, text=True, timeout=timeout + 60)
    assert done.returncode == 0 and "finished successfully in 'Completed'" in done.stdout, (
        f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}\nserve log:\n{live['logs']['serve'].read_text()[-4000:]}"
    )
    return done


@pytest.mark.timeout(420)
def test_watch_deployments_turn_a_new_caption_folder_into_triplets_then_embeddings(live):
    out = live["out"]
    batch = live["captions"] / "batch-1"
    ingest = [str(BIN / "scot"), "captions", "ingest", "--format", "table", "--input", str(live["table"]),
              "--out", str(batch), "--no-progress"]  # fmt: skip
    subprocess.run(ingest, env=live["env"], check=True, capture_output=True, timeout=120)
    assert read_manifest(batch)["stats"]["rows"] == len(CAPTIONS)

    run_deployment(live, "scot-triplets-watch/scot-triplets-watch")
    triplets = read_manifest(out / "triplets" / "batch-1")
    assert triplets["stage"] == "triplets" and triplets["stats"]["triplets"] == len(CAPTIONS)
    assert not (out / "embed").exists()  # the embed watch has not run since: one tick per stage

    run_deployment(live, "scot-embed-watch/scot-embed-watch")
    embedded = read_manifest(out / "embed" / "batch-1")
    assert embedded["stats"]["images"] == len(CAPTIONS) and embedded["encoder"]["spec"] == "lit-mini"
    assert embedded["stats"]["texts"] == 3 * len(CAPTIONS)  # captions, modifications, modified captions
    assert verify(out / "triplets" / "batch-1") == [] and verify(out / "embed" / "batch-1") == []

    watch = httpx.get(f"{live['api']}/deployments/name/scot-embed-watch/scot-embed-watch", timeout=5).json()
    assert [s["schedule"]["interval"] for s in watch["schedules"]] == [3600.0]  # --every, on the server

    run_deployment(live, "scot-pipeline/scot-pipeline")
    run = live["spec"].parent / "run"
    stages = {name: read_manifest(run / name) for name in ("captions", "triplets", "embed")}
    assert stages["captions"]["stats"]["rows"] == len(CAPTIONS)
    assert stages["triplets"]["stats"]["triplets"] == len(CAPTIONS)
    assert stages["embed"]["stats"]["images"] == len(CAPTIONS)
