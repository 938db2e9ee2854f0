"""The LiT encoders (``lit-mini``, ``lit-base``): locked towers plus trained heads, built
from one :class:`~scot_data.encoders.lit_family.LitVariant`.

* image tower: an ImageNet EfficientNet-Lite as an open_clip timm tower
  (``tf_efficientnet_lite*``, average pool, linear projection);
* text tower: a sentence-transformers model as an open_clip HF tower (mean pooling,
  linear projection);
* heads: the two projections and the temperature, trained by :mod:`scot_data.fit_lit`
  and stored as safetensors tagged with their variant. Without a heads file they are a
  seeded random init, which the identity reports as ``trained=False``.

Both towers are loaded strictly from local files, frozen, and kept in eval mode even when
the model is switched to ``train()``: a "locked" tower would otherwise still update its
BatchNorm statistics and apply the text tower's dropout. BatchNorm is frozen with timm's
``freeze_batch_norm_2d``, which keeps the fused ReLU6 of timm's ``BatchNormAct2d``;
open_clip's ``lock_image_tower(freeze_bn_stats=True)`` swaps in a plain frozen BatchNorm
without the activation and the features explode.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from open_clip.hf_configs import arch_dict
from open_clip.model import CustomTextCLIP, set_model_preprocess_cfg
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from timm.layers import freeze_batch_norm_2d
from transformers import AutoTokenizer

from scot_data.atomic import atomic_path
from scot_data.encoders.base import Encoder, EncoderIdentity, state_dict_sha256
from scot_data.encoders.efficientnet_lite import load_into_timm
from scot_data.encoders.lit_family import LIT_MINI, LIT_VARIANTS, LitVariant
from scot_data.encoders.open_clip_backend import describe_preprocessing, eval_transform
from scot_data.errors import ScotInputError
from scot_data.hashing import sha256_file

TEXT_MAX_TOKENS = 64  # captions are short; the text towers were trained on 128+ tokens
IMAGE_HEAD_KEY = "visual.head.proj.weight"
TEXT_HEAD_KEY = "text.proj.weight"
TEMPERATURE_KEY = "logit_scale"
HEAD_KEYS = (IMAGE_HEAD_KEY, TEXT_HEAD_KEY, TEMPERATURE_KEY)
# open_clip knows the HF config names of BERT (MiniLM) but not of MPNet: same names as RoBERTa.
_MPNET_ARCH = {
    "config_names": {
        "context_length": "max_position_embeddings",
        "vocab_size": "vocab_size",
        "width": "hidden_size",
        "heads": "num_attention_heads",
        "layers": "num_hidden_layers",
        "layer_attr": "layer",
        "token_embeddings_attr": "embeddings",
    },
    "pooler": "mean_pooler",
}
arch_dict.setdefault("mpnet", _MPNET_ARCH)


def preprocess_cfg(variant: LitVariant) -> dict[str, Any]:
    """EfficientNet-Lite was trained on inputs scaled to [-1, 1], at its own resolution."""
    return {
        "size": (variant.image_size, variant.image_size),
        "mode": "RGB",
        "mean": (0.5, 0.5, 0.5),
        "std": (0.5, 0.5, 0.5),
        "interpolation": "bicubic",
        "resize_mode": "shortest",
        "fill_color": 0,
    }


def model_config(variant: LitVariant, embed_dim: int, text_dir: Path) -> dict[str, Any]:
    """The open_clip model config: a timm image tower and an HF text tower, linear heads."""
    return {
        "embed_dim": embed_dim,
        "vision_cfg": {
            "image_size": variant.image_size,
            "timm_model_name": variant.image_model,
            "timm_model_pretrained": False,  # weights come from the local checkpoint, strictly
            "timm_pool": "avg",
            "timm_proj": "linear",
        },
        "text_cfg": {
            "hf_model_name": str(text_dir),
            "hf_tokenizer_name": str(text_dir),
            "hf_model_pretrained": False,  # built from config, then loaded strictly below
            "hf_pooler_type": variant.pooling,
            "hf_proj_type": "linear",
            "context_length": TEXT_MAX_TOKENS,
        },
    }


class LitCLIP(CustomTextCLIP):
    """open_clip's custom-text CLIP whose towers stay in eval mode whatever ``train()`` says,
    and which knows its variant (its heads file is tagged with it)."""

    def __init__(self, variant: LitVariant, **config: Any) -> None:
        super().__init__(**config)
        self.variant = variant
        self.towers_digest = ""  # set by build_model once the towers hold their weights

    def train(self, mode: bool = True) -> LitCLIP:
        super().train(mode)
        self.visual.trunk.eval()
        self.text.transformer.eval()
        return self


# Saved by older transformers but not weights: the pooler (mean pooling replaces it) and
# the position-id buffer (an arange that transformers now rebuilds instead of storing).
_TEXT_UNUSED = ("pooler.", "embeddings.position_ids")


def _load_text_tower(model: LitCLIP, text_dir: Path) -> None:
    """Load the text tower's weights strictly, after dropping the tensors listed as unused."""
    state_dict = load_file(text_dir / "model.safetensors")
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith(_TEXT_UNUSED)}
    model.text.transformer.load_state_dict(state_dict, strict=True)


