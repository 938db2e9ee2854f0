"""``scot search``: one composed query (an image, a text, or both) against an image gallery.

The gallery is a finished embedding-cache directory; its manifest names the encoder, so
the query is embedded in the same space by default. With a Combiner the query is
``f_c(V, T_m)``; without one, ``normalise(V + T_m)`` (or the one input given). Hits are
shown with the image file and caption when the gallery was built from a caption table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from PIL import Image

from scot_data import stages
from scot_data.combiner.checkpoint import load_combiner
from scot_data.combiner.model import Combiner
from scot_data.encoders import Encoder, create_encoder
from scot_data.errors import ScotInputError
from scot_data.evaluate.retriever import Retriever
from scot_data.images import ImageError, decode, stable_reason
from scot_data.manifest import finished_manifest, read_manifest


@dataclass
class Hit:
    rank: int
    image_id: str
    score: float
    uri: str = ""
    caption: str = ""


@dataclass
class SearchOutput:
    method: str
    hits: list[Hit]
    lam: float | None = None


def gallery_encoder(gallery_dir: Path) -> dict:
    manifest = finished_manifest(gallery_dir, stages.EMBED, "--gallery")
    if not isinstance(manifest.get("encoder"), dict) or not {"spec", "key"} <= set(manifest["encoder"]):
        raise ScotInputError(f"--gallery {gallery_dir}: its manifest.json names no encoder (not from scot embed)")
    return manifest["encoder"]


def query_image(image: Path) -> Image.Image:
    """The decoded reference image; a missing, unreadable or undecodable file (text, zero
    bytes, a decompression bomb) is named in one line rather than a traceback."""
    if not image.is_file():
        raise ScotInputError(f"--image {image}: no such file")
    try:
        return decode(image.read_bytes(), str(image))
    except OSError as exc:
        raise ScotInputError(f"--image {image}: unreadable ({exc.strerror or exc})") from None
    except ImageError as exc:  # decode's reason repeats the path; keep only PIL's cause
        reason = stable_reason(exc.__cause__)
        raise ScotInputError(f"--image {image}: image does not decode: {reason}") from None


def image_vector(encoder: Encoder, image: Path) -> torch.Tensor:
    return encoder.encode_images(encoder.image_transform(query_image(image))[None])


def compose(
    image: torch.Tensor | None, text: torch.Tensor | None, combiner: Combiner | None
) -> tuple[str, torch.Tensor, float | None]:
    """The query vector, the method that made it, and the Combiner's lambda."""
    if image is not None and text is not None:
        if combiner is None:
            return "sum", F.normalize(image + text, dim=-1), None
        with torch.no_grad():
            output = combiner(image, text)
        return "combiner", output.query, float(output.lam[0])
    if image is not None:
        return "image_only", image, None
    if text is not None:
        return "text_only", text, None
    raise ScotInputError("give --image, --text or both")


def captions_of(gallery_dir: Path) -> dict[str, tuple[str, str]]:
    """image_id -> (uri, first caption), from the caption table the gallery was built from."""
    for entry in (read_manifest(gallery_dir) or {}).get("inputs", []):
        table = Path(entry["path"]).parent / "captions.parquet"
        if Path(entry["path"]).name == "manifest.json" and table.exists():
            rows = pq.read_table(table, columns=["image_id", "image_uri", "caption"]).to_pylist()
            found: dict[str, tuple[str, str]] = {}
            for row in rows:
                found.setdefault(row["image_id"], (row["image_uri"], row["caption"]))
            return found
    return {}


def search(
    gallery_dir: str | Path,
    image: Path | None = None,
    text: str | None = None,
    k: int = 10,
    combiner: Path | None = None,
    encoder_spec: str | None = None,
    device: str = "auto",
) -> SearchOutput:
    """Embed the query with the gallery's encoder, compose it, return the top ``k``."""
    if k < 1:
        raise ScotInputError(f"-k/--top-k {k}: must be at least 1")
    if image is None and not text:
        raise ScotInputError("give --image, --text or both")
    if image is not None and not Path(image).is_file():
        raise ScotInputError(f"--image {image}: no such file")
    gallery = Path(gallery_dir)
    identity = gallery_encoder(gallery)
    model = load_combiner(combiner).eval() if combiner is not None else None  # a bad file is named first
    encoder = create_encoder(encoder_spec or identity["spec"], device=device)
    if encoder.identity.key() != identity["key"]:
        raise ScotInputError(f"--gallery {gallery}: embedded with encoder key {identity['key']}, "
                             f"the query encoder has {encoder.identity.key()}")  # fmt: skip
    image_vec = image_vector(encoder, image) if image is not None else None
    text_vec = encoder.encode_texts([text]) if text else None
    method, query, lam = compose(image_vec, text_vec, model)
    result = Retriever.from_embeddings(gallery).search(query.numpy(), k)
    known = captions_of(gallery)
    hits = [Hit(rank + 1, image_id, float(score), *known.get(image_id, ("", "")))
            for rank, (image_id, score) in enumerate(zip(result.ids[0], result.scores[0]))]  # fmt: skip
    return SearchOutput(method, hits, lam)
