"""One factory for every encoder: ``create_encoder(spec)`` with a registry keyed by backend.

A spec is written ``backend[:model][@weights]``, in a pipeline YAML or on the command line:

* ``lit-mini`` / ``lit-mini@runs/lit/heads.safetensors`` — the embedded default, untrained
  or with fitted heads; ``lit-base[@heads]`` its stronger sibling (every LiT variant of
  :data:`~scot_data.encoders.lit_family.LIT_VARIANTS` is a backend);
* ``open_clip:ViT-L-14@openai`` (pretrained tag), ``open_clip:ViT-B-32@/ckpt/model.pt``
  (local checkpoint), ``open_clip:ViT-B-32`` (seeded random init);
* ``hf:/models/clip-vit-base-patch32`` — a local transformers CLIP / SigLIP directory.

Backends are imported only when used, so asking for ``hf`` never imports open_clip, and
new ones can be added with :func:`register_backend`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from scot_data.config_files import problems
from scot_data.encoders.lit_family import LIT_VARIANTS
from scot_data.errors import ScotInputError

if TYPE_CHECKING:  # the factory stays light: specs and the CLI read it without torch
    from scot_data.encoders.base import Encoder

EncoderBuilder = Callable[["EncoderSpec", str, int], "Encoder"]


class EncoderSpec(BaseModel):
    """Which encoder to build: backend, model (name or directory) and weights (tag,
    checkpoint or heads file). A spec section may give the mapping or the string
    ``backend[:model][@weights]``; the device and the seed of any random init are the
    caller's, not the encoder's identity."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: str = Field("lit-mini", description="a registered backend (scot encoder info lists them)")
    model: str | None = Field(None, description="open_clip architecture, or a local hf/open_clip model")
    weights: str | None = Field(None, description="open_clip pretrained tag or checkpoint, or LiT heads")

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        head, _, weights = value.strip().partition("@")
        backend, _, model = head.partition(":")
        if not backend:
            raise ValueError(f"encoder spec {value!r}: expected backend[:model][@weights]")
        return {"backend": backend, "model": model or None, "weights": weights or None}

    @field_validator("backend")
    @classmethod
    def _registered(cls, backend: str) -> str:
        if backend not in _BUILDERS:
            raise ValueError(f"unknown backend {backend!r} (known: {list_backends()})")
        return backend

    @classmethod
    def parse(cls, value: str | Mapping[str, Any] | EncoderSpec) -> EncoderSpec:
        """Read a spec string or mapping; a bad one is one input error naming it."""
        if isinstance(value, EncoderSpec):
            return value
        try:
            return cls.model_validate(value)
        except ValidationError as exc:
            raise ScotInputError(f"encoder spec {value!r}: {problems(exc)}") from None

    def __str__(self) -> str:
        text = self.backend + (f":{self.model}" if self.model else "")
        return text + (f"@{self.weights}" if self.weights else "")


def _require(spec: EncoderSpec, model: bool, weights: bool | None) -> None:
    """Check which parts a backend needs (``weights=None``: optional)."""
    if model and not spec.model:
        raise ScotInputError(
            f"encoder spec {spec}: backend {spec.backend!r} needs a model, e.g. {spec.backend}:NAME"
        )
    if not model and spec.model:
        raise ScotInputError(f"encoder spec {spec}: backend {spec.backend!r} takes no model name")
    if weights is False and spec.weights:
        raise ScotInputError(f"encoder spec {spec}: backend {spec.backend!r} takes no @weights")


def _build_open_clip(spec: EncoderSpec, device: str, seed: int) -> Encoder:
    from scot_data.encoders.open_clip_backend import OpenClipEncoder

    _require(spec, model=True, weights=None)
    return OpenClipEncoder(spec.model, pretrained=spec.weights, device=device, seed=seed)


def _build_hf(spec: EncoderSpec, device: str, seed: int) -> Encoder:
    from scot_data.encoders.hf_backend import HFEncoder

    _require(spec, model=True, weights=False)
    return HFEncoder(spec.model, device=device)


def _build_lit(spec: EncoderSpec, device: str, seed: int) -> Encoder:
    from scot_data.encoders.lit import LitEncoder

    _require(spec, model=False, weights=None)
    return LitEncoder(spec.backend, heads=spec.weights, device=device, seed=seed)


_BUILDERS: dict[str, EncoderBuilder] = {
    "open_clip": _build_open_clip,
    "hf": _build_hf,
    **{name: _build_lit for name in LIT_VARIANTS},
}


def register_backend(name: str, builder: EncoderBuilder) -> None:
    """Add (or replace) a backend; ``builder(spec, device, seed)`` returns an encoder."""
    _BUILDERS[name] = builder


def list_backends() -> list[str]:
    """The backend names :func:`create_encoder` accepts."""
    return sorted(_BUILDERS)


def create_encoder(spec: EncoderSpec | str | Mapping[str, Any], device: str = "auto", seed: int = 0) -> Encoder:
    """Build the encoder a spec names on ``device``; ``seed`` seeds any random init."""
    spec = EncoderSpec.parse(spec)
    return _BUILDERS[spec.backend](spec, device, seed)
