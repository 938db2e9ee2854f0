"""The ``hf`` backend: a transformers CLIP or SigLIP model from a local directory.

Everything is read with ``local_files_only=True``: the directory must hold the model, its
image processor and its tokenizer (what ``save_pretrained`` writes for each of them).
The model's own image processor does the preprocessing, so pixels match what it was
trained on; SigLIP pads text to a fixed length as it was trained, CLIP to the longest.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

from scot_data.encoders.base import Encoder, EncoderIdentity, rgb_on_white, state_dict_sha256
from scot_data.errors import ScotInputError

SIGLIP_TEXT_LENGTH = 64
# Processor fields that record bookkeeping rather than a pixel-changing choice.
_PROCESSOR_BOOKKEEPING = {"processor_class", "_processor_class", "image_processor_type"}


class HFImageTransform:
    """Runs a transformers image processor on one image; picklable with its processor."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.processor(images=rgb_on_white(image), return_tensors="pt")["pixel_values"][0]


def _features(output: Any) -> torch.Tensor:
    """transformers 5 returns a model output holding the projected ``pooler_output``; 4.x a tensor."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def _describe_processor(processor: Any) -> str:
    fields = {k: v for k, v in processor.to_dict().items() if k not in _PROCESSOR_BOOKKEEPING}
    return json.dumps(fields, sort_keys=True, default=str)


class HFEncoder(Encoder):
    """A local transformers dual encoder (anything with ``get_image_features`` / ``get_text_features``)."""

    def __init__(self, model_dir: str | Path, device: str | torch.device = "auto") -> None:
        super().__init__(device)
        directory = Path(model_dir)
        if not directory.is_dir():
            raise ScotInputError(f"hf encoder directory not found: {directory}")
        try:
            model = AutoModel.from_pretrained(directory, local_files_only=True)
            if not hasattr(model, "get_image_features"):
                raise ScotInputError(f"{directory}: {type(model).__name__} is not an image-text dual encoder")
            processor = AutoImageProcessor.from_pretrained(directory, local_files_only=True)
            self._tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        except (OSError, ValueError) as exc:  # no config.json, an unknown model type, missing files
            reason = " ".join(str(exc).split())[:300]
            raise ScotInputError(f"{directory}: not a transformers image-text model folder ({reason})") from None
        self._fixed_length = model.config.model_type.startswith("siglip")
        self._max_length = min(
            model.config.text_config.max_position_embeddings, self._tokenizer.model_max_length
        )
        self.image_transform = HFImageTransform(processor)
        padding = f"max_length {SIGLIP_TEXT_LENGTH}" if self._fixed_length else "longest"
        weights_sha256 = state_dict_sha256(model)
        self.model = self._place(model)
        self.identity = EncoderIdentity(
            backend="hf",
            model_name=f"{type(model).__name__}:{directory.name}",
            weights_sha256=weights_sha256,
            weights=f"local directory {directory.resolve()}",
            trained=True,
            preprocessing=(
                f"image: alpha on white, {type(processor).__name__} {_describe_processor(processor)}; "
                f"text: {type(self._tokenizer).__name__}, padding {padding}, truncation {self._max_length}"
            ),
            dim=self._probe_dim(),
            dtype=self.compute_dtype,
        )

    def _probe_dim(self) -> int:
        """The embedding size from one tiny forward (CLIP and SigLIP configs name it differently)."""
        with torch.inference_mode():
            return int(self._text_features(["a"]).shape[-1])

    def _tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        if self._fixed_length:
            kwargs: dict[str, Any] = {"padding": "max_length", "max_length": SIGLIP_TEXT_LENGTH}
        else:
            kwargs = {"padding": "longest", "max_length": self._max_length}
        batch = self._tokenizer(list(texts), truncation=True, return_tensors="pt", **kwargs)
        keep = ("input_ids", "attention_mask")
        return {k: v.to(self.device) for k, v in batch.items() if k in keep}

    def _image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return _features(self.model.get_image_features(pixel_values=pixels))

    def _text_features(self, texts: Sequence[str]) -> torch.Tensor:
        return _features(self.model.get_text_features(**self._tokenize(texts)))
