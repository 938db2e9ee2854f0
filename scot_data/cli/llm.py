"""``scot llm``: the embedded vLLM server (serve, stop, status)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from pydantic import TypeAdapter

from scot_data.cli.common import _validated, reports_input_errors
from scot_data.errors import ScotInputError
from scot_data.llm.config import DEFAULT_VENV
from scot_data.triplets.config import EmbeddedServer

llm_app = typer.Typer(help="The embedded vLLM server.", no_args_is_help=True)


@llm_app.command("serve")
@reports_input_errors
def llm_serve(
    model: str = typer.Option("smollm2-135m-instruct", "--model", help="built-in name, local HF dir or hub id"),
    port: int = typer.Option(8000, "--port"),
    served_name: Optional[str] = typer.Option(None, "--served-name", help="default: --model"),
    venv: Path = typer.Option(DEFAULT_VENV, "--venv", help="the vLLM environment"),
    eager: bool = typer.Option(True, "--eager/--compile", help="skip torch.compile (3x faster start on CPU)"),
    kv_cache_gib: float = typer.Option(2.0, "--kv-cache-gib"),
    max_model_len: int = typer.Option(1024, "--max-model-len"),
    timeout: float = typer.Option(900.0, "--timeout", help="seconds to wait for /health"),
) -> None:
    """Start the vLLM OpenAI server on 127.0.0.1 in the background and wait until healthy."""
    from scot_data.llm.models import resolve_model
    from scot_data.llm.server import VLLMServerConfig, serve


    _validated(TypeAdapter(EmbeddedServer),
               {"port": port, "kv_cache_gib": kv_cache_gib, "max_model_len": max_model_len})  # fmt: skip
    if not timeout > 0:
        raise ScotInputError(f"--timeout {timeout}: must be above 0 seconds")
    python = venv / "bin" / "python"
    if not (python.is_file() and os.access(python, os.X_OK)):
        raise ScotInputError(f"--venv {venv}: no runnable bin/python there (run "
                             "`bash scripts/setup_vllm_env.sh` or pass the vLLM environment)")
    local = Path(model).expanduser()
    if local.exists() or model.startswith(("/", ".", "~")):  # a path, not a built-in name or a hub id
        if not (local / "config.json").is_file():
            raise ScotInputError(f"--model {model}: not a Hugging Face model folder (no config.json)")
    config = VLLMServerConfig(
        model=resolve_model(model), served_model_name=served_name or model, port=port, venv=venv,
        enforce_eager=eager, kv_cache_gib=kv_cache_gib, max_model_len=max_model_len,
    )  # fmt: skip
    server, waited = serve(config, timeout)
    typer.echo(f"serving {config.name} at {config.base_url} (pid {server.process.pid if server.process else '?'}, "
               f"healthy after {waited:.0f} s, log {server.log_file}); stop with: scot llm stop --port {port}")


@llm_app.command("stop")
@reports_input_errors
def llm_stop(port: Optional[int] = typer.Option(None, "--port", help="default: every server scot started")) -> None:
    """Stop servers started by ``scot llm serve`` (found through their state files)."""
    from scot_data.llm.server import stop_servers


    if port is not None:
        _validated(TypeAdapter(EmbeddedServer), {"port": port})
    stopped = stop_servers(port=port)
    typer.echo(f"stopped {len(stopped)} server(s)" + "".join(f"\n  port {s.port}: {s.model}" for s in stopped))


@llm_app.command("status")
def llm_status() -> None:
    """List the servers scot started and whether they are alive."""
    from scot_data.llm.server import list_servers


    for path, state in list_servers():
        typer.echo(f"port {state.port}: {state.model} pid {state.pid} {'alive' if state.is_alive() else 'dead'} ({path})")
