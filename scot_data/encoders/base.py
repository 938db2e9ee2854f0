"""What every encoder offers: a stable identity, a picklable image transform, and
L2-normalised image and text embeddings computed without gradients.

Backends only say how to get raw features (``_image_features`` / ``_text_features``);
device placement, mixed precision, normalisation and the float32-on-CPU result are the
same for all of them, so embeddings from different backends are interchangeable downstream.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from scot_data.errors import ScotInputError

ImageTransform = Callable[[Image.Image], torch.Tensor]


@dataclass(frozen=True)
class EncoderIdentity:
    """Everything that determines an embedding's value; it goes into every embedding manifest.

    Two encoders with equal identities produce the same vectors for the same inputs (on the
    same kind of device), so a cache keyed by :meth:`key` may be reused; any change to weights,
    preprocessing or precision changes the key and invalidates the cache.
    """

    backend: str
    model_name: str
    weights_sha256: str
    weights: str  # where the weights came from, for people reading a manifest
    trained: bool  # False for random init or untrained heads: vectors that mean nothing yet
    preprocessing: str
    dim: int
    dtype: str  # precision the forward pass runs in (float32 on CPU, bfloat16 autocast on GPU)
    normalised: bool = True

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready fields."""
        return asdict(self)

    def key(self) -> str:
        """A digest of the fields that determine the vectors (not the descriptive ``weights``
        and ``trained``), so renaming a checkpoint file does not invalidate a cache."""
        fields = {k: v for k, v in self.as_dict().items() if k not in _DESCRIPTIVE_FIELDS}
        canonical = json.dumps(fields, sort_keys=True)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


_DESCRIPTIVE_FIELDS = ("weights", "trained")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks the GPU when there is one; anything else is taken as given. A name
    torch does not know, or a CUDA device this machine lacks, is an input error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        known = "auto, cpu, cuda, cuda:N, mps"
        raise ScotInputError(f"device {str(device)!r}: not a torch device ({known})") from None
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ScotInputError(f"device {str(device)!r}: CUDA is not available on this machine")
        if resolved.index is not None and resolved.index >= count:
            raise ScotInputError(f"device {str(device)!r}: this machine has {count} CUDA device(s)")
    return resolved


def cpu_has_native_bfloat16() -> bool:
    """True where oneDNN computes in bfloat16 natively (AVX512-BF16 or AMX). There, locked
    towers with bfloat16 weights run 2.2x faster than float32 (EfficientNet-Lite0, this
    project's 2-core EPYC: bench/encoder_forward.py); elsewhere bfloat16 is emulated and slower."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def state_dict_sha256(module: torch.nn.Module) -> str:
    """SHA-256 over every tensor of ``module``'s state dict (name, dtype, shape and bytes).

    Hashing the loaded tensors rather than a file covers random init, renamed checkpoints
    and heads loaded on top of towers alike: equal digests mean equal weights.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        data = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{data.dtype}|{tuple(data.shape)}\n".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def rgb_on_white(image: Image.Image) -> Image.Image:
    """RGB with transparency composited onto white, as clip-art is meant to be seen.

    A plain ``convert("RGB")`` drops alpha and shows whatever colour the transparent
    pixels hold (often black). A module-level function, so transforms stay picklable.
    """
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")


class Encoder(ABC):
    """A frozen image-text encoder. Subclasses build the model and implement the two
    ``_*_features`` methods; this class owns device, precision and normalisation."""

    # Set by every subclass's constructor:
    identity: EncoderIdentity  # recorded with every embedding this encoder writes
    image_transform: ImageTransform  # PIL -> CHW tensor; picklable, for DataLoader workers

    def __init__(self, device: str | torch.device = "auto", cpu_bfloat16: bool = False) -> None:
        """``cpu_bfloat16``: the backend's frozen towers may run with bfloat16 weights on a CPU
        that has native bfloat16 (the backend casts them and says so by ``compute_dtype``)."""
        self.device = resolve_device(device)
        self.cpu_bfloat16 = cpu_bfloat16 and self.device.type == "cpu" and cpu_has_native_bfloat16()

    @abstractmethod
    def _image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Raw (unnormalised) image embeddings of a batch already on ``self.device``."""

    @abstractmethod
    def _text_features(self, texts: Sequence[str]) -> torch.Tensor:
        """Raw (unnormalised) text embeddings; tokenisation is the backend's business."""

    def _image_head(self, tower_features: torch.Tensor) -> torch.Tensor:
        """The image head alone, on pooled tower features: only encoders that keep tower and
        head apart (the LiT family) have one, so a head fit's tower features can be reused."""
        raise NotImplementedError(f"{self.identity.backend} has no separate image head")

    @property
    def on_gpu(self) -> bool:
        return self.device.type == "cuda"

    @property
    def compute_dtype(self) -> str:
        """bfloat16 autocast on GPU (fast, range-safe); on CPU float32, or bfloat16 tower
        weights where the backend allows it and the CPU computes bf16 natively."""
        return "bfloat16" if self.on_gpu or self.cpu_bfloat16 else "float32"

    def _autocast(self) -> AbstractContextManager[Any]:
        if self.on_gpu:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def _place(self, module: torch.nn.Module) -> torch.nn.Module:
        """Freeze ``module``, set eval mode and move it to the device, channels_last: bf16
        tensor cores prefer it on GPU, and oneDNN's depthwise convolutions on CPU run
        EfficientNet-Lite0 1.5x faster with it (bench/encoder_forward.py --memory-format)."""
        module.requires_grad_(False).eval()
        return module.to(self.device, memory_format=torch.channels_last)

    def _pixels_on_device(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """A batch of transformed images (N, C, H, W) -> (N, dim) float32 unit vectors on CPU."""
        with self._autocast():
            features = self._image_features(self._pixels_on_device(pixels))
        return F.normalize(features.float(), dim=-1).cpu()

    @torch.inference_mode()
    def encode_image_tower_features(self, tower_features: torch.Tensor) -> torch.Tensor:
        """Pooled image-tower features -> the unit vectors ``encode_images`` gives for the
        same images: the head only (see ``_image_head``)."""
        with self._autocast():
            features = self._image_head(tower_features.to(self.device))
        return F.normalize(features.float(), dim=-1).cpu()

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Texts -> (N, dim) float32 unit vectors on CPU; an empty list gives (0, dim)."""
        if not texts:
            return torch.zeros(0, self.identity.dim)
        with self._autocast():
            features = self._text_features(list(texts))
        return F.normalize(features.float(), dim=-1).cpu()
