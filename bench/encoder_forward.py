"""Forward-pass speed of one encoder, on tensors already decoded and transformed.

This is the ceiling the embed stage's image pipeline should reach: if the whole stage is
much slower than this, decoding starves the model.

    .venv/bin/python bench/encoder_forward.py --encoder lit-mini --batch 32 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from PIL import Image

from scot_data.encoders import create_encoder

CAPTION = "a red bicycle leaning against a blue door"


def _seconds(fn, repeats: int) -> list[float]:
    fn()  # warm-up: first calls allocate and pick kernels
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--encoder", default="lit-mini", help="encoder spec, e.g. open_clip:ViT-L-14")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    encoder = create_encoder(args.encoder, device=args.device)
    size = encoder.image_transform(Image.new("RGB", (256, 256))).shape
    pixels = torch.randn(args.batch, *size)
    texts = [f"{CAPTION} {i}" for i in range(args.batch)]
    image_times = _seconds(lambda: encoder.encode_images(pixels), args.repeats)
    text_times = _seconds(lambda: encoder.encode_texts(texts), args.repeats)
    image_median, text_median = statistics.median(image_times), statistics.median(text_times)
    print(
        json.dumps(
            {
                "encoder": str(args.encoder),
                "device": str(encoder.device),
                "torch_threads": torch.get_num_threads(),
                "batch": args.batch,
                "image_forward_s_median": round(image_median, 4),
                "images_per_s": round(args.batch / image_median, 1),
                "text_forward_s_median": round(text_median, 4),
                "texts_per_s": round(args.batch / text_median, 1),
            },
            indent=2,
        )
    )
    print("RESULT " + json.dumps({"compared": f"{args.encoder} forward alone (ceiling, no baseline)", "ratio": None,
                                  "figure": f"{args.batch / image_median:.1f} images/s, "
                                            f"{args.batch / text_median:.1f} texts/s"}))


if __name__ == "__main__":
    main()