def _lock_towers(model: LitCLIP) -> None:
    model.visual.trunk = freeze_batch_norm_2d(model.visual.trunk)
    model.visual.trunk.requires_grad_(False)
    model.text.transformer.requires_grad_(False)


def build_model(
    variant: LitVariant = LIT_MINI, embed_dim: int | None = None, seed: int = 0, text_dir: Path | None = None
) -> LitCLIP:
    """The model with both towers loaded and locked and seeded random heads, in eval mode
    (``text_dir``: the variant's text folder when the caller has located it already)."""
    text_dir = text_dir or variant.text_dir()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LitCLIP(variant, **model_config(variant, embed_dim or variant.embed_dim, text_dir))
    load_into_timm(model.visual.trunk, variant.image_checkpoint())
    _load_text_tower(model, text_dir)
    _lock_towers(model)
    model.towers_digest = towers_sha256(model)  # of the float32 weights, whatever precision runs them later
    set_model_preprocess_cfg(model, preprocess_cfg(variant))
    return model.eval()


def towers_sha256(model: LitCLIP) -> str:
    """Digest of the two locked towers: heads are only valid on the towers they were fitted to."""
    towers = torch.nn.ModuleDict({"image": model.visual.trunk, "text": model.text.transformer})
    return state_dict_sha256(towers)


def heads_state_dict(model: LitCLIP) -> dict[str, torch.Tensor]:
    """The trainable part of the model: two projection matrices and the log temperature."""
    full = model.state_dict()
    return {k: full[k].detach().cpu().contiguous() for k in HEAD_KEYS}


def save_heads(path: str | Path, model: LitCLIP, metadata: dict[str, str] | None = None) -> Path:
    """Write the heads atomically as safetensors, tagged with their variant and the towers
    they belong to."""
    header = {
        "format": model.variant.heads_format,
        "encoder": model.variant.name,
        "towers_sha256": model.towers_digest,
        **(metadata or {}),
    }
    with atomic_path(path) as tmp:
        save_file(heads_state_dict(model), str(tmp), metadata=header)
    return Path(path)


def _heads_variant(heads_format: str | None) -> str | None:
    return next((v.name for v in LIT_VARIANTS.values() if v.heads_format == heads_format), None)


def read_heads(path: str | Path, variant: LitVariant) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a heads file, checked for the variant's format and keys."""
    if not Path(path).is_file():
        raise ScotInputError(f"{path}: no such heads file")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            keys = set(handle.keys())
    except SafetensorError:
        raise ScotInputError(f"{path}: not a safetensors file") from None
    other = _heads_variant(metadata.get("format"))
    if other is not None and other != variant.name:
        raise ScotInputError(f"{path}: heads of {other}, not of {variant.name} (use {other}@{path})")
    if metadata.get("format") != variant.heads_format or keys != set(HEAD_KEYS):
        found = f"format {metadata.get('format')!r}, keys {sorted(keys)}"
        raise ScotInputError(f"{path}: not a {variant.name} heads file ({found})")
    return load_file(str(path)), metadata


def heads_embed_dim(path: str | Path, variant: LitVariant) -> int:
    """The embedding size a heads file was trained for (rows of its image projection)."""
    tensors, _ = read_heads(path, variant)
    return int(tensors[IMAGE_HEAD_KEY].shape[0])


def load_heads(model: LitCLIP, path: str | Path, towers_digest: str) -> None:
    """Load heads into ``model`` (whose towers hash to ``towers_digest``); refuse heads
    fitted to different tower weights."""
    tensors, metadata = read_heads(path, model.variant)
    if metadata.get("towers_sha256") != towers_digest:
        raise ScotInputError(f"{path}: heads were fitted to other tower weights than the installed ones")
    model.load_state_dict(tensors, strict=False)  # only the three head tensors: checked by read_heads


