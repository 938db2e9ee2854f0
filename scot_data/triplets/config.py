"""Triplet-stage configuration, shared by the pipeline spec and ``scot triplets generate``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_PROMPT = Path("v1")  # the shipped template (scot_data/pipelines/prompts/v1.yaml)
TEMPLATE_VERSION = "template-v1"


@dataclass(frozen=True)
class TripletBackend:
    """One way of turning captions into triplets: everything the stage, the flow, ``scot run``
    and the CLI need to know about a backend, declared once in :data:`BACKENDS`.

    ``llm``: answers come from an LLM over ``endpoints`` (a prompt is loaded and hashed into
    the fingerprint, the endpoints are checked before any work, a spec's ``serve:`` server is
    started, batches are concurrent requests and, in the Prefect flow, one task each).
    Otherwise parts are made locally from the captions alone, labelled ``name`` and
    ``version``, and only ``fingerprint_keys`` (plus ``<name>_version``) shape the answers.
    """

    name: str
    description: str
    llm: bool
    version: str | None = None
    fingerprint_keys: tuple[str, ...] | None = None


BACKENDS: dict[str, TripletBackend] = {
    backend.name: backend
    for backend in (
        TripletBackend("llm", "an LLM behind OpenAI-compatible endpoints", llm=True),
        TripletBackend("template", "rule-based edits of the caption alone (no server)", llm=False,
                       version=TEMPLATE_VERSION, fingerprint_keys=("backend", "limit", "seed")),
    )
}  # fmt: skip
BackendName = Literal[tuple(BACKENDS)]  # type: ignore[valid-type]


class EmbeddedServer(BaseModel):
    """An LLM server that ``scot run`` starts itself (vLLM in its own environment)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field("smollm2-135m-instruct", description="a built-in name, a local HF directory or a hub id")
    port: int = Field(8000, ge=1, le=65535)
    venv: Path | None = Field(None, description="the vLLM environment; default: SCOT_VLLM_VENV, else the "
                              "one beside scot's own (<venv>-vllm)")
    max_model_len: int = Field(1024, ge=64)
    kv_cache_gib: float = Field(2.0, gt=0, description="VLLM_CPU_KVCACHE_SPACE (CPU builds only)")
    enforce_eager: bool = Field(True, description="skip torch.compile: a 3x faster start on CPU")
    startup_timeout: float = Field(900.0, gt=0)


class Sampling(BaseModel):
    """Sampling parameters sent with every request; part names depend on them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(0.7, ge=0.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_tokens: int = Field(160, ge=1)


class TripletsConfig(BaseModel):
    """How captions become triplets, and how hard the client pushes the servers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: BackendName = "llm"
    endpoints: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:8000/v1"])
    model: str = "smollm2-135m-instruct"
    serve: EmbeddedServer | None = Field(None, description="start this server for the run")
    prompt: Path = Field(DEFAULT_PROMPT, description="a shipped template's name (v1, scenes-v1) or YAML file")
    response_format: Literal["json_schema", "json_object"] = "json_schema"
    sampling: Sampling = Sampling()
    concurrency: int = Field(16, ge=1, description="requests in flight over all endpoints")
    batch_size: int = Field(64, ge=1, description="captions per resumable part")
    timeout: float = Field(60.0, gt=0, description="seconds per request")
    max_attempts: int = Field(5, ge=1, description="tries per request on connection errors, 429 and 5xx")
    retry_backoff: float = Field(0.5, gt=0, description="first retry delay in seconds; doubles, with jitter")
    limit: int | None = Field(None, ge=1, description="use a seeded sample of this many captions")
    seed: int = 0
    max_modification_words: int = Field(24, ge=1)
    max_caption_growth_words: int = Field(24, ge=0, description="words the modified caption may add")

    @property
    def backend_entry(self) -> TripletBackend:
        return BACKENDS[self.backend]
