"""The caption stage's worker: prove each candidate's image decodes, rendering SVGs once.

Runs in worker processes, so everything here is a plain function of picklable records.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from scot_data.atomic import atomic_path
from scot_data.captions import svg_render
from scot_data.captions.config import DEFAULT_RENDER_TIMEOUT_S
from scot_data.captions.records import Candidate, CaptionRow, LocalImage, RemoteImage, SvgImage, TarMember
from scot_data.images import ImageError, decode, read_tar_member, stable_reason

WHITE = (255, 255, 255)


def render_svg(svg_path: str, size: int, timeout_s: float = DEFAULT_RENDER_TIMEOUT_S) -> Image.Image:
    """A ``size`` x ``size`` RGB image of the drawing, centred on white.

    cairo runs in a helper process (see ``svg_render``): an embedded image or a canvas over
    Pillow's pixel limit is refused before cairo decodes or allocates it, and a render that
    takes longer than ``timeout_s`` is killed; both become the reason, naming the file.
    """
    try:
        png = svg_render.render_png(svg_path, size, timeout_s)
    except svg_render.Refused as exc:
        raise ImageError(f"svg {svg_path}: {exc}") from exc
    except svg_render.RenderFailed as exc:
        raise ImageError(f"svg does not render: {stable_reason(exc)}") from exc
    try:
        drawing = decode(png, svg_path).convert("RGBA")
    except ImageError:
        raise
    except Exception as exc:  # a PNG that decodes but does not convert
        raise ImageError(f"svg does not render: {type(exc).__name__}: {stable_reason(exc)}") from exc
    canvas = Image.new("RGB", (size, size), WHITE)
    offset = ((size - drawing.width) // 2, (size - drawing.height) // 2)
    canvas.paste(drawing, offset, drawing)
    if all(low == high for low, high in canvas.getextrema()):
        raise ImageError("svg renders as a blank image")
    return canvas


def _rendered_uri(candidate: Candidate, ref: SvgImage, images_dir: Path, size: int, timeout_s: float) -> str:
    target = images_dir / f"{candidate.image_id}-{size}.png"
    if not target.exists():
        image = render_svg(ref.svg_path, size, timeout_s)
        with atomic_path(target) as tmp:
            image.save(tmp, format="PNG")
    return str(target.resolve())


def image_uri(
    candidate: Candidate,
    images_dir: Path,
    render_size: int,
    render_timeout_s: float = DEFAULT_RENDER_TIMEOUT_S,
) -> str:
    """Check (or render) the candidate's image and return the URI the table records."""
    ref = candidate.image
    if isinstance(ref, LocalImage):
        try:
            data = Path(ref.path).read_bytes()
        except OSError as exc:
            raise ImageError(f"image file unreadable: {exc.strerror or exc}") from exc
        decode(data, ref.path)
        return ref.path
    if isinstance(ref, TarMember):
        uri = f"tar://{ref.tar_path}#{ref.member}"
        decode(read_tar_member(ref), uri)
        return uri
    if isinstance(ref, RemoteImage):
        return ref.url
    if isinstance(ref, SvgImage):
        return _rendered_uri(candidate, ref, images_dir, render_size, render_timeout_s)
    raise TypeError(f"unknown image reference {ref!r}")


def to_row(candidate: Candidate, uri: str) -> CaptionRow:
    """The captions-table row of a checked candidate."""
    return CaptionRow(candidate.caption_id, candidate.image_id, uri, candidate.caption, candidate.source)