class LitEncoder(Encoder):
    """A LiT encoder of one variant (a name from ``LIT_VARIANTS`` or the declaration). Also
    exposes the pooled tower features that head fitting caches."""

    def __init__(
        self,
        variant: LitVariant | str = LIT_MINI,
        heads: str | Path | None = None,
        device: str | torch.device = "auto",
        embed_dim: int | None = None,
        seed: int = 0,
        cpu_bfloat16: bool = True,
    ) -> None:
        """``cpu_bfloat16=False`` keeps float32 towers even on a CPU with native bfloat16 (the
        vectors of caches made before bfloat16 towers, or bit-for-bit across CPU kinds)."""
        super().__init__(device, cpu_bfloat16=cpu_bfloat16)
        self.variant = variant = LIT_VARIANTS[variant] if isinstance(variant, str) else variant
        if heads is not None:
            embed_dim = heads_embed_dim(heads, variant)
        embed_dim = embed_dim or variant.embed_dim
        text_dir = variant.text_dir()
        model = build_model(variant, embed_dim, seed, text_dir)
        self.towers_sha256 = model.towers_digest
        if heads is not None:
            load_heads(model, heads, self.towers_sha256)
        self.heads_path = None if heads is None else Path(heads)
        self._tokenizer = AutoTokenizer.from_pretrained(text_dir, local_files_only=True)
        self.image_transform = eval_transform(model)
        self.identity = EncoderIdentity(
            backend=variant.name,
            model_name=variant.model_name,
            weights_sha256=state_dict_sha256(model),
            weights=self._weights_description(seed),
            trained=heads is not None,
            preprocessing=describe_preprocessing(
                model,
                f"{variant.text_model} WordPiece (uncased), padding longest, "
                f"truncation {TEXT_MAX_TOKENS}, {variant.pooling.replace('_pooler', ' pooling')}",
            ),
            dim=embed_dim,
            dtype=self.compute_dtype,
        )
        self.model = self._place(model)
        self._tower_dtype = torch.bfloat16 if self.cpu_bfloat16 else torch.float32
        self.model.visual.trunk.to(self._tower_dtype)
        self.model.text.transformer.to(self._tower_dtype)

    def _weights_description(self, seed: int) -> str:
        checkpoint = self.variant.image_checkpoint().name
        towers = f"locked towers: {checkpoint} (ImageNet) + {self.variant.text_model}"
        if self.heads_path is None:
            return f"{towers}; heads: UNTRAINED (random init, seed {seed})"
        return f"{towers}; heads: {self.heads_path.name} (sha256 {sha256_file(self.heads_path)[:16]})"

    def _tokens(self, texts: Sequence[str]) -> torch.Tensor:
        batch = self._tokenizer(
            list(texts), padding="longest", truncation=True, max_length=TEXT_MAX_TOKENS, return_tensors="pt"
        )
        return batch["input_ids"].to(self.device)

    def _image_tower(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pooled trunk features in float32: the heads (trained, small) always run in float32."""
        return self.model.visual.trunk(pixels.to(self._tower_dtype)).float()

    def _text_tower(self, texts: Sequence[str]) -> torch.Tensor:
        tokens = self._tokens(texts)
        mask = (tokens != self._tokenizer.pad_token_id).long()
        hidden = self.model.text.transformer(input_ids=tokens, attention_mask=mask)
        hidden.last_hidden_state = hidden.last_hidden_state.float()  # pool in float32 whatever the tower ran in
        return self.model.text.pooler(hidden, mask)

    def _image_head(self, tower_features: torch.Tensor) -> torch.Tensor:
        return self.model.visual.head(tower_features)

    def _image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self._image_head(self._image_tower(pixels))

    def _text_features(self, texts: Sequence[str]) -> torch.Tensor:
        return self.model.text.proj(self._text_tower(texts))

    @torch.inference_mode()
    def image_tower_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pooled EfficientNet features (N, trunk features), float32 on CPU: the image head's input."""
        with self._autocast():
            return self._image_tower(self._pixels_on_device(pixels)).float().cpu()

    @torch.inference_mode()
    def text_tower_features(self, texts: Sequence[str]) -> torch.Tensor:
        """Mean-pooled text features (N, text tower width), float32 on CPU: the text head's input."""
        with self._autocast():
            return self._text_tower(texts).float().cpu()
