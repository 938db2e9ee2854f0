"""Images, read the same way by every stage: the ground floor under captions, embed,
fit-lit, evaluation and search (it imports no other ``scot_data`` module).

``decode`` fully decodes bytes (a bad image is an ``ImageError`` whose message is the
reject reason, without object addresses); ``TarMember`` locates an image inside a tar shard
by byte offset; ``ImageItem`` + ``read_image_bytes`` read local files,
``tar://shard#member`` (the shard indexed once by ``index_tars``) and any fsspec URL.
``ImageDataset`` + ``collate`` decode and transform in DataLoader workers: everything is
picklable (plain records and module-level functions), so it runs under fork or spawn, and
a bad image never raises out of a worker: it comes back as a reason. torch is imported only
by ``collate`` (``DataLoader`` takes any map-style dataset), so reading this module is light.
"""

from __future__ import annotations

import io
import re
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

# PIL names the stream it read, e.g. "<_io.BytesIO object at 0x7f...>": an address that
# changes per run, so a reason holding it would make the rejects table nondeterministic.
_OBJECT_REPR = re.compile(r"\s*<[^<>]* at 0x[0-9a-fA-F]+>")


@dataclass(frozen=True)
class TarMember:
    """An image stored in a tar shard, located by byte offset so a worker can read it alone."""

    tar_path: str
    member: str
    offset: int
    size: int


class ImageError(Exception):
    """An image cannot be used; the message is the reject reason."""


def stable_reason(exc: BaseException) -> str:
    """An exception's message without object addresses, so the same input gives the same reason."""
    return _OBJECT_REPR.sub("", str(exc))


def decode(data: bytes, name: str) -> Image.Image:
    """Fully decode image bytes (``verify`` alone misses truncated pixel data); ``name`` (the
    file or URI the bytes came from) goes into the reason, PIL's stream repr does not."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageError(f"image does not decode: {name}: {stable_reason(exc)}") from exc
    return image


def read_tar_member(ref: TarMember) -> bytes:
    """Read one member's bytes by offset; a short read means a truncated shard."""
    with open(ref.tar_path, "rb") as handle:
        handle.seek(ref.offset)
        data = handle.read(ref.size)
    if len(data) != ref.size:
        raise ImageError(f"tar member {ref.member} is truncated ({len(data)} of {ref.size} bytes)")
    return data


TAR_SCHEME = "tar://"


@dataclass(frozen=True)
class ImageItem:
    """One distinct image to embed: its id, where it is, and the captions row that named it."""

    image_id: str
    uri: str
    row: int
    tar: TarMember | None = None

    @property
    def file(self) -> str:
        """The file a reject names: the tar shard for a member, else the URI."""
        if self.tar is not None:
            return self.tar.tar_path
        if self.uri.startswith(TAR_SCHEME):
            return self.uri[len(TAR_SCHEME) :].rpartition("#")[0] or self.uri
        return self.uri


def split_tar_uri(uri: str) -> tuple[str, str]:
    """``tar://<shard>#<member>`` -> (shard path, member name)."""
    shard, sep, member = uri[len(TAR_SCHEME) :].rpartition("#")
    if not sep or not shard or not member:
        raise ImageError(f"malformed tar URI {uri!r} (expected tar://<shard>#<member>)")
    return shard, member


def index_tars(items: Iterable[ImageItem]) -> tuple[list[ImageItem], list[tuple[ImageItem, str]]]:
    """Locate every tar member by offset (each shard's headers read once).

    Returns the items with their ``tar`` field filled, and (item, reason) for members that
    cannot be located (missing shard, unreadable shard, member not in it).
    """
    items = list(items)
    wanted: dict[str, set[str]] = {}
    for item in items:
        if item.uri.startswith(TAR_SCHEME):
            try:
                shard, member = split_tar_uri(item.uri)
            except ImageError:
                continue
            wanted.setdefault(shard, set()).add(member)
    located: dict[tuple[str, str], TarMember] = {}
    broken: dict[str, str] = {}
    for shard, members in wanted.items():
        try:
            with tarfile.open(shard, "r:") as tar:
                for info in tar:
                    if info.isfile() and info.name in members:
                        located[(shard, info.name)] = TarMember(shard, info.name, info.offset_data, info.size)
        except (OSError, tarfile.TarError) as exc:
            broken[shard] = f"tar shard unreadable: {exc}"
    ready, bad = [], []
    for item in items:
        if not item.uri.startswith(TAR_SCHEME):
            ready.append(item)
            continue
        try:
            shard, member = split_tar_uri(item.uri)
        except ImageError as exc:
            bad.append((item, str(exc)))
            continue
        if (shard, member) in located:
            ready.append(ImageItem(item.image_id, item.uri, item.row, located[(shard, member)]))
        else:
            bad.append((item, broken.get(shard, f"tar member {member} not found in {shard}")))
    return ready, bad


def read_image_bytes(item: ImageItem) -> bytes:
    if item.tar is not None:
        return read_tar_member(item.tar)
    if "://" not in item.uri or item.uri.startswith("file://"):
        path = item.uri.removeprefix("file://")
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise ImageError(f"image file unreadable: {exc.strerror or exc}") from exc
    import fsspec

    try:
        with fsspec.open(item.uri, "rb") as handle:
            return handle.read()
    except Exception as exc:  # network and backend errors come in many types
        raise ImageError(f"image URL unreadable: {type(exc).__name__}: {stable_reason(exc)}") from exc


class ImageDataset:
    """Item i -> (i, pixels or None, reject reason); decoding and transform run in workers."""

    def __init__(self, items: list[ImageItem], transform: Callable[[Image.Image], Any]) -> None:
        self.items = items
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[int, Any, str]:
        item = self.items[index]
        try:
            image = decode(read_image_bytes(item), item.uri)
            return index, self.transform(image), ""
        except ImageError as exc:
            return index, None, str(exc)
        except Exception as exc:  # a transform failing on an odd image is a reject, not a crash
            return index, None, f"image does not preprocess: {type(exc).__name__}: {stable_reason(exc)}"


def collate(batch: list[tuple[int, Any, str]]) -> dict[str, Any]:
    """Stack the images that loaded; keep the indices and reasons of those that did not."""
    import torch

    good = [(i, x) for i, x, _ in batch if x is not None]
    return {
        "indices": [i for i, _ in good],
        "pixels": torch.stack([x for _, x in good]) if good else None,
        "failed": [(i, reason) for i, x, reason in batch if x is None],
    }
