"""Stand-ins shared by the paper-scale benchmarks (``bench/rehearse.py``, ``bench/gpu_check.py``):
a COCO-format collection of synthetic images and captions, and a tiny open_clip architecture.
Light on purpose (PIL, and open_clip only when the encoder is registered): the GPU check
imports it on a machine that has only the wheels ``bench/gpu_check.sh`` lists."""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path

from PIL import Image, ImageDraw

COCO_RATIO = 591_753 / 290_000  # COCO train2017 captions per caption the paper-scale spec samples
CAPTIONS_PER_IMAGE = 5
IMAGE_PX = 64

SUBJECTS = ("man", "woman", "young boy", "little girl", "dog", "cat", "horse", "giraffe", "elephant", "bus",
            "train", "truck", "motorcycle", "bicycle", "pizza", "sandwich", "laptop", "teddy bear", "surfer",
            "skateboarder", "clock", "vase", "kite", "boat", "zebra", "sheep", "bird", "cake")  # fmt: skip
ADJECTIVES = ("large", "small", "old", "shiny", "tall", "dirty", "happy", "wooden", "striped", "tiny")
COLOURS = ("red", "blue", "green", "yellow", "black", "white", "orange", "purple", "brown", "gray")
ACTIONS = ("sitting on", "standing next to", "parked near", "lying on", "riding along", "walking along",
           "flying over", "resting on", "in front of", "on top of")  # fmt: skip
PLACES = ("a wooden table", "the grass", "a busy street", "a sandy beach", "a city sidewalk", "a kitchen counter",
          "a snowy hill", "the water", "a brick wall", "a grassy field", "a parking lot")  # fmt: skip
ENDINGS = ("", " on a sunny day", " at night", " near some trees", " with people around", " in the rain")


def sizes(triplets: int) -> tuple[int, int]:
    """(images, captions) of a COCO-shaped input whose spec samples ``triplets`` captions."""
    images = math.ceil(triplets * COCO_RATIO / CAPTIONS_PER_IMAGE)
    return images, images * CAPTIONS_PER_IMAGE


def caption_text(rng: random.Random, subject: str) -> str:
    """One COCO-style sentence about ``subject``: the five of an image differ in every other word."""
    colour = f"{rng.choice(COLOURS)} " if rng.random() < 0.7 else ""
    adjective = rng.choice(ADJECTIVES)
    article = "An" if adjective[0] in "aeiou" else "A"
    return f"{article} {adjective} {colour}{subject} {rng.choice(ACTIONS)} {rng.choice(PLACES)}{rng.choice(ENDINGS)}."


def draw_image(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    """Shapes on a colour: varied enough that JPEG sizes and decode times vary like photos'."""
    def colour() -> tuple[int, int, int]:
        return rng.randrange(256), rng.randrange(256), rng.randrange(256)

    (w, h), low = size, 8
    image = Image.new("RGB", size, colour())
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(1, 4)):
        x, y = rng.randrange(w - low), rng.randrange(h - low)
        box = (x, y, x + rng.randint(low, w - x), y + rng.randint(low, h - y))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour())
    return image


def write_coco(root: Path, images: int, seed: int = 0, px: tuple[int, int] = (IMAGE_PX, IMAGE_PX),
               distinct: int | None = None, captions_per_image: int = CAPTIONS_PER_IMAGE) -> tuple[Path, Path]:  # fmt: skip
    """``annotations/captions_train2017.json`` and ``train2017/`` as COCO ships them. With
    ``distinct``, only that many images are drawn and the rest are hard links to them (large
    images decode like COCO's without minutes of drawing)."""
    rng = random.Random(seed)
    folder, annotations_dir = root / "train2017", root / "annotations"
    folder.mkdir(parents=True)
    annotations_dir.mkdir()
    records, annotations = [], []
    for image_id in range(1, images + 1):
        source = image_id if distinct is None else (image_id - 1) % distinct + 1
        name = f"{image_id:012d}.{'png' if source % 4 == 0 else 'jpg'}"
        if source == image_id:
            draw_image(rng, px).save(folder / name, format="PNG" if name.endswith("png") else "JPEG", quality=90)
        else:
            os.link(folder / records[source - 1]["file_name"], folder / name)
        records.append({"id": image_id, "file_name": name, "width": px[0], "height": px[1]})
        subject = rng.choice(SUBJECTS)
        annotations += [{"image_id": image_id, "caption": caption_text(rng, subject)} for _ in range(captions_per_image)]
    rng.shuffle(annotations)  # COCO's annotations are not grouped by image
    annotations = [{"id": i, **a} for i, a in enumerate(annotations, start=1)]
    path = annotations_dir / "captions_train2017.json"
    path.write_text(json.dumps({"info": {}, "licenses": [], "images": records, "annotations": annotations}))
    return path, folder


def tiny_encoder(dim: int, config_dir: Path) -> str:
    """Register a tiny open_clip architecture ``dim`` wide (random init) in this process: one
    layer 32 wide per tower, 32 text tokens (COCO captions are ~15), so the stage's own cost
    (decoding, tokenising, parts, shards) shows rather than a model's."""
    import open_clip

    name = f"scot-rehearse-tiny-{dim}"
    config = {"embed_dim": dim, "vision_cfg": {"image_size": IMAGE_PX, "layers": 1, "width": 32, "head_width": 32, "patch_size": 16},
              "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}  # fmt: skip
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / f"{name}.json").write_text(json.dumps(config))
    open_clip.add_model_config(config_dir / f"{name}.json")
    return name
