"""The LLM server a pipeline spec asks ``scot run`` to start for its triplet stage."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from scot_data.llm.config import DEFAULT_VENV
from scot_data.llm.models import resolve_model
from scot_data.llm.server import VLLMServer, VLLMServerConfig
from scot_data.triplets.config import EmbeddedServer, TripletsConfig


def server_config(serve: EmbeddedServer, served_name: str, log_file: Path | None = None) -> VLLMServerConfig:
    """The vLLM launch settings for a spec's ``serve:`` section."""
    return VLLMServerConfig(
        model=resolve_model(serve.model),
        served_model_name=served_name,
        port=serve.port,
        venv=serve.venv or DEFAULT_VENV,
        max_model_len=serve.max_model_len,
        kv_cache_gib=serve.kv_cache_gib,
        enforce_eager=serve.enforce_eager,
        log_file=log_file,
    )


@contextmanager
def llm_endpoint(cfg: TripletsConfig, log_file: Path | None = None) -> Iterator[TripletsConfig]:
    """Yield ``cfg`` pointed at its embedded server, started here and stopped on exit;
    a config without ``serve:`` (or whose backend needs no LLM) is yielded unchanged."""
    if cfg.serve is None or not cfg.backend_entry.llm:
        yield cfg
        return
    launch = server_config(cfg.serve, cfg.model, log_file)
    server = VLLMServer(launch)
    server.start()
    try:
        server.wait_healthy(cfg.serve.startup_timeout)
        yield cfg.model_copy(update={"endpoints": [launch.base_url]})
    finally:
        server.stop()
