"""Combiner training throughput: the trainer's data path against random tensors, and an epoch.

All in one run, so the ratio holds on a busy machine:
* samples/s of ``--steps`` optimizer steps fed by the trainer's own path (a seeded epoch
  permutation, index gathers from the in-memory training view of a synthetic cache written
  in the real layouts) beside the same steps fed by random tensors of the same shapes
  already on the device. Ratio near 1.0: the data path costs almost nothing.
* an epoch of ``--triplets`` cached triplets at ``--dim``: measured when ``--full-epoch``,
  otherwise extrapolated from the steps above; peak memory (RSS, and CUDA when used).

Run: .venv/bin/python bench/bench_train.py [--triplets 290000] [--dim 768] [--batch-size 512]
     [--steps 5] [--device auto] [--full-epoch]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import torch

from scot_data.train.stage import (
    TrainConfig,
    TrainModule,
    device_splits,
    epoch_order,
    optimizer_step,
    resolve_device,
    split_rows,
)
from scot_data.train.synthetic import write_synthetic_cache
from scot_data.train.view import load_training_view


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_steps(module, optimizer, batches, cfg: TrainConfig, device: torch.device) -> float:
    """Seconds for the optimizer steps over ``batches`` (an iterator of batch tuples)."""
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.amp and device.type == "cuda")
    _sync(device)
    started = time.perf_counter()
    for batch in batches:
        optimizer_step(module, optimizer, batch, cfg.lr, cfg.grad_clip, autocast)
    _sync(device)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triplets", type=int, default=290_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--full-epoch", action="store_true")
    args = parser.parse_args()
    device = resolve_device(args.device)
    cfg = TrainConfig(batch_size=args.batch_size, val_fraction=0.0, device=str(device))
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        embeddings, triplets = write_synthetic_cache(Path(tmp), args.triplets // 4, 4, args.dim)
        written = time.perf_counter() - started
        started = time.perf_counter()
        view = load_training_view(embeddings, triplets)
        train_rows, _ = split_rows(view, cfg)
        (train,) = device_splits(view, (train_rows,), cfg.target, device)
        loaded = time.perf_counter() - started
    module = TrainModule(args.dim, cfg).to(device)
    optimizer = torch.optim.AdamW(module.parameters(), lr=cfg.lr)
    order = epoch_order(cfg.seed, 0, len(train)).to(device)
    b = args.batch_size
    steps = len(train) // b if args.full_epoch else args.steps

    def real(count: int):
        return (train.batch(order[i * b : (i + 1) * b]) for i in range(count))

    unit = torch.nn.functional.normalize
    random = tuple(unit(torch.randn(b, args.dim, device=device), dim=-1) for _ in range(4))  # V, T_m, T_u, T
    timed_steps(module, optimizer, real(2), cfg, device)  # warm-up (allocator, kernels)
    data_seconds = timed_steps(module, optimizer, real(steps), cfg, device)
    random_seconds = timed_steps(module, optimizer, (random for _ in range(steps)), cfg, device)
    parameters = sum(p.numel() for p in module.parameters())
    epoch_steps = len(train) // b
    print(f"device {device}, threads {torch.get_num_threads()}, {len(train)} triplets x {args.dim}-d, "
          f"batch {b}, Combiner parameters {parameters / 1e6:.1f}M")  # fmt: skip
    print(f"synthetic cache written {written:.1f} s, training view loaded onto the device {loaded:.1f} s")
    for name, seconds in (("trainer data path", data_seconds), ("random tensors", random_seconds)):
        print(f"{name:>17}: {steps * b / seconds:,.0f} samples/s ({seconds / steps * 1e3:.1f} ms/step)")
    print(f"ratio data/random: {random_seconds / data_seconds:.3f}")
    kind = "measured" if args.full_epoch else f"extrapolated from {steps} steps"
    print(f"epoch ({epoch_steps} steps): {data_seconds / steps * epoch_steps:.1f} s ({kind})")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    print("RESULT " + json.dumps({"compared": "trainer data path / random tensors", "ratio": round(random_seconds / data_seconds, 3),
                                  "figure": f"{steps * b / data_seconds:,.0f} samples/s, epoch of {len(train):,} "
                                            f"x {args.dim}-d {data_seconds / steps * epoch_steps:.1f} s ({kind})"}))
    if device.type == "cuda":
        print(f"peak CUDA memory {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
