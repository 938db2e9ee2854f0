"""The paper-scale GPU figures in one run (``bench/gpu_check.sh`` prepares and starts it):

1. open_clip ViT-L-14 (random init: the cost, not the weights; bf16 autocast and
   channels_last, as every encoder runs on CUDA) on batches already transformed: images/s
   and texts/s of the forward alone, the ceiling;
2. the same encoder through the embed stage (``embed_stage``: DataLoader decode workers,
   parts, WebDataset shards, manifest) on a COCO-shaped collection of 640x480 JPEGs (a few
   hundred distinct ones behind hard links, so decoding costs what COCO's does without
   minutes of drawing), captions as the texts: images/s and texts/s, and each over (1);
3. one epoch of the Combiner on a synthetic 290K x 768 cache at coco-290k's batch (4096), the
   trainer's own data path (goal: under 2 s), and the time to load the training view.

Writes one JSON (``--out``). ``--tiny`` swaps ViT-L-14 for the rehearsal's tiny architecture so
the whole check runs on a CPU at small sizes (tests/test_gpu_check.py).

    python -m bench.gpu_check --out gpu_check.json                  # the H200 run
    python -m bench.gpu_check --tiny --device cpu --images 64 --texts 64 --triplets 2048 --dim 64 --out x.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import torch
from PIL import Image

from bench.synthetic_coco import tiny_encoder, write_coco
from scot_data import ids, stages
from scot_data.captions.records import CaptionRow, rows_to_table
from scot_data.embed.config import EmbedConfig
from scot_data.embed.stage import embed_stage
from scot_data.encoders import Encoder, create_encoder
from scot_data.manifest import write_manifest
from scot_data.train.stage import (
    TrainConfig,
    TrainModule,
    device_splits,
    epoch_order,
    optimizer_step,
    split_rows,
)
from scot_data.train.synthetic import write_synthetic_cache
from scot_data.train.view import load_training_view

CAPTION = "a red double decker bus parked next to a tall brick building"
COMBINER_GOAL_S = 2.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn: Callable[[], Any], repeats: int, device: torch.device) -> float:
    """Median wall time of ``fn`` after one warm-up call (allocation, kernel choice)."""
    fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        started = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def forward_alone(encoder: Encoder, batch: int, repeats: int) -> dict[str, float]:
    """The encoder on random pixels already on the device, and on a batch of captions."""
    shape = encoder.image_transform(Image.new("RGB", (640, 480))).shape
    pixels = torch.randn(batch, *shape, device=encoder.device)
    texts = [f"{CAPTION} {i}" for i in range(batch)]
    image_s = median_seconds(lambda: encoder.encode_images(pixels), repeats, encoder.device)
    text_s = median_seconds(lambda: encoder.encode_texts(texts), repeats, encoder.device)
    return {"batch": batch, "images_per_s": round(batch / image_s, 1), "texts_per_s": round(batch / text_s, 1)}


def caption_table(root: Path, images: int, texts: int) -> Path:
    """A finished caption-stage folder over COCO-shaped images, written in the stage's layout
    directly: the stage itself renders SVGs through cairo, which the GPU machine lacks."""
    annotations, folder = write_coco(root / "coco", images, px=(640, 480), distinct=min(images, 256),
                                     captions_per_image=max(1, -(-texts // images)))  # fmt: skip
    data = json.loads(annotations.read_text())
    names = {image["id"]: image["file_name"] for image in data["images"]}
    rows = [CaptionRow(ids.caption_id("coco", names[a["image_id"]], a["caption"]), ids.image_id("coco", names[a["image_id"]]),
                       str(folder / names[a["image_id"]]), a["caption"], "coco") for a in data["annotations"]]  # fmt: skip
    out = root / "captions"
    out.mkdir()
    pq.write_table(rows_to_table(rows), out / "captions.parquet")
    write_manifest(out, stages.CAPTIONS, {"format": "gpu-check"}, [], {"captions.parquet": len(rows)})
    return out


def through_stage(encoder: Encoder, spec: str, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The embed stage over the collection: one image-tower pass per image, its captions as texts."""
    started = time.perf_counter()
    captions = caption_table(root, args.images, args.texts)
    prepared = time.perf_counter() - started
    cfg = EmbedConfig(encoder=spec, device=args.device, image_batch_size=args.batch, text_batch_size=args.batch,
                      num_workers=args.workers)  # fmt: skip
    summary = embed_stage(cfg, captions, None, root / "embed", show_progress=False, encoder=encoder)
    return {"images": summary.images_embedded, "texts": summary.texts_embedded, "image_batch_size": args.batch,
            "num_workers": args.workers, "images_per_s": summary.images_per_second,
            "texts_per_s": summary.texts_per_second, "image_seconds": summary.image_seconds,
            "text_seconds": summary.text_seconds, "seconds": summary.seconds,
            "input_seconds": round(prepared, 1)}  # fmt: skip


