"""Training the Combiner from the embedding cache, resumable to the same final weights.

``train_combiner(cfg, embeddings_dir, triplets_dir, out_dir)`` loads the whole training
view once as float32 tensors (on the GPU when there is one) and draws batches by index,
so the data path costs a gather per step. Triplets are split into train / validation by
*image id* (seeded, stable), so no reference image is seen in both. Every step's batch is
a slice of a per-epoch permutation seeded by (seed, epoch) and every step's dropout is
seeded by (seed, step): the step number is the whole RNG state, which is what lets a run
resumed from a checkpoint reach the same weights as one never interrupted.

Outputs in ``out_dir``: ``checkpoints/`` (see ``checkpoint.py``), ``metrics.jsonl`` (one
record per step and per evaluation), ``combiner.safetensors``, ``summary.json``, plots when
matplotlib is installed, and ``manifest.json`` last.
"""

from __future__ import annotations

import json
import math
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import Progress
from torch import nn

from scot_data import ids, stages
from scot_data.atomic import atomic_write_bytes, atomic_write_json
from scot_data.combiner.checkpoint import (
    CHECKPOINTS_DIR,
    FINAL_FILE,
    STATE_FILE,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    save_combiner,
)
from scot_data.combiner.model import QUERY_METHODS, Combiner
from scot_data.encoders.base import resolve_device
from scot_data.errors import ScotInputError
from scot_data.manifest import (
    InputRef,
    finished_input,
    is_complete,
    read_manifest,
    stage_fingerprint,
    write_manifest,
)
from scot_data.outdir import writes_folder
from scot_data.train.config import TrainConfig
from scot_data.train.loss import ScotLoss
from scot_data.train.view import TrainingView, load_training_view
from scot_data.triplets.records import TARGET_IMAGE_COLUMN

STAGE = stages.TRAIN
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
COMBINER_FILE = FINAL_FILE
RNG_NOTE = "batch order from (seed, epoch), dropout from (seed, step): the step is the RNG state"


@dataclass
class TrainSummary:
    """What a run did and how well it did it on the held-out triplets."""

    out_dir: str
    triplets_train: int
    triplets_val: int
    dim: int
    steps: int
    resumed_from_step: int | None
    final_loss: float | None
    val_recall_at_1: float | None
    val_baselines: dict[str, float]
    lambda_mean: float | None
    seconds: float
    samples_per_second: float
    device: str
    dropped: dict[str, int] = field(default_factory=dict)
    plots: list[str] | str = field(default_factory=list)
    skipped: bool = False


@dataclass
class Split:
    """Feature matrices on the device (float16 on the CPU, see ``_on_device``), and
    per-triplet row indices into them; batches are float32."""

    images: torch.Tensor
    texts: torch.Tensor
    v: torch.Tensor
    t: torch.Tensor
    tm: torch.Tensor
    target: torch.Tensor  # rows of ``target_bank``: T_u's text rows, or image rows for image targets
    target_bank: torch.Tensor

    def __len__(self) -> int:
        return len(self.v)

    def batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(V, T_m, target, T) of the given triplets, float32."""
        return (self.images[self.v[rows]].float(), self.texts[self.tm[rows]].float(),
                self.target_bank[self.target[rows]].float(), self.texts[self.t[rows]].float())  # fmt: skip


def _unit_fraction(seed: int, key: str) -> float:
    """A stable pseudo-random number in [0, 1) for ``key``."""
    return int(ids.sample_rank(seed, key), 16) / 16**ids.ID_HEX_CHARS


def split_rows(view: TrainingView, cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation triplet rows: whole images held out; ``max_triplets`` trims train only."""
    held = {i: _unit_fraction(cfg.seed, f"val:{i}") < cfg.val_fraction for i in set(view.image_ids.tolist())}
    is_val = np.array([held[i] for i in view.image_ids.tolist()], dtype=bool)
    train, val = np.flatnonzero(~is_val), np.flatnonzero(is_val)
    if cfg.max_triplets is not None and len(train) > cfg.max_triplets:
        ranks = [ids.sample_rank(cfg.seed, str(view.triplet_ids[r])) for r in train]
        train = np.sort(train[np.argsort(ranks, kind="stable")[: cfg.max_triplets]])
    return train, val


def nearest_images(
    images: torch.Tensor, queries: torch.Tensor, exclude: torch.Tensor, chunk: int = 4096
) -> torch.Tensor:
    """Row of the image nearest to each query, never the excluded (reference) row (scored in float32)."""
    found, bank = [], images.float()
    for start in range(0, len(queries), chunk):
        scores = queries[start : start + chunk].float() @ bank.T
        scores[torch.arange(len(scores), device=scores.device), exclude[start : start + chunk]] = -math.inf
        found.append(scores.argmax(dim=1))
    return torch.cat(found) if found else torch.zeros(0, dtype=torch.long, device=images.device)


