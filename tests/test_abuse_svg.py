"""Hostile SVGs for the caption stage: images cairo would decode past Pillow's pixel limit,
files elsewhere that a drawing points at, and drawings that take minutes to render.

Each must end in a one-line reject that names the file and the limit while the run goes on,
and an ordinary drawing must render to the same pixels as before the bounds existed.
"""

from __future__ import annotations

import base64
import io
import signal
import struct
import time
import zlib
from pathlib import Path

import cairosvg
import pyarrow.parquet as pq
import pytest
from PIL import Image

from scot_data.captions import svg_render
from scot_data.captions.config import OpenclipartCaptions
from scot_data.captions.images import ImageError, render_svg
from scot_data.captions.ingest import ingest_captions, stage_config
from scot_data.manifest import stage_fingerprint
from tests.conftest import svg

XLINK = 'xmlns:xlink="http://www.w3.org/1999/xlink"'
LIMIT = svg_render.PIXEL_LIMIT
REAL_CLIPART = Path("/usr/share/openclipart/svg")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height`` and that holds no pixels at all:
    enough for Pillow's ``open`` (and libpng) to read the size, never decodable."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IEND", b"")


def small_image(fmt: str, size: tuple[int, int] = (4, 4), color: str = "blue") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small JPEG whose SOF0 frame header is rewritten to claim ``width`` x ``height``."""
    data = bytearray(small_image("JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_claiming(width: int, height: int) -> bytes:
    """A small GIF whose logical screen and first frame claim ``width`` x ``height``."""
    data = bytearray(small_image("GIF"))
    data[6:10] = struct.pack("<HH", width, height)
    frame = 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)  # past the global colour table
    while data[frame] == 0x21:  # extension blocks: label, then sub-blocks up to an empty one
        frame += 2
        while data[frame]:
            frame += data[frame] + 1
        frame += 1
    assert data[frame] == 0x2C  # the image descriptor: left, top, width, height
    data[frame + 5 : frame + 9] = struct.pack("<HH", width, height)
    return bytes(data)


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def image_element(href: str, attribute: str = "href") -> str:
    namespace = f" {XLINK}" if attribute.startswith("xlink:") else ""
    return f'<image{namespace} {attribute}="{href}" x="0" y="0" width="100" height="100"/>'


def drawing(body: str) -> str:
    """A red square under ``body``: something visible whatever the body does."""
    square = '<rect x="20" y="20" width="60" height="60" fill="red"/>'
    return svg("Red square", ["shapes"], body=square + body)


def reference_render(svg_path: str, size: int) -> bytes:
    """The drawing as the stage rendered it before the bounds: cairosvg in this process."""
    png = cairosvg.svg2png(url=svg_path, output_width=size)
    width, height = Image.open(io.BytesIO(png)).size
    if height > width:
        png = cairosvg.svg2png(url=svg_path, output_height=size)
    return png


def pixels(png: bytes) -> tuple[tuple[int, int], bytes]:
    with Image.open(io.BytesIO(png)) as image:
        return image.size, image.convert("RGBA").tobytes()


def nested_uses(levels: int = 5) -> str:
    """Ten ``<use>`` of the level below, ``levels`` deep: 2 KB that cairosvg draws 10**levels
    times (five levels: over a minute of rendering, then cairosvg's own reference cap)."""
    groups = ['<g id="l0"><path d="M10 10 L90 10 L50 90 Z" fill="red"/></g>']
    for level in range(1, levels + 1):
        uses = "".join(f'<use xlink:href="#l{level - 1}" x="{j * 0.1}"/>' for j in range(10))
        groups.append(f'<g id="l{level}">{uses}</g>')
    return f'<g {XLINK}><defs>{"".join(groups)}</defs><use xlink:href="#l{levels}"/></g>'


def reasons_by_name(out: Path) -> dict[str, str]:
    return {Path(r["file"]).name: r["reason"] for r in pq.read_table(out / "rejects.parquet").to_pylist()}


def captions(out: Path) -> list[str]:
    return pq.read_table(out / "captions.parquet", columns=["caption"]).column(0).to_pylist()


@pytest.fixture(autouse=True, scope="module")
def _no_helper_left():
    """The render helper process these tests start (one, reused) is gone when they end."""
    yield
    svg_render.close_helper()


def test_header_size_reads_sizes_without_decoding() -> None:
    assert svg_render.header_size(png_header(20000, 20000)) == (20000, 20000)
    assert svg_render.header_size(png_header(32767, 32767)) == (32767, 32767)
    for fmt in ("PNG", "JPEG", "GIF", "WEBP", "BMP"):
        assert svg_render.header_size(small_image(fmt, (7, 3))) == (7, 3), fmt
    # Sizes past Pillow's own bomb error (twice the limit), which Image.open refuses to report.
    assert svg_render.header_size(jpeg_claiming(20000, 20000)) == (20000, 20000)
    assert svg_render.header_size(gif_claiming(20000, 20000)) == (20000, 20000)
    assert svg_render.header_size(b"<svg/>") is None and svg_render.header_size(b"") is None


@pytest.mark.parametrize(
    ("attribute", "payload", "mime", "size"),
    [
        ("href", png_header(20000, 20000), "image/png", "20000x20000"),
        ("xlink:href", png_header(32767, 32767), "image/png", "32767x32767"),
        ("xlink:href", png_header(20000, 20000), "", "20000x20000"),  # data:;base64, as clip art has it
        ("href", jpeg_claiming(20000, 20000), "image/jpeg", "20000x20000"),
        ("href", jpeg_claiming(10000, 9000), "image/jpeg", "10000x9000"),  # over the limit, under 2x
        ("xlink:href", gif_claiming(20000, 20000), "image/gif", "20000x20000"),
    ],
    ids=["png-href", "png-xlink-32767", "png-untyped", "jpeg", "jpeg-under-pillow-error", "gif"],
)
def test_embedded_image_over_the_limit_is_refused_before_decoding(
    tmp_path: Path, attribute: str, payload: bytes, mime: str, size: str
) -> None:
    path = tmp_path / "huge.svg"
    path.write_text(drawing(image_element(data_uri(payload, mime), attribute)))
    with pytest.raises(ImageError) as caught:
        render_svg(str(path), 224)
    assert str(caught.value) == f"svg {path}: embedded image {size} px exceeds the {LIMIT}-pixel limit"


def test_embedded_image_inside_an_embedded_svg_is_refused(tmp_path: Path) -> None:
    huge = image_element(data_uri(png_header(20000, 20000)))
    inner = f'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">{huge}</svg>'
    path = tmp_path / "nested.svg"
    path.write_text(drawing(image_element(data_uri(inner.encode(), "image/svg+xml"))))
    with pytest.raises(ImageError, match=r"embedded image 20000x20000 px exceeds"):
        render_svg(str(path), 224)


def test_render_surface_over_the_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "square.svg"
    path.write_text(drawing(""))
    with pytest.raises(ImageError) as caught:
        render_svg(str(path), 20000)
    assert str(caught.value) == f"svg {path}: render surface 20000x20000 px exceeds the {LIMIT}-pixel limit"


def test_memory_bound_catches_what_the_pixel_limit_does_not(tmp_path: Path) -> None:
    """A 200 KB data: SVG that gzip inflates to 200 MB: no raster image, so no pixel check;
    the helper's address-space limit stops it (here a low one), and the helper goes on."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: the gzip container
    bomb = [deflate.compress(b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9">')]
    bomb += [deflate.compress(b" " * (1 << 20)) for _ in range(200)]
    bomb.append(deflate.compress(b"</svg>") + deflate.flush())
    path = tmp_path / "gzip_bomb.svg"
    path.write_text(drawing(image_element(data_uri(b"".join(bomb), "image/svg+xml"))))
    plain = tmp_path / "plain.svg"
    plain.write_text(drawing(""))
    helper = svg_render.RenderHelper(memory_limit=128 << 20)
    try:
        with pytest.raises(svg_render.Refused, match=r"^render needs more than the 128 MiB memory limit$"):
            helper.render(str(path), 64, timeout_s=60)
        assert pixels(helper.render(str(plain), 64, timeout_s=60)) == pixels(reference_render(str(plain), 64))
    finally:
        helper.close()


def test_files_outside_the_drawing_are_never_read(tmp_path: Path) -> None:
    """A path or file: URL to an image elsewhere draws nothing, as cairosvg's default does:
    the pixels equal those of the drawing without it (so no size check is needed for it)."""
    blue = tmp_path / "elsewhere" / "blue.png"
    blue.parent.mkdir()
    blue.write_bytes(small_image("PNG", (100, 100)))
    plain = tmp_path / "plain.svg"
    plain.write_text(drawing(""))
    expected = render_svg(str(plain), 64).tobytes()
    for index, href in enumerate([str(blue), blue.as_uri(), "elsewhere/blue.png"]):
        for attribute in ("href", "xlink:href"):
            path = tmp_path / f"linked-{index}-{attribute.replace(':', '-')}.svg"
            path.write_text(drawing(image_element(href, attribute)))
            assert render_svg(str(path), 64).tobytes() == expected, (href, attribute)
    # The same blue image embedded as data is drawn: the test above would notice it.
    embedded = tmp_path / "embedded.svg"
    embedded.write_text(drawing(image_element(data_uri(blue.read_bytes()))))
    assert render_svg(str(embedded), 64).getpixel((32, 32)) == (0, 0, 255)


def test_ordinary_drawings_render_as_before(tmp_path: Path) -> None:
    bodies = {
        "square": "",
        "embedded-png": image_element(data_uri(small_image("PNG", (30, 20), "green")), "xlink:href"),
        "embedded-jpeg": image_element(data_uri(small_image("JPEG", (16, 16), "yellow"), "image/jpeg")),
    }
    paths = []
    for name, body in bodies.items():
        paths.append(tmp_path / f"{name}.svg")
        paths[-1].write_text(drawing(body))
    paths.append(tmp_path / "tall.svg")
    paths[-1].write_text(svg("Tall apple", ["food"], color="green", w=50, h=120))
    if REAL_CLIPART.is_dir():  # real files with data: images and with links to /usr/share/icons
        for name in ("shapes/fancy_red_button_matt_to_01.svg", "shapes/shadow_babe_robert_seitz_01.svg"):
            if (REAL_CLIPART / name).exists():
                paths.append(REAL_CLIPART / name)
    for path in paths:
        for size in (64, 224):
            bounded = svg_render.render_png(str(path), size, timeout_s=60)
            assert pixels(bounded) == pixels(reference_render(str(path), size)), (path, size)


def test_slow_render_is_killed_and_the_run_goes_on(tmp_path: Path) -> None:
    root = tmp_path / "svg"
    (root / "abuse").mkdir(parents=True)
    (root / "abuse" / "nested_uses.svg").write_text(svg("Triangle pile", ["shapes"], body=nested_uses()))
    (root / "abuse" / "apple.svg").write_text(svg("Red apple", ["food", "fruit"]))
    (root / "abuse" / "tiger.svg").write_text(svg("Tiger", ["animal"], color="orange"))
    out = tmp_path / "out"
    cfg = OpenclipartCaptions(input=root, workers=1, render_timeout_s=1.0)
    started = time.monotonic()
    summary = ingest_captions(cfg, out, show_progress=False)
    assert time.monotonic() - started < 60  # unbounded, the drawing alone renders for over a minute
    slow = root / "abuse" / "nested_uses.svg"
    assert reasons_by_name(out) == {"nested_uses.svg": f"svg {slow}: render took longer than 1 s"}
    assert sorted(captions(out)) == ["red apple (food, fruit)", "tiger (animal)"]
    assert summary.rows == 2 and summary.rejects == 1


def test_orphaned_helper_ends_itself(tmp_path: Path) -> None:
    """If the caller dies mid-render (kill -9 of the stage), nobody kills the helper: it ends
    itself at twice the timeout plus 5 s, from inside cairosvg's loop, by SIGALRM."""
    path = tmp_path / "nested_uses.svg"
    path.write_text(svg("Triangle pile", ["shapes"], body=nested_uses()))
    helper = svg_render.RenderHelper()
    process = helper._start()
    started = time.monotonic()
    svg_render._write(process.stdin.fileno(), (str(path), 64, 0.1))
    process.stdin.close()
    process.stdout.close()
    try:
        assert process.wait(timeout=60) == -signal.SIGALRM
    finally:
        helper.close()
    assert 5 <= time.monotonic() - started < 30


def test_huge_embedded_image_is_a_reject_and_the_workers_go_on(tmp_path: Path) -> None:
    root = tmp_path / "svg"
    (root / "abuse").mkdir(parents=True)
    huge = root / "abuse" / "huge_photo.svg"
    huge.write_text(svg("Huge photo", ["photo"], body=image_element(data_uri(png_header(20000, 20000)))))
    colors = {"apple": "red", "pear": "green", "plum": "blue", "tiger": "orange", "zebra": "black"}
    for name, color in colors.items():
        (root / "abuse" / f"{name}.svg").write_text(svg(name.title(), ["things"], color=color))
    out = tmp_path / "out"
    cfg = OpenclipartCaptions(input=root, workers=2, part_size=2)  # three parts over two worker processes
    summary = ingest_captions(cfg, out, show_progress=False)
    assert reasons_by_name(out) == {
        "huge_photo.svg": f"svg {huge}: embedded image 20000x20000 px exceeds the {LIMIT}-pixel limit"
    }
    assert summary.rows == 5 and summary.images == 5 and summary.parts == 3


def test_render_timeout_is_not_part_of_the_fingerprint(tmp_path: Path) -> None:
    default = OpenclipartCaptions(input=tmp_path)
    patient = OpenclipartCaptions(input=tmp_path, render_timeout_s=600)
    assert "render_timeout_s" not in stage_config(default)
    assert stage_fingerprint("captions", stage_config(default), []) == stage_fingerprint(
        "captions", stage_config(patient), []
    )
    with pytest.raises(ValueError, match="render_timeout_s"):
        OpenclipartCaptions(input=tmp_path, render_timeout_s=0)
