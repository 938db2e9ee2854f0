"""COCO captions: ``captions_<split>.json`` (images[].id/file_name, annotations[].image_id/caption)."""

from __future__ import annotations

import json
from collections.abc import Iterator

from scot_data.captions.config import CocoCaptions
from scot_data.captions.readers.common import candidate_or_reject, require_path
from scot_data.captions.records import Candidate, LocalImage, Reject
from scot_data.errors import ScotInputError
from scot_data.manifest import InputRef, fingerprint_input


def coco_inputs(cfg: CocoCaptions) -> list[InputRef]:
    """The annotation file by content, the image folder by listing (it can be large)."""
    require_path(cfg.input, "COCO captions file")
    require_path(cfg.images, "COCO image folder", directory=True)
    return [fingerprint_input(cfg.input), fingerprint_input(cfg.images, content=False)]


def _load(cfg: CocoCaptions) -> dict:
    try:
        data = json.loads(cfg.input.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ScotInputError(f"{cfg.input}: not a readable COCO captions JSON ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(
        data.get("annotations"), list
    ):
        raise ScotInputError(f"{cfg.input}: a COCO captions file needs 'images' and 'annotations' lists")
    return data


def scan_coco(cfg: CocoCaptions) -> Iterator[Candidate | Reject]:
    """Yield one candidate per annotation whose image record exists inside ``--images``; a
    ``file_name`` that is absolute or climbs out with ``..`` would read any file on the machine."""
    data = _load(cfg)
    file = str(cfg.input)
    folder = cfg.images.resolve()
    file_names: dict[object, str] = {}
    for i, image in enumerate(data["images"]):
        if not isinstance(image, dict) or "id" not in image or not isinstance(image.get("file_name"), str):
            yield Reject(file, f"images[{i}]", "image record lacks 'id' or 'file_name'")
            continue
        file_names[image["id"]] = image["file_name"]
    for i, ann in enumerate(data["annotations"]):
        record = f"annotations[{i}]"
        if not isinstance(ann, dict) or "image_id" not in ann:
            yield Reject(file, record, "annotation lacks 'image_id'")
            continue
        name = file_names.get(ann["image_id"])
        if name is None:
            yield Reject(file, record, f"image_id {ann['image_id']!r} has no image record")
            continue
        path = (cfg.images / name).resolve()
        if not path.is_relative_to(folder):
            yield Reject(file, record, f"file_name {name!r} is outside the image folder {folder}")
            continue
        image = LocalImage(str(path))
        yield candidate_or_reject(cfg.source_name, name, ann.get("caption"), image, file, record)
