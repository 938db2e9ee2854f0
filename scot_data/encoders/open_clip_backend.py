"""The ``open_clip`` backend: any open_clip architecture, with a pretrained tag, a local
checkpoint file, or (``pretrained=None``) a seeded random init for tests and speed checks.

Weights are loaded with ``weights_only=True`` (no pickled code runs). A pretrained *tag*
is fetched from the model hub by open_clip on a connected machine; offline, pass a file.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path

import open_clip
import torch
from open_clip.model import get_model_preprocess_cfg
from open_clip.transform import PreprocessCfg, image_transform_v2
from torchvision.transforms import Compose

from scot_data.encoders.base import Encoder, EncoderIdentity, rgb_on_white, state_dict_sha256
from scot_data.errors import ScotInputError


def eval_transform(model: torch.nn.Module) -> Compose:
    """open_clip's evaluation transform for ``model``, with alpha composited onto white first."""
    cfg = PreprocessCfg(**get_model_preprocess_cfg(model))
    base = image_transform_v2(cfg, is_train=False)
    return Compose([rgb_on_white, *base.transforms])


def describe_preprocessing(model: torch.nn.Module, text: str) -> str:
    """One line naming every choice that changes pixels or tokens."""
    image_cfg = {
        k: list(v) if isinstance(v, tuple) else v for k, v in get_model_preprocess_cfg(model).items()
    }
    return f"image: alpha on white, {json.dumps(image_cfg, sort_keys=True)}; text: {text}"


def output_dim(model: torch.nn.Module, tokenizer: Callable[[list[str]], torch.Tensor]) -> int:
    """The embedding size, read off one tiny text forward (configs name it inconsistently)."""
    with torch.inference_mode():
        return int(model.encode_text(tokenizer(["a"])).shape[-1])


def _weights_description(pretrained: str | None, seed: int) -> str:
    if pretrained is None:
        return f"random init (seed {seed})"
    if Path(pretrained).is_file():
        return f"checkpoint {Path(pretrained).name}"
    return f"open_clip pretrained tag {pretrained!r}"


def check_names(model_name: str, pretrained: str | None) -> None:
    """An unknown architecture, or weights that are neither a file nor one of its pretrained
    tags, named in one line before open_clip is asked (its own error lists every model)."""
    if model_name.startswith(("hf-hub:", "local-dir:")):
        return
    if model_name not in open_clip.list_models():
        raise ScotInputError(f"open_clip model {model_name!r}: unknown (see open_clip.list_models())")
    if pretrained is None or Path(pretrained).is_file():
        return
    tags = open_clip.list_pretrained_tags_by_model(model_name)
    if pretrained not in tags:
        raise ScotInputError(f"open_clip:{model_name}@{pretrained}: neither a checkpoint file nor a "
                             f"pretrained tag of {model_name} (tags: {', '.join(tags) or 'none'})")


class OpenClipEncoder(Encoder):
    """An open_clip model, frozen, in eval mode."""

    def __init__(
        self,
        model_name: str,
        pretrained: str | None = None,
        device: str | torch.device = "auto",
        seed: int = 0,
    ) -> None:
        super().__init__(device)
        check_names(model_name, pretrained)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # a random init is reproducible, so its identity is stable
            try:
                model = open_clip.create_model(model_name, pretrained=pretrained, weights_only=True)
            except (RuntimeError, ValueError, KeyError, EOFError, pickle.UnpicklingError) as exc:
                if pretrained is None or not Path(pretrained).is_file():
                    raise
                reason = " ".join(str(exc).split())[:300]
                raise ScotInputError(f"{pretrained}: not a {model_name} checkpoint ({reason})") from None
        self._tokenizer = open_clip.get_tokenizer(model_name)
        self.image_transform = eval_transform(model)
        context = getattr(self._tokenizer, "context_length", None)
        self.identity = EncoderIdentity(
            backend="open_clip",
            model_name=model_name,
            weights_sha256=state_dict_sha256(model),
            weights=_weights_description(pretrained, seed),
            trained=pretrained is not None,
            preprocessing=describe_preprocessing(
                model, f"{type(self._tokenizer).__name__}, {context} tokens"
            ),
            dim=output_dim(model, self._tokenizer),
            dtype=self.compute_dtype,
        )
        self.model = self._place(model)

    def _image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels)

    def _text_features(self, texts: Sequence[str]) -> torch.Tensor:
        tokens = self._tokenizer(list(texts)).to(self.device)
        return self.model.encode_text(tokens)