def combiner_epoch(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One epoch of the trainer's loop (gather by index, AdamW step) over a cached training set."""
    device = torch.device(args.device)
    cfg = TrainConfig(batch_size=args.train_batch, val_fraction=0.0, device=str(device))
    embeddings, triplets = write_synthetic_cache(root / "cache", args.triplets // 4, 4, args.dim)
    started = time.perf_counter()
    view = load_training_view(embeddings, triplets)
    train_rows, _ = split_rows(view, cfg)
    (train,) = device_splits(view, (train_rows,), cfg.target, device)
    _sync(device)
    loaded = time.perf_counter() - started
    module = TrainModule(args.dim, cfg).to(device)
    optimizer = torch.optim.AdamW(module.parameters(), lr=cfg.lr)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.amp and device.type == "cuda")
    b, steps = args.train_batch, len(train) // args.train_batch
    order = epoch_order(cfg.seed, 0, len(train)).to(device)

    def epoch(count: int) -> None:
        for i in range(count):
            optimizer_step(module, optimizer, train.batch(order[i * b : (i + 1) * b]), cfg.lr, cfg.grad_clip, autocast)

    epoch(min(3, steps))  # warm-up: allocator, kernels
    _sync(device)
    started = time.perf_counter()
    epoch(steps)
    _sync(device)
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {"triplets": len(train), "dim": args.dim, "batch_size": b, "steps": steps,
            "parameters_m": round(sum(p.numel() for p in module.parameters()) / 1e6, 1),
            "epoch_seconds": round(seconds, 3), "samples_per_s": round(steps * b / seconds, 1),
            "goal_seconds": COMBINER_GOAL_S, "meets_goal": seconds < COMBINER_GOAL_S,
            "view_load_seconds": round(loaded, 2), "peak_cuda_gib": round(peak, 2) if peak is not None else None}  # fmt: skip


def imported_distributions() -> list[str]:
    """Every installed distribution this run imported from: what the GPU machine must have
    (its image's packages, or the wheels gpu_check.sh installs)."""
    from importlib.metadata import packages_distributions

    by_module = packages_distributions()
    return sorted({dist for name in list(sys.modules) for dist in by_module.get(name.split(".")[0], [])})


def environment(device: torch.device) -> dict[str, Any]:
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {"device": str(device), "gpu": gpu, "torch": torch.__version__, "python": platform.python_version(),
            "cpu_cores": os.cpu_count(), "compute_dtype": "bfloat16" if device.type == "cuda" else "float32",
            "channels_last": device.type == "cuda"}  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the JSON to write")
    parser.add_argument("--model", default="ViT-L-14", help="an open_clip architecture (random init)")
    parser.add_argument("--tiny", action="store_true", help="the rehearsal's tiny architecture instead (CPU tests)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=512, help="encoder batch (forward and stage)")
    parser.add_argument("--repeats", type=int, default=5, help="timed forward batches")
    parser.add_argument("--images", type=int, default=20_000, help="images through the embed stage")
    parser.add_argument("--texts", type=int, default=100_000, help="captions through the embed stage (about)")
    parser.add_argument("--workers", type=int, default=min(12, os.cpu_count() or 1), help="decode workers")
    parser.add_argument("--triplets", type=int, default=290_000, help="the Combiner epoch's cached triplets")
    parser.add_argument("--dim", type=int, default=768, help="the Combiner's width (ViT-L-14's is 768)")
    parser.add_argument("--train-batch", type=int, default=4096, help="coco-290k's train batch")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    started = time.perf_counter()
    device = torch.device(args.device)
    report: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, **environment(device)}
    with tempfile.TemporaryDirectory(prefix="scot-gpu-check-") as tmp:
        root = Path(tmp)
        model = tiny_encoder(args.dim, root / "open_clip") if args.tiny else args.model
        spec = f"open_clip:{model}"
        built = time.perf_counter()
        encoder = create_encoder(spec, device=args.device)
        report["encoder"] = {"spec": spec, "dim": encoder.identity.dim, "build_seconds": round(time.perf_counter() - built, 1)}
        report["forward"] = forward_alone(encoder, args.batch, args.repeats)
        report["stage"] = through_stage(encoder, spec, root, args)
        report["ratios"] = {f"{kind}_stage_over_forward": round(report["stage"][f"{kind}_per_s"]
                                                                 / report["forward"][f"{kind}_per_s"], 3)
                            for kind in ("images", "texts")}  # fmt: skip
        del encoder
        if device.type == "cuda":
            torch.cuda.empty_cache()
        report["combiner"] = combiner_epoch(root, args)
    report["seconds_total"] = round(time.perf_counter() - started, 1)
    report["imported_distributions"] = imported_distributions()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
