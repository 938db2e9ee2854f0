"""Render an SVG with cairo under bounds: a pixel limit, a time limit and a memory limit.

cairo's C code neither applies Pillow's decompression-bomb limit nor returns to Python for
signals: a 2 KB SVG holding a ``data:`` PNG whose header says 20000x20000 makes cairo allocate
1.6 GB, and one of nested ``<use>`` elements keeps it busy for minutes. So:

* every resource cairosvg fetches goes through :class:`_DataOnlyFetcher`, which reads a raster
  image's size from its header (nothing is decoded) and refuses it over :data:`PIXEL_LIMIT`,
  the limit Pillow applies to the images it opens; any other URL gets the empty drawing
  cairosvg's own default fetcher gives it, so a file path or ``file:`` URL to a large image
  elsewhere is never read either. The output surface is held to the same limit.
* :class:`RenderHelper` renders in a helper process, reused from file to file, and kills and
  replaces it when one file runs over its time limit. The helper's address space is capped
  (:data:`MEMORY_LIMIT_BYTES`) for what no pixel count sees, such as a gzip bomb.

This module imports only cairosvg, Pillow and the standard library: the helper process starts
by importing it alone (about half a second), not the caption stage.
"""

from __future__ import annotations

import io
import os
import pickle
import resource
import select
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from cairosvg.surface import PNGSurface
from cairosvg.url import fetch, safe_fetch
from PIL import Image