def make_split(
    view: TrainingView, rows: np.ndarray, images: torch.Tensor, texts: torch.Tensor, target: str
) -> Split:
    device = images.device

    def index(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array[rows])).to(device)

    v, tu = index(view.v_index), index(view.tu_index)
    if target == "image":
        target_rows, bank = nearest_images(images, texts[tu], v), images
    elif target == "rendered":
        if view.target_v_index is None:
            raise ScotInputError(f"target 'rendered' needs triplets with a {TARGET_IMAGE_COLUMN} column "
                                 "(scot scenes --render-targets)")  # fmt: skip
        target_rows, bank = index(view.target_v_index), images
    else:
        target_rows, bank = tu, texts
    return Split(images, texts, v, index(view.t_index), index(view.tm_index), target_rows, bank)


def device_splits(
    view: TrainingView, rows: tuple[np.ndarray, ...], target: str, device: torch.device
) -> tuple[Split, ...]:
    """The view's vectors on ``device`` once, and one Split per row set sharing them (the
    trainer's train/val; the benchmarks' training rows)."""
    images, texts = _on_device(view.images, device), _on_device(view.texts, device)
    return tuple(make_split(view, part, images, texts, target) for part in rows)


def _on_device(matrix: np.ndarray, device: torch.device) -> torch.Tensor:
    """float32 on an accelerator. On the CPU, the view's float16 matrix itself, rows made
    float32 per batch (``Split.batch``): a float32 copy of a 290K x 768 view is 2.5 GiB
    beside the float16 one, which put issue 16's train stage at 7.7 GiB."""
    if device.type != "cpu":
        return torch.from_numpy(matrix).to(device, torch.float32)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The given NumPy array is not writable")  # an Arrow buffer, only read
        return torch.from_numpy(matrix)


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warm-up to ``lr``, then cosine to zero at ``total``."""
    warmup = int(cfg.warmup_fraction * total)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The training triplets' order in ``epoch``: a permutation seeded by (seed, epoch) only."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


class TrainModule(nn.Module):
    """The Combiner and the loss (whose temperature may be a parameter) as one module."""

    def __init__(self, dim: int, cfg: TrainConfig) -> None:
        super().__init__()
        self.combiner = Combiner(dim, cfg.combiner)
        self.loss = ScotLoss(cfg.loss)


class NonFiniteLoss(ArithmeticError):
    """A step's loss is NaN or inf; raised before the weights are touched."""

    def __init__(self, loss: float) -> None:
        super().__init__(f"loss is {loss}")
        self.loss = loss


def optimizer_step(
    module: TrainModule,
    optimizer: torch.optim.Optimizer,
    batch: tuple[torch.Tensor, ...],
    lr: float,
    grad_clip: float,
    autocast: torch.autocast,
) -> dict[str, float]:
    """One AdamW step on (V, T_m, target, T); returns the step's metrics record. A NaN/inf
    loss raises ``NonFiniteLoss`` before backward, so the weights stay as they were."""
    image, text, target, caption = batch
    for group in optimizer.param_groups:
        group["lr"] = lr
    with autocast:
        out = module.combiner(image, text)
        loss = module.loss(out.query.float(), target, caption)
    value = float(loss.detach())
    if not math.isfinite(value):
        raise NonFiniteLoss(value)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(module.parameters(), grad_clip)
    optimizer.step()
    return {"loss": value, "lr": lr, "logit_scale": float(module.loss.scale.detach()),
            "lambda_mean": float(out.lam.detach().float().mean())}  # fmt: skip


@torch.no_grad()
def evaluate(combiner: Combiner, split: Split, chunk: int = 2048) -> dict[str, Any]:
    """R@1 of each query among the split's distinct targets, for the Combiner and the baselines.

    A query counts as right when its top target is *its* target row (two triplets with the
    same modified caption share a target row, so duplicates are not counted wrong).
    """
    was_training = combiner.training
    combiner.eval()
    bank_rows = torch.unique(split.target)
    bank = split.target_bank[bank_rows].float()
    hits = {"combiner": 0, "sum": 0, "image_only": 0, "text_only": 0}
    lambdas = []
    for start in range(0, len(split), chunk):
        rows = torch.arange(start, min(start + chunk, len(split)), device=split.v.device)
        image, text, _, _ = split.batch(rows)
        out = combiner(image, text)
        lambdas.append(out.lam.float().cpu())
        queries = {"combiner": out.query.float(), "sum": nn.functional.normalize(image + text, dim=-1),
                   "image_only": image, "text_only": text}  # fmt: skip
        for name, query in queries.items():
            hits[name] += int((bank_rows[(query @ bank.T).argmax(dim=1)] == split.target[rows]).sum())
    combiner.train(was_training)
    n = max(1, len(split))
    return {"recall_at_1": {k: v / n for k, v in hits.items()}, "lambda": torch.cat(lambdas).numpy()}


