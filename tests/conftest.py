"""Fixtures that build small collections in the official layouts, on disk, per test."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

REAL_CLIPART = Path("/usr/share/openclipart/svg")


def png_bytes(seed: int, size: int = 32, fmt: str = "PNG") -> bytes:
    """A small image whose pixels depend on ``seed``."""
    image = Image.new("RGB", (size, size), ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256))
    image.putpixel((seed % size, 0), (255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


CORRUPT_IMAGE = b"\x89PNG\r\n\x1a\n this is not an image"


@pytest.fixture
def coco_dir(tmp_path: Path) -> Path:
    """A COCO captions file with good, duplicate and malformed records, and its images."""
    images = tmp_path / "train2017"
    images.mkdir()
    for i in range(1, 5):
        (images / f"{i:012d}.jpg").write_bytes(png_bytes(i, fmt="JPEG"))
    (images / f"{5:012d}.jpg").write_bytes(CORRUPT_IMAGE)
    data = {
        "info": {},
        "images": [{"id": i, "file_name": f"{i:012d}.jpg", "width": 32, "height": 32} for i in range(1, 7)]
        + [{"id": 99}],
        "annotations": [
            {"id": 10, "image_id": 1, "caption": "A dog on the grass."},
            {"id": 11, "image_id": 1, "caption": "A brown dog  lying on grass."},
            {"id": 12, "image_id": 2, "caption": "Two cats on a sofa."},
            {"id": 13, "image_id": 3, "caption": "A red bus in the street."},
            {"id": 14, "image_id": 4, "caption": "A bowl of fruit."},
            {"id": 15, "image_id": 1, "caption": "A dog on the grass."},
            {"id": 16, "image_id": 5, "caption": "An image that does not decode."},
            {"id": 17, "image_id": 6, "caption": "An image that is missing."},
            {"id": 18, "image_id": 42, "caption": "No such image."},
            {"id": 19, "image_id": 2, "caption": "   "},
            {"id": 20, "caption": "No image id."},
            {"id": 21, "image_id": 3, "caption": 7},
        ],
    }
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "captions_train2017.json").write_text(json.dumps(data))
    return tmp_path


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def wds_dir(tmp_path: Path) -> Path:
    """Two img2dataset-style shards: jpg/png/webp with txt or json, and broken samples."""
    with tarfile.open(tmp_path / "shard-00000.tar", "w") as tar:
        _add(tar, "000000000.jpg", png_bytes(1, fmt="JPEG"))
        _add(tar, "000000000.txt", b"a yellow taxi")
        _add(tar, "000000000.json", json.dumps({"caption": "ignored when txt exists"}).encode())
        _add(tar, "000000001.png", png_bytes(2))
        _add(tar, "000000001.json", json.dumps({"caption": "a green tree", "url": "x"}).encode())
        _add(tar, "000000002.webp", png_bytes(3, fmt="WEBP"))
        _add(tar, "000000002.json", json.dumps({"caption": "a blue boat"}).encode())
        _add(tar, "000000003.jpg", png_bytes(4, fmt="JPEG"))
        _add(tar, "000000003.json", b"{not json")
    with tarfile.open(tmp_path / "shard-00001.tar", "w") as tar:
        _add(tar, "000001000.jpg", CORRUPT_IMAGE)
        _add(tar, "000001000.txt", b"a corrupt picture")
        _add(tar, "000001001.txt", b"a caption without an image")
        _add(tar, "000001002.jpg", png_bytes(5, fmt="JPEG"))
        _add(tar, "000001002.json", json.dumps({"url": "no caption"}).encode())
        _add(tar, "000001003.jpg", png_bytes(6, fmt="JPEG"))
        _add(tar, "000001003.txt", b"a white horse")
    return tmp_path


SVG_TEMPLATE = """<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" xmlns:dc="http://purl.org/dc/elements/1.1/"
     xmlns:cc="http://web.resource.org/cc/" xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
     width="{w}" height="{h}" viewBox="0 0 {w} {h}">
  <metadata><rdf:RDF><cc:Work rdf:about="">
    <dc:title>{title}</dc:title>
    <dc:description>{description}</dc:description>
    <dc:subject><rdf:Bag>{keywords}</rdf:Bag></dc:subject>
    <dc:creator><cc:Agent><dc:title>{creator}</dc:title></cc:Agent></dc:creator>
  </cc:Work></rdf:RDF></metadata>
  {body}
</svg>
"""
CIRCLE = '<circle cx="50" cy="50" r="40" fill="{color}"/>'


def svg(title: str, keywords=(), description: str = "", creator: str = "Jane Roe", body: str | None = None,
        color: str = "red", w: int = 100, h: int = 100) -> str:
    """An openclipart-style SVG with RDF metadata."""
    items = "".join(f"<rdf:li>{k}</rdf:li>" for k in keywords)
    return SVG_TEMPLATE.format(
        title=title, description=description, keywords=items, creator=creator, w=w, h=h,
        body=CIRCLE.format(color=color) if body is None else body,
    )


@pytest.fixture
def clipart_dir(tmp_path: Path) -> Path:
    """A small tree in the layout of Debian's openclipart-svg, with the real data's quirks."""
    root = tmp_path / "svg"
    (root / "animals").mkdir(parents=True)
    (root / "shapes" / "stars").mkdir(parents=True)
    (root / "food").mkdir()
    (root / "animals" / "tiger_jane_roe_01.svg").write_text(
        svg("Tiger", ["mammal", "hash", "cat", "feline", "animal"], "A striped tiger walking.")
    )
    (root / "food" / "apple_01.svg").write_text(svg("Red apple", ["food", "fruit"], color="green", w=50, h=120))
    for i in range(5):  # a collection title on many drawings: the file name names each one
        (root / "shapes" / "stars" / f"star_{i}pt{i}step.svg").write_text(
            svg("gramastar", ["stars", "shapes"], color="blue")
        )
    (root / "animals" / "jane_roe_jane_ro_01.svg").write_text(svg("Jane Roe", ["animal"]))
    (root / "animals" / "broken.svg").write_text("<svg><unclosed>")
    (root / "animals" / "blank_page.svg").write_text(svg("Blank page", ["paper"], body=""))
    (root / "shapes" / "tiger_link.svg").symlink_to("../animals/tiger_jane_roe_01.svg")
    return root


TINY = "scot-test-tiny-embed"
TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="session")
def tiny_spec(tmp_path_factory) -> str:
    """A tiny open_clip architecture registered under a test name (random init, seeded)."""
    import open_clip

    path = tmp_path_factory.mktemp("open-clip-config") / f"{TINY}.json"
    path.write_text(json.dumps(TINY_CONFIG))
    open_clip.add_model_config(path)
    return f"open_clip:{TINY}"