# Pillow's decompression-bomb limit (its default when a caller has switched it off): the
# most pixels any image here may have, an embedded one or the rendered drawing.
PIXEL_LIMIT = int(Image.MAX_IMAGE_PIXELS or 1024 * 1024 * 1024 // 4 // 3)
# Address space the helper process may use: room for an image at the pixel limit (cairo's
# 4 bytes a pixel, and Pillow's copies of a JPEG on its way to cairo) next to the render,
# and a bound on what the pixel limit does not see (a gzip bomb in a data: SVG, a vast XML tree).
MEMORY_LIMIT_BYTES = 2 << 30
STARTUP_TIMEOUT_S = 120.0
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
_HEADER = struct.Struct(">Q")


class Refused(Exception):
    """The drawing exceeds a bound; the message says which, without the file's name."""


class RenderFailed(Exception):
    """cairosvg raised; the message is ``Type: message`` of what it raised."""


def header_size(data: bytes) -> tuple[int, int] | None:
    """A raster image's pixel size read from its header, or None if no decoder knows the bytes.

    PNG is read the way cairo reads it (its IHDR, which libpng sizes the image by); anything
    else cairosvg hands to Pillow, so Pillow's format plugins read the header here too, short
    of the decompression-bomb check ``Image.open`` would raise before giving the size.
    """
    if data.startswith(b"\x89PNG") and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    Image.init()
    prefix = data[:16]
    for name in Image.ID:
        factory, accept = Image.OPEN[name]
        try:
            accepted = True if accept is None else accept(prefix)
            if isinstance(accepted, str) or not accepted:  # a str is a warning: not this format
                continue
            with factory(io.BytesIO(data), "") as image:
                return image.size
        except Exception:  # not this format, or a header it cannot read
            continue
    return None


class _DataOnlyFetcher:
    """cairosvg's ``url_fetcher``: the drawing itself, then ``data:`` URLs only, sized first."""

    def __init__(self) -> None:
        self.document_read = False

    def __call__(self, url: str, resource_type: str) -> bytes:
        if not self.document_read:  # cairosvg fetches the drawing first, before anything in it
            self.document_read = True
            return fetch(url, resource_type)
        if not url.startswith("data:"):
            return safe_fetch(url, resource_type)  # cairosvg's default: an empty drawing
        data = fetch(url, resource_type)
        size = header_size(data)
        if size is not None and size[0] * size[1] > PIXEL_LIMIT:
            raise Refused(f"embedded image {size[0]}x{size[1]} px exceeds the {PIXEL_LIMIT}-pixel limit")
        return data


class _BoundedPNGSurface(PNGSurface):
    """cairosvg's PNG surface, refusing a canvas over the pixel limit before allocating it."""

    def _create_surface(self, width: float, height: float) -> Any:
        wide, high = int(round(width)), int(round(height))  # as PNGSurface rounds them
        if wide * high > PIXEL_LIMIT:
            raise Refused(f"render surface {wide}x{high} px exceeds the {PIXEL_LIMIT}-pixel limit")
        return super()._create_surface(width, height)


def _convert(svg_path: str, **output_size: int) -> bytes:
    # cairosvg.svg2png(url=svg_path, ...) with the bounded surface and fetcher.
    return _BoundedPNGSurface.convert(url=svg_path, url_fetcher=_DataOnlyFetcher(), **output_size)


def svg_to_png(svg_path: str, size: int) -> bytes:
    """Render at ``size`` on the longer side, keeping the aspect ratio, in this process."""
    png = _convert(svg_path, output_width=size)
    width, height = Image.open(io.BytesIO(png)).size
    if height > width:
        png = _convert(svg_path, output_height=size)
    return png


def _render_answer(svg_path: str, size: int, memory_limit: int | None) -> tuple[str, Any]:
    try:
        return "png", svg_to_png(svg_path, size)
    except Refused as exc:
        return "refused", str(exc)
    except MemoryError:  # also cairo's out-of-memory status (cairo.MemoryError)
        if memory_limit is None:
            raise
        return "refused", f"render needs more than the {memory_limit >> 20} MiB memory limit"
    except Exception as exc:  # cairosvg raises many unrelated types on bad SVG
        return "error", f"{type(exc).__name__}: {exc}"


def _write(fd: int, message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def _read(fd: int, deadline: float | None) -> Any:
    """One message from ``fd``; TimeoutError past ``deadline`` (monotonic), EOFError at its end."""
    header = _read_exact(fd, _HEADER.size, deadline)
    return pickle.loads(_read_exact(fd, _HEADER.unpack(header)[0], deadline))


def _read_exact(fd: int, count: int, deadline: float | None) -> bytes:
    chunks, remaining = [], count
    while remaining:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def serve(memory_limit: int | None = None) -> None:
    """The helper process: answer ``(svg_path, size)`` requests on stdin until stdin closes,
    within ``memory_limit`` bytes of address space."""
    if memory_limit is not None:
        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        soft = memory_limit if hard == resource.RLIM_INFINITY else min(memory_limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    answers = os.dup(1)
    os.dup2(2, 1)  # a library's stray print goes to stderr, not into the answers
    _write(answers, ("ready", None))
    while True:
        try:
            svg_path, size, timeout_s = _read(0, None)
        except EOFError:  # the caller is done (or gone)
            return
        # The caller kills this process at timeout_s; should the caller itself be gone, the
        # kernel ends it a while later (SIGALRM's default action works inside cairo too).
        signal.setitimer(signal.ITIMER_REAL, 2 * timeout_s + 5)
        answer = _render_answer(svg_path, size, memory_limit)
        signal.setitimer(signal.ITIMER_REAL, 0)
        try:
            _write(answers, answer)
        except BrokenPipeError:
            return


class RenderHelper:
    """A helper process that renders SVGs one at a time, replaced when one runs over its time."""

    def __init__(self, memory_limit: int | None = MEMORY_LIMIT_BYTES) -> None:
        self.memory_limit = memory_limit
        self._process: subprocess.Popen[bytes] | None = None

    def _start(self) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        serve_code = f"from scot_data.captions.svg_render import serve; serve({self.memory_limit})"
        command = [sys.executable, "-c", serve_code]
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, env=env)
        self._process = process
        try:
            _read(process.stdout.fileno(), time.monotonic() + STARTUP_TIMEOUT_S)  # type: ignore[union-attr]
        except (TimeoutError, EOFError) as exc:
            self.close()
            raise RuntimeError(f"the SVG render helper did not start: {' '.join(command)}") from exc
        return process

    def render(self, svg_path: str, size: int, timeout_s: float) -> bytes:
        """The drawing as PNG bytes; Refused over a bound or the time, RenderFailed if cairosvg raised."""
        process = self._process
        if process is None or process.poll() is not None:
            process = self._start()
        try:
            _write(process.stdin.fileno(), (svg_path, size, timeout_s))  # type: ignore[union-attr]
            kind, payload = _read(process.stdout.fileno(), time.monotonic() + timeout_s)  # type: ignore[union-attr]
        except TimeoutError:
            self.close()
            raise Refused(f"render took longer than {timeout_s:g} s") from None
        except (EOFError, BrokenPipeError):
            code = self.close(grace_s=5.0)
            raise Refused(f"the render process died (exit code {code})") from None
        if kind == "png":
            return payload
        if kind == "refused":
            raise Refused(payload)
        raise RenderFailed(payload)

    def close(self, grace_s: float = 0.0) -> int | None:
        """Stop the helper process (killed: it may be inside cairo) after ``grace_s`` seconds
        to exit by itself; return its exit code."""
        process, self._process = self._process, None
        if process is None:
            return None
        try:
            code = process.wait(grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()
        return code


_HELPER = RenderHelper()


def render_png(svg_path: str, size: int, timeout_s: float) -> bytes:
    """Render with this process's helper (started on first use, replaced after a timeout)."""
    return _HELPER.render(svg_path, size, timeout_s)


def close_helper() -> None:
    """Stop this process's helper; the next render starts a new one."""
    _HELPER.close()
