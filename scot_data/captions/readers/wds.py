"""img2dataset-style WebDataset tars: samples grouped by key, image + ``.txt`` and/or ``.json``.

Only member headers and the small caption members are read here; image members are
located by byte offset so a worker can decode each one without re-reading the tar.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

from braceexpand import braceexpand

from scot_data.captions.config import WdsCaptions
from scot_data.captions.readers.common import candidate_or_reject, require_path
from scot_data.captions.records import Candidate, Reject, TarMember
from scot_data.errors import ScotInputError
from scot_data.manifest import InputRef, fingerprint_input

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")


def shard_paths(pattern: str) -> list[Path]:
    """Expand a brace pattern into shard paths; every shard must exist."""
    paths = [Path(p) for p in braceexpand(pattern)]
    if not paths:
        raise ScotInputError(f"no shards in pattern {pattern!r}")
    for path in paths:
        require_path(path, "WebDataset shard")
    return paths


def wds_inputs(cfg: WdsCaptions) -> list[InputRef]:
    """Every shard, by content."""
    return [fingerprint_input(p) for p in shard_paths(cfg.input)]


def _split_key(name: str) -> tuple[str, str]:
    """WebDataset convention: the key is the name up to the first dot of the basename."""
    directory, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    key = f"{directory}/{stem}" if directory else stem
    return key, ext.lower()


def _group_members(tar: tarfile.TarFile) -> tuple[dict[str, dict[str, tarfile.TarInfo]], str | None]:
    """Members by sample key, then by extension, in tar order, and the error that cut a
    damaged tar short (the samples before it are still usable)."""
    samples: dict[str, dict[str, tarfile.TarInfo]] = {}
    try:
        for info in tar:
            if info.isfile():
                key, ext = _split_key(info.name)
                samples.setdefault(key, {})[ext] = info
    except (tarfile.TarError, OSError, EOFError) as exc:
        return samples, f"unreadable tar after {len(samples)} samples: {exc}"
    return samples, None


def _caption(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], caption_key: str) -> object:
    """The caption from ``.txt``, else from the ``.json`` field; raises ValueError on bad JSON."""
    if "txt" in members:
        return tar.extractfile(members["txt"]).read().decode("utf-8")  # type: ignore[union-attr]
    if "json" in members:
        meta = json.loads(tar.extractfile(members["json"]).read().decode("utf-8"))  # type: ignore[union-attr]
        if not isinstance(meta, dict):
            raise ValueError("json member is not an object")
        return meta.get(caption_key)
    return None


def _scan_shard(cfg: WdsCaptions, path: Path) -> Iterator[Candidate | Reject]:
    file = str(path.resolve())
    try:
        tar = tarfile.open(path, "r:")
    except (tarfile.TarError, OSError) as exc:
        yield Reject(file, "tar", f"unreadable tar: {exc}")
        return
    with tar:
        samples, error = _group_members(tar)
        for key, members in samples.items():
            yield _sample(cfg, tar, path, key, members)
        if error is not None:
            yield Reject(file, "tar", error)


def _sample(
    cfg: WdsCaptions, tar: tarfile.TarFile, path: Path, key: str, members: dict[str, tarfile.TarInfo]
) -> Candidate | Reject:
    """One sample as a candidate, or the reason it cannot be one."""
    file, record = str(path.resolve()), f"key {key}"
    image = next((members[e] for e in IMAGE_EXTENSIONS if e in members), None)
    if image is None:
        return Reject(file, record, "no image member (.jpg/.jpeg/.png/.webp)")
    try:
        caption = _caption(tar, members, cfg.caption_key)
    except (ValueError, UnicodeDecodeError, tarfile.TarError, OSError) as exc:
        return Reject(file, record, f"malformed caption member: {exc}")
    if caption is None:
        return Reject(file, record, f"no .txt member and no '{cfg.caption_key}' in .json")
    ref = TarMember(file, image.name, image.offset_data, image.size)
    return candidate_or_reject(cfg.source_name, f"{path.name}#{image.name}", caption, ref, file, record)


def scan_wds(cfg: WdsCaptions) -> Iterator[Candidate | Reject]:
    """Yield candidates shard by shard, in pattern order."""
    for path in shard_paths(cfg.input):
        yield from _scan_shard(cfg, path)
