"""Checkpoints without pickle: safetensors for tensors, JSON for everything else.

A checkpoint is a directory ``step-NNNNNNNN/`` holding ``model.safetensors`` (Combiner and
loss parameters), ``optimizer.safetensors`` (AdamW moments, flattened to
``state.<param>.<key>``) and ``state.json`` (config, step, optimizer hyper-parameters),
written last and atomically: a directory without ``state.json`` was cut short and is
ignored. Batch order and dropout masks are derived from (seed, step), so the step is the
whole RNG state and a resumed run reproduces an uninterrupted one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from scot_data.atomic import atomic_path, atomic_write_json
from scot_data.combiner.model import Combiner, CombinerConfig
from scot_data.errors import ScotInputError

CHECKPOINTS_DIR = "checkpoints"
STATE_FILE = "state.json"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
FINAL_FILE = "combiner.safetensors"  # save_combiner's file in a training output folder
COMBINER_PREFIX = "combiner."


def _save_tensors(
    path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)


def _flatten_optimizer(
    optimizer: torch.optim.Optimizer,
) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    state = optimizer.state_dict()
    tensors = {}
    for param, values in state["state"].items():
        for key, value in values.items():
            tensors[f"state.{param}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    return tensors, state["param_groups"]


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], groups: list[dict[str, Any]]) -> dict[str, Any]:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        _, param, key = name.split(".", 2)
        state.setdefault(int(param), {})[key] = value
    return {"state": state, "param_groups": groups}


def save_checkpoint(
    out_dir: Path,
    step: int,
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write checkpoint ``step`` (state.json last) and delete all but the newest ``keep``."""
    directory = out_dir / CHECKPOINTS_DIR / f"step-{step:08d}"
    directory.mkdir(parents=True, exist_ok=True)
    _save_tensors(directory / MODEL_FILE, module.state_dict())
    tensors, groups = _flatten_optimizer(optimizer)
    _save_tensors(directory / OPTIMIZER_FILE, tensors)
    atomic_write_json(directory / STATE_FILE, {**state, "step": step, "optimizer_param_groups": groups})
    for old in sorted(finished_checkpoints(out_dir))[:-keep]:
        shutil.rmtree(old)
    return directory


def finished_checkpoints(out_dir: Path) -> list[Path]:
    return [p.parent for p in (out_dir / CHECKPOINTS_DIR).glob(f"step-*/{STATE_FILE}")]


def latest_checkpoint(out_dir: Path) -> Path | None:
    """The newest finished checkpoint under ``out_dir``, or None."""
    found = sorted(finished_checkpoints(out_dir))
    return found[-1] if found else None


def load_checkpoint(
    directory: Path, module: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device
) -> dict[str, Any]:
    """Restore ``module`` and ``optimizer`` in place; return the checkpoint's state.json."""
    state = json.loads((directory / STATE_FILE).read_text(encoding="utf-8"))
    module.load_state_dict(load_file(str(directory / MODEL_FILE), device=str(device)))
    tensors = load_file(str(directory / OPTIMIZER_FILE), device=str(device))
    optimizer.load_state_dict(_unflatten_optimizer(tensors, state["optimizer_param_groups"]))
    return state


def save_combiner(path: Path, combiner: Combiner, cfg: CombinerConfig) -> None:
    """The final Combiner alone, its dim and config in the safetensors metadata."""
    metadata = {"dim": str(combiner.dim), "combiner_config": cfg.model_dump_json()}
    _save_tensors(path, combiner.state_dict(), metadata)


def load_combiner(path: str | Path, device: str | torch.device = "cpu") -> Combiner:
    """A Combiner from ``save_combiner``'s file, a training output folder holding it, or a
    checkpoint folder (its ``model.safetensors``); a file that is none of these is named in a
    ScotInputError, since the path usually comes from the user."""
    path = Path(path)
    if path.is_dir():
        final = path / FINAL_FILE  # a training output folder; else a checkpoint folder
        path = final if final.exists() else path / MODEL_FILE
    metadata, tensors = _read_safetensors(path, device)
    try:
        return _build_combiner(metadata, tensors, device)
    except KeyError as exc:
        raise ScotInputError(f"{path}: not a Combiner checkpoint (no tensor {exc.args[0]!r})") from None
    except (RuntimeError, ValueError) as exc:  # load_state_dict's shape or key mismatch; bad config
        raise ScotInputError(f"{path}: not a Combiner checkpoint ({' '.join(str(exc).split())})") from None


def _read_safetensors(
    path: Path, device: str | torch.device
) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """The file's metadata and tensors; a missing or non-safetensors file is an input error."""
    if not path.is_file():
        raise ScotInputError(f"{path}: no such file")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        return metadata, load_file(str(path), device=str(device))
    except SafetensorError:
        raise ScotInputError(f"{path}: not a safetensors file") from None


def _build_combiner(
    metadata: dict[str, str], tensors: dict[str, torch.Tensor], device: str | torch.device
) -> Combiner:
    if any(k.startswith(COMBINER_PREFIX) for k in tensors):
        tensors = {k[len(COMBINER_PREFIX):]: v for k, v in tensors.items() if k.startswith(COMBINER_PREFIX)}
    dim = tensors["output_layer.weight"].shape[0]
    if "combiner_config" in metadata:
        cfg = CombinerConfig.model_validate_json(metadata["combiner_config"])
    else:
        cfg = _infer_config(tensors, dim)
    combiner = Combiner(dim, cfg).to(device)
    combiner.load_state_dict(tensors)
    return combiner.eval()


def _infer_config(tensors: dict[str, torch.Tensor], dim: int) -> CombinerConfig:
    """Widths of a checkpoint's weights (dropout does not matter at inference)."""
    proj = tensors["image_projection.0.weight"].shape[0]
    hidden = tensors["combiner_layer.0.weight"].shape[0]
    return CombinerConfig(projection_factor=proj // dim, hidden_factor=hidden // dim)
