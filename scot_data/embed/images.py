"""Image loading for DataLoader workers: local files, ``tar://shard#member`` (read by byte
offset, the shard indexed once in the main process) and any fsspec URL.

Everything here is picklable (plain records and module-level functions), so it runs in
worker processes under fork or spawn. A bad image never raises out of a worker: it comes
back as a reason, which the stage writes to rejects.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from scot_data.captions.images import ImageError, decode, read_tar_member, stable_reason
from scot_data.captions.records import TarMember

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


class ImageDataset(torch.utils.data.Dataset):
    """Item i -> (i, pixels or None, reject reason); decoding and transform run in workers."""

    def __init__(self, items: list[ImageItem], transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.items = items
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, str]:
        item = self.items[index]
        try:
            image = decode(read_image_bytes(item), item.uri)
            return index, self.transform(image), ""
        except ImageError as exc:
            return index, None, str(exc)
        except Exception as exc:  # a transform failing on an odd image is a reject, not a crash
            return index, None, f"image does not preprocess: {type(exc).__name__}: {stable_reason(exc)}"


def collate(batch: list[tuple[int, torch.Tensor | None, str]]) -> dict[str, Any]:
    """Stack the images that loaded; keep the indices and reasons of those that did not."""
    good = [(i, x) for i, x, _ in batch if x is not None]
    return {
        "indices": [i for i, _ in good],
        "pixels": torch.stack([x for _, x in good]) if good else None,
        "failed": [(i, reason) for i, x, reason in batch if x is None],
    }
