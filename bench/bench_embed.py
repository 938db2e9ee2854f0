"""Embedding stage throughput against the encoder alone, and shard reads against raw reads.

All in one run, so the ratios hold on a busy machine:
* images/s of the whole stage (read, decode and preprocess in DataLoader workers, forward,
  float16, Parquet parts) beside the encoder's forward alone on the same images already
  decoded into tensors (same batch size). Ratio near 1.0: decoding never starves the model.
* texts/s of the whole stage (dedup, length-sorted batches, parts) beside ``encode_texts``
  alone on the same texts in the same order.
* shard read GB/s: ``iter_wds_blocks`` (tar parse + ``np.load``) and the Parquet training
  load beside a raw ``read()`` of the same bytes, on a synthetic set of ``--rows`` unit
  vectors written by the stage's own shard writer (page cache warm for all three).

Run: .venv/bin/python bench/bench_embed.py [--encoder lit-mini] [--images 256] [--workers 2]
     [--batch-size 32] [--rows 200000] [--dim 512]
Inputs, made here in a temporary folder (nothing from a previous run is needed): the caption
stage on a seeded sample of --images drawings of the clip-art collection (rendered at 224 px,
as the demo's), and their template triplets, whose texts the text stage embeds.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image

from scot_data import ids, stages
from scot_data.captions.config import OpenclipartCaptions
from scot_data.captions.ingest import ingest_captions
from scot_data.embed import EmbedConfig, embed_stage, iter_wds_blocks
from scot_data.embed.plan import get_encoder, wanted_texts
from scot_data.embed.records import PARQUET_OPTIONS, images_schema, to_column
from scot_data.embed.shards import json_cost, plan_shards, write_shard
from scot_data.embed.view import load_embeddings
from scot_data.images import ImageItem, read_image_bytes
from scot_data.manifest import write_manifest
from scot_data.triplets.config import TripletsConfig
from scot_data.triplets.generate import generate_triplets


def make_inputs(tmp: Path, n: int, workers: int) -> tuple[Path, Path]:
    """Finished caption and triplet stages for a seeded sample of n clip-art drawings."""
    captions, triplets = tmp / "captions", tmp / "triplets"
    ingest_captions(OpenclipartCaptions(limit=n, seed=0, workers=workers), captions, show_progress=False)
    generate_triplets(TripletsConfig(backend="template"), captions, triplets, show_progress=False)
    return captions, triplets


def forward_alone(encoder, captions: Path, batch: int) -> tuple[float, int]:
    """images/s of encode_images on pre-decoded, pre-transformed tensors."""
    uris = pq.read_table(captions / "captions.parquet", columns=["image_id", "image_uri"]).to_pylist()
    seen, tensors = set(), []
    for row in uris:
        if row["image_id"] in seen:
            continue
        seen.add(row["image_id"])
        data = read_image_bytes(ImageItem(row["image_id"], row["image_uri"], 0))
        import io

        tensors.append(encoder.image_transform(Image.open(io.BytesIO(data))))
    pixels = torch.stack(tensors)
    encoder.encode_images(pixels[:batch])  # warm-up
    started = time.perf_counter()
    for start in range(0, len(pixels), batch):
        encoder.encode_images(pixels[start : start + batch]).numpy().astype(np.float16)
    return len(pixels) / (time.perf_counter() - started), len(pixels)


def texts_alone(encoder, texts: list[str], batch: int) -> float:
    order = sorted(texts, key=len, reverse=True)
    started = time.perf_counter()
    for start in range(0, len(order), batch):
        encoder.encode_texts(order[start : start + batch]).numpy().astype(np.float16)
    return len(texts) / (time.perf_counter() - started)


def shard_read(tmp: Path, rows: int, dim: int) -> dict[str, float]:
    """GB/s: stream reader, Parquet load and raw read over the same synthetic set."""
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((rows, dim), dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    matrix = matrix.astype(np.float16)
    row_ids = [ids.stable_id("bench", str(i)) for i in range(rows)]
    plans = plan_shards("images", row_ids, [json_cost(i) for i in row_ids], dim, "bench", 1024, 65536, 512 << 20)
    out = tmp / "read"
    for plan in plans:
        write_shard(out / plan.name, plan, row_ids, lambda a, b: matrix[a:b], None, dim)
    shards = sorted((out / "wds").glob("*.tar"))
    part = out / "images" / "part-0.parquet"
    part.parent.mkdir(parents=True)
    table = pa.table([pa.array(row_ids), to_column(matrix)], schema=images_schema(dim, "bench"))
    pq.write_table(table, part, **PARQUET_OPTIONS)
    write_manifest(out, stages.EMBED, {}, [], {}, extra={"parts": {"images": [part.name], "texts": []},
                                                           "embedding": {"dim": dim}})  # fmt: skip
    tar_bytes = sum(p.stat().st_size for p in shards)
    results = {}
    for _ in range(2):  # first pass warms the page cache; keep the second
        started = time.perf_counter()
        for path in shards:
            with open(path, "rb") as handle:
                while handle.read(1 << 22):
                    pass
        results["raw read of the tar bytes"] = tar_bytes / (time.perf_counter() - started) / 1e9
        started = time.perf_counter()
        got = sum(block.embeddings.shape[0] for block in iter_wds_blocks([str(p) for p in shards]))
        results["iter_wds_blocks (tar + np.load)"] = tar_bytes / (time.perf_counter() - started) / 1e9
        assert got == rows
        started = time.perf_counter()
        loaded = load_embeddings(out, "images")
        results["Parquet load_embeddings"] = part.stat().st_size / (time.perf_counter() - started) / 1e9
        assert loaded.matrix.shape == (rows, dim)
        started = time.perf_counter()
        with open(part, "rb") as handle:
            while handle.read(1 << 22):
                pass
        results["raw read of the Parquet bytes"] = part.stat().st_size / (time.perf_counter() - started) / 1e9
    results["_bytes"] = tar_bytes
    results["_shards"] = len(shards)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default="lit-mini")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--text-batch-size", type=int, default=256)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--skip-encoder", action="store_true", help="only the shard read figures")
    args = parser.parse_args()

    print(f"torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}, encoder {args.encoder}")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        lines, results = [], []
        if not args.skip_encoder:
            captions, triplets = make_inputs(tmp, args.images, args.workers)
            cfg = EmbedConfig(encoder=args.encoder, device=args.device, image_batch_size=args.batch_size,
                              text_batch_size=args.text_batch_size, num_workers=args.workers)  # fmt: skip
            encoder = get_encoder(cfg)
            summary = embed_stage(cfg, captions, triplets, tmp / "emb", show_progress=False)
            forward, n = forward_alone(encoder, captions, args.batch_size)
            texts = [t for _, t in wanted_texts(captions, triplets, True)]
            alone = texts_alone(encoder, texts, args.text_batch_size)
            lines += [
                ("images/s, whole stage", f"{summary.images_per_second:.1f}", f"{summary.images_embedded} images"),
                ("images/s, forward alone (pre-decoded)", f"{forward:.1f}", f"{n} images, batch {args.batch_size}"),
                ("  ratio stage / forward", f"{summary.images_per_second / forward:.2f}", f"{args.workers} workers"),
                ("texts/s, whole stage", f"{summary.texts_per_second:.1f}", f"{summary.texts_embedded} texts"),
                ("texts/s, encode_texts alone", f"{alone:.1f}", f"batch {args.text_batch_size}"),
                ("  ratio stage / alone", f"{summary.texts_per_second / alone:.2f}", ""),
            ]
            results += [
                {"compared": "image stage / forward alone", "ratio": round(summary.images_per_second / forward, 3),
                 "figure": f"{summary.images_per_second:.1f} images/s ({args.workers} workers)"},
                {"compared": "text stage / encode_texts alone", "ratio": round(summary.texts_per_second / alone, 3),
                 "figure": f"{summary.texts_per_second:.1f} texts/s"},
            ]
        reads = shard_read(tmp, args.rows, args.dim)
        detail = f"{args.rows} x {args.dim} fp16, {reads['_shards']} shards, {reads['_bytes'] / 1e6:.0f} MB"
        for key in ("raw read of the tar bytes", "iter_wds_blocks (tar + np.load)", "raw read of the Parquet bytes",
                    "Parquet load_embeddings"):  # fmt: skip
            lines.append((f"GB/s, {key}", f"{reads[key]:.2f}", detail))
        lines.append(("  ratio wds / raw", f"{reads['iter_wds_blocks (tar + np.load)'] / reads['raw read of the tar bytes']:.2f}", ""))
        wds = reads["iter_wds_blocks (tar + np.load)"]
        results.append({"compared": "WebDataset blocks read / raw read", "ratio": round(wds / reads["raw read of the tar bytes"], 3),
                        "figure": f"{wds:.2f} GB/s ({detail})"})
        width = max(len(a) for a, _, _ in lines)
        print(f"{'measure':<{width}}  {'value':>9}  detail")
        for a, b, c in lines:
            print(f"{a:<{width}}  {b:>9}  {c}")
        for result in results:
            print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
