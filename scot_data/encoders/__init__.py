"""Frozen image-text encoders behind one factory.

``create_encoder("lit-mini@heads.safetensors")`` (or ``open_clip:...``, ``hf:...``) returns
an :class:`Encoder`: an :class:`EncoderIdentity` for manifests, a picklable
``image_transform`` for DataLoader workers, and ``encode_images`` / ``encode_texts`` giving
L2-normalised float32 vectors. Heavy libraries load only when a backend is built, and the
names below on first use, so a spec reading ``EncoderSpec`` does not import torch.
"""

from __future__ import annotations

from scot_data.lazy import lazy_names

_HOMES = {
    "Encoder": "base",
    "EncoderIdentity": "base",
    "resolve_device": "base",
    "state_dict_sha256": "base",
    "EncoderSpec": "factory",
    "create_encoder": "factory",
    "list_backends": "factory",
    "register_backend": "factory",
}

__all__ = sorted(_HOMES)

__getattr__ = lazy_names(__name__, _HOMES)
