"""One factory for every encoder: ``create_encoder(spec)`` with a registry keyed by backend.

A spec is written ``backend[:model][@weights]``, in a pipeline YAML or on the command line:

* ``lit-mini`` / ``lit-mini@runs/lit/heads.safetensors`` — the embedded default, untrained
  or with fitted heads;
* ``open_clip:ViT-L-14@openai`` (pretrained tag), ``open_clip:ViT-B-32@/ckpt/model.pt``
  (local checkpoint), ``open_clip:ViT-B-32`` (seeded random init);
* ``hf:/models/clip-vit-base-patch32`` — a local transformers CLIP / SigLIP directory.

Backends are imported only when used, so asking for ``hf`` never imports open_clip, and
new ones can be added with :func:`register_backend`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from scot_data.encoders.base import Encoder
from scot_data.errors import ScotInputError

EncoderBuilder = Callable[["EncoderSpec"], Encoder]


@dataclass(frozen=True)
class EncoderSpec:
    """Which encoder to build: backend, model (name or directory), weights (tag, checkpoint
    or heads file), the device to run on and the seed of any random init."""

    backend: str
    model: str | None = None
    weights: str | None = None
    device: str = "auto"
    seed: int = 0

    @classmethod
    def parse(cls, text: str) -> EncoderSpec:
        """Read ``backend[:model][@weights]`` (see the module docstring for examples)."""
        head, _, weights = text.strip().partition("@")
        backend, _, model = head.partition(":")
        if not backend:
            raise ScotInputError(f"encoder spec {text!r}: expected backend[:model][@weights]")
        return cls(backend=backend, model=model or None, weights=weights or None)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> EncoderSpec:
        """Build from a pipeline-spec mapping; unknown keys are errors, not silently ignored."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ScotInputError(f"encoder spec: unknown keys {unknown} (known: {sorted(known)})")
        return cls(**values)

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


def _build_open_clip(spec: EncoderSpec) -> Encoder:
    from scot_data.encoders.open_clip_backend import OpenClipEncoder

    _require(spec, model=True, weights=None)
    return OpenClipEncoder(spec.model, pretrained=spec.weights, device=spec.device, seed=spec.seed)


def _build_hf(spec: EncoderSpec) -> Encoder:
    from scot_data.encoders.hf_backend import HFEncoder

    _require(spec, model=True, weights=False)
    return HFEncoder(spec.model, device=spec.device)


def _build_lit_mini(spec: EncoderSpec) -> Encoder:
    from scot_data.encoders.lit_mini import LitMiniEncoder

    _require(spec, model=False, weights=None)
    return LitMiniEncoder(heads=spec.weights, device=spec.device, seed=spec.seed)


_BUILDERS: dict[str, EncoderBuilder] = {
    "open_clip": _build_open_clip,
    "hf": _build_hf,
    "lit-mini": _build_lit_mini,
}


def register_backend(name: str, builder: EncoderBuilder) -> None:
    """Add (or replace) a backend; ``builder`` turns an :class:`EncoderSpec` into an encoder."""
    _BUILDERS[name] = builder


def list_backends() -> list[str]:
    """The backend names :func:`create_encoder` accepts."""
    return sorted(_BUILDERS)


def create_encoder(spec: EncoderSpec | str | Mapping[str, Any], **overrides: Any) -> Encoder:
    """Build the encoder a spec names; ``overrides`` (e.g. ``device="cpu"``) replace spec fields."""
    if isinstance(spec, str):
        spec = EncoderSpec.parse(spec)
    elif not isinstance(spec, EncoderSpec):
        spec = EncoderSpec.from_mapping(spec)
    spec = replace(spec, **overrides)
    builder = _BUILDERS.get(spec.backend)
    if builder is None:
        raise ScotInputError(
            f"encoder spec {spec}: unknown backend {spec.backend!r} (known: {list_backends()})"
        )
    return builder(spec)
