"""Frozen image-text encoders behind one factory.

``create_encoder("lit-mini@heads.safetensors")`` (or ``open_clip:...``, ``hf:...``) returns
an :class:`Encoder`: an :class:`EncoderIdentity` for manifests, a picklable
``image_transform`` for DataLoader workers, and ``encode_images`` / ``encode_texts`` giving
L2-normalised float32 vectors. Heavy libraries load only when a backend is built.
"""

from scot_data.encoders.base import Encoder, EncoderIdentity, resolve_device, state_dict_sha256
from scot_data.encoders.factory import EncoderSpec, create_encoder, list_backends, register_backend

__all__ = [
    "Encoder",
    "EncoderIdentity",
    "EncoderSpec",
    "create_encoder",
    "list_backends",
    "register_backend",
    "resolve_device",
    "state_dict_sha256",
]
