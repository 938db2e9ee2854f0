"""Forward-pass speed of one encoder, on tensors already decoded and transformed.

This is the ceiling the embed stage's image pipeline should reach: if the whole stage is
much slower than this, decoding starves the model. It also times the image forward with the
model and pixels in the plain (contiguous) layout against channels_last, which the encoders
use on every device: interleaved rounds, so a busy machine slows both alike.

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


def _layout_ratio(encoder, pixels: torch.Tensor, repeats: int) -> float:
    """Best contiguous time / best channels_last time of the image forward, interleaved."""
    best = {torch.contiguous_format: float("inf"), torch.channels_last: float("inf")}
    for _ in range(repeats):
        for layout in best:
            encoder.model.to(memory_format=layout)
            encoder.encode_images(pixels)  # warm-up: oneDNN picks kernels per layout
            best[layout] = min(best[layout], min(_seconds(lambda: encoder.encode_images(pixels), 1)))
    encoder.model.to(memory_format=torch.channels_last)
    return best[torch.contiguous_format] / best[torch.channels_last]


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
    layouts = _layout_ratio(encoder, pixels, args.repeats)
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
                "channels_last_speedup": round(layouts, 2),
            },
            indent=2,
        )
    )
    print("RESULT " + json.dumps({"compared": f"{args.encoder} forward alone (ceiling, no baseline)", "ratio": None,
                                  "figure": f"{args.batch / image_median:.1f} images/s, "
                                            f"{args.batch / text_median:.1f} texts/s"}))
    print("RESULT " + json.dumps({"compared": f"{args.encoder} image forward, contiguous / channels_last",
                                  "ratio": round(layouts, 2), "figure": "time ratio (>1: channels_last faster)"}))


if __name__ == "__main__":
    main()