def _resumable_checkpoint(out: Path, fingerprint: str) -> Path | None:
    """The newest checkpoint of a run with these inputs and config. Checkpoints of another
    run (the triplets, embeddings or options changed) are deleted, with the metrics they
    logged: like every stage, changed inputs mean the work is done again, never mixed."""
    checkpoint = latest_checkpoint(out)
    if checkpoint is None:
        return None
    state = json.loads((checkpoint / STATE_FILE).read_text(encoding="utf-8"))
    if state.get("fingerprint") == fingerprint:
        return checkpoint
    shutil.rmtree(out / CHECKPOINTS_DIR)
    (out / METRICS_FILE).unlink(missing_ok=True)
    return None


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop records past ``step`` (written after the checkpoint a resumed run starts from).

    A ``kill -9`` can cut the last line short: such a line is past the checkpoint too.
    """
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (json.JSONDecodeError, KeyError):
            continue
    atomic_write_bytes(path, "".join(line + "\n" for line in kept).encode("utf-8"))


@writes_folder(STAGE, (CHECKPOINTS_DIR,))
def train_combiner(
    cfg: TrainConfig,
    embeddings_dir: str | Path,
    triplets_dir: str | Path,
    out_dir: str | Path,
    show_progress: bool = True,
    stop_after_steps: int | None = None,
    force: bool = False,
) -> TrainSummary:
    """Train (or resume training) a Combiner; ``stop_after_steps`` checkpoints and returns early.

    A finished ``out_dir`` with the same inputs and config is returned as is.
    """
    out = Path(out_dir)
    inputs = [finished_input(embeddings_dir, stages.EMBED), finished_input(triplets_dir, stages.TRIPLETS)]
    fingerprint = stage_fingerprint(STAGE, cfg.fingerprint_config(), inputs)
    if is_complete(out, STAGE, fingerprint):
        return TrainSummary(**{**json.loads((out / SUMMARY_FILE).read_text()), "skipped": True})
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    device = resolve_device(cfg.device)
    if device.type == "cpu" and cfg.cpu_threads is not None:
        torch.set_num_threads(cfg.cpu_threads)
    torch.manual_seed(cfg.seed)
    view = load_training_view(embeddings_dir, triplets_dir)
    train_rows, val_rows = split_rows(view, cfg)
    if len(train_rows) < 2:
        raise ScotInputError(f"{triplets_dir}: {len(train_rows)} training triplets after the split; need 2+")
    train, val = device_splits(view, (train_rows, val_rows), cfg.target, device)
    dim = train.images.shape[1]

    module = TrainModule(dim, cfg).to(device)
    optimizer = torch.optim.AdamW(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    batch_size = min(cfg.batch_size, len(train))
    steps_per_epoch = len(train) // batch_size
    total = cfg.epochs * steps_per_epoch
    step, resumed = 0, None
    checkpoint = _resumable_checkpoint(out, fingerprint)
    if checkpoint is not None:
        step = resumed = load_checkpoint(checkpoint, module, optimizer, device)["step"]
    _truncate_metrics(out / METRICS_FILE, step)

    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.amp and device.type == "cuda")
    last_loss, first_step, loop_started = None, step, time.perf_counter()
    stop_at = total if stop_after_steps is None else min(total, stop_after_steps)
    module.train()
    progress = Progress(disable=not show_progress)
    with progress, open(out / METRICS_FILE, "a", encoding="utf-8") as log:
        task = progress.add_task("train combiner", total=total, completed=step)
        permutation, permutation_epoch = None, -1
        while step < stop_at:
            epoch, within = divmod(step, steps_per_epoch)
            if epoch != permutation_epoch:
                permutation, permutation_epoch = epoch_order(cfg.seed, epoch, len(train)).to(device), epoch
            torch.manual_seed(cfg.seed * 1_000_003 + step + 1)  # dropout masks of this step
            batch = train.batch(permutation[within * batch_size : (within + 1) * batch_size])
            lr = lr_at(step, total, cfg)
            try:
                record = optimizer_step(module, optimizer, batch, lr, cfg.grad_clip, autocast)
            except NonFiniteLoss as exc:
                raise _stopped(out, step + 1, exc.loss) from None
            step += 1
            last_loss = record["loss"]
            log.write(json.dumps({"step": step, "epoch": epoch, **record}) + "\n")
            if step % steps_per_epoch == 0 and len(val):
                result = evaluate(module.combiner, val)
                record = {"step": step, "epoch": epoch, "split": "val", **result["recall_at_1"]}
                log.write(json.dumps(record) + "\n")
            if step % cfg.checkpoint_every == 0 or step == stop_at:
                log.flush()
                state = {"config": cfg.fingerprint_config(), "fingerprint": fingerprint, "rng": RNG_NOTE}
                save_checkpoint(out, step, module, optimizer, state)
            progress.update(task, completed=step)
    loop_seconds = time.perf_counter() - loop_started
    final = evaluate(module.combiner, val) if len(val) else None
    summary = TrainSummary(
        out_dir=str(out),
        triplets_train=len(train),
        triplets_val=len(val),
        dim=dim,
        steps=step,
        resumed_from_step=resumed,
        final_loss=last_loss,
        val_recall_at_1=final["recall_at_1"]["combiner"] if final else None,
        val_baselines={k: v for k, v in final["recall_at_1"].items() if k != "combiner"} if final else {},
        lambda_mean=float(final["lambda"].mean()) if final else None,
        seconds=round(time.perf_counter() - started, 2),
        samples_per_second=round((step - first_step) * batch_size / loop_seconds, 1) if loop_seconds else 0.0,
        device=str(device),
        dropped=view.dropped,
    )
    if step < total:
        return summary
    encoder = (read_manifest(embeddings_dir) or {}).get("encoder")
    return _finish(out, cfg, module.combiner, summary, final, inputs, encoder)


def _stopped(out: Path, step: int, loss: float) -> ScotInputError:
    """The one-line error for a NaN/inf loss: the run ends unfinished (no summary, no
    manifest), and its newest checkpoint, written before the loss went bad, is kept."""
    checkpoint = latest_checkpoint(out)
    kept = f"the last good checkpoint is {checkpoint}" if checkpoint else "no checkpoint was written yet"
    return ScotInputError(
        f"{out}: training loss is {loss} at step {step} (check the embeddings and the learning rate); {kept}"
    )


def _finish(
    out: Path,
    cfg: TrainConfig,
    combiner: Combiner,
    summary: TrainSummary,
    final: dict[str, Any] | None,
    inputs: list[InputRef],
    encoder: dict[str, Any] | None,
) -> TrainSummary:
    """Final weights, plots, summary, then the manifest (with the encoder whose embeddings
    it was trained on: evaluation must embed queries and gallery with the same one)."""
    save_combiner(out / COMBINER_FILE, combiner, cfg.combiner)
    lambdas = final["lambda"] if final else np.zeros(0)
    summary.plots = write_plots(out, lambdas)
    atomic_write_json(out / SUMMARY_FILE, asdict(summary))
    files: dict[str, int | None] = {COMBINER_FILE: None, SUMMARY_FILE: None, METRICS_FILE: None}
    files.update({name: None for name in summary.plots if isinstance(summary.plots, list)})
    write_manifest(out, STAGE, cfg.fingerprint_config(), inputs, files, extra={"summary": asdict(summary), "encoder": encoder})
    return summary


def read_metrics(out_dir: str | Path) -> list[dict[str, Any]]:
    """Every record of a run's ``metrics.jsonl`` (steps, and evaluations with ``split``)."""
    text = (Path(out_dir) / METRICS_FILE).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def write_plots(out: Path, lambdas: np.ndarray) -> list[str] | str:
    """loss.png, val_recall.png, lambda.png; a reason string when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "skipped: matplotlib is not installed"
    records = read_metrics(out)
    steps = [r for r in records if "loss" in r]
    evals = [r for r in records if r.get("split") == "val"]
    series = {
        "loss.png": ([r["step"] for r in steps], {"train loss": [r["loss"] for r in steps]}),
        "val_recall.png": ([r["step"] for r in evals], {k: [r[k] for r in evals] for k in QUERY_METHODS}),
    }  # fmt: skip
    for name, (x, lines) in series.items():
        figure, axes = plt.subplots(figsize=(6, 4))
        for label, y in lines.items():
            axes.plot(x, y, label=label)
        axes.set_xlabel("step")
        axes.legend()
        figure.savefig(out / name, dpi=100)
        plt.close(figure)
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.hist(lambdas, bins=50, range=(0, 1))
    axes.set_xlabel("lambda (weight of T_m) on validation queries")
    figure.savefig(out / "lambda.png", dpi=100)
    plt.close(figure)
    return [*series, "lambda.png"]
