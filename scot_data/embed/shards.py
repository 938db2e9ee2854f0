"""WebDataset shards of embeddings: blocks of rows per sample, bounded by rows and bytes.

A sample is one block: ``<key>.npy`` (an (rows, dim) float16 array, ``np.save`` format,
never pickled) and ``<key>.json`` (``kind``, ``dim``, ``dtype``, ``rows``, ``ids`` and, for
texts, ``texts``). One embedding per sample would make shards 5x larger and 60x slower to
read (``shared/DESIGN.md`` section 5). Tars are written deterministically (zero mtimes and
owners), named by the ids they hold, so an unchanged shard keeps its name and is not
rewritten by an incremental run.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scot_data import ids
from scot_data.atomic import atomic_path
from scot_data.embed.records import DTYPE
from scot_data.errors import ScotInputError
from scot_data.hashing import HASH_BELOW_BYTES
from scot_data.outdir import refuse_if_writing

TAR_BLOCK = 512
TAR_RECORD = 10240  # tarfile pads an archive to a multiple of this
NPY_HEADER_MAX = 128  # a 2-D float16 .npy header (magic + dict, padded) is 128 bytes
JSON_BASE_MAX = 160  # the block's JSON without its id and text lists
ALLOWED_SUFFIXES = (".npy", ".json")


@dataclass(frozen=True)
class ShardPlan:
    """One shard to write: its name and the [start, end) row ranges of its blocks."""

    name: str
    kind: str
    blocks: tuple[tuple[int, int], ...]

    @property
    def rows(self) -> int:
        return self.blocks[-1][1] - self.blocks[0][0] if self.blocks else 0


@dataclass
class WdsBlock:
    """One sample read back from a shard."""

    shard: str
    key: str
    kind: str
    ids: list[str]
    embeddings: np.ndarray
    texts: list[str] | None = None


def _padded(size: int) -> int:
    return -(-size // TAR_BLOCK) * TAR_BLOCK


def json_cost(value: str) -> int:
    """Bytes ``value`` adds to a JSON list (the string and one separator)."""
    return len(json.dumps(value, ensure_ascii=False).encode("utf-8")) + 1


def block_bytes_bound(rows: int, dim: int, json_bytes: int) -> int:
    """An upper bound on the tar bytes of one block (two headers, two padded members)."""
    npy = NPY_HEADER_MAX + rows * dim * DTYPE.itemsize
    return 2 * TAR_BLOCK + _padded(npy) + _padded(JSON_BASE_MAX + json_bytes)


def shard_bytes_bound(block_bytes: int) -> int:
    """An upper bound on a tar's size: its blocks, the end-of-archive blocks, record padding."""
    return -(-(block_bytes + 2 * TAR_BLOCK) // TAR_RECORD) * TAR_RECORD


def plan_shards(
    kind: str,
    row_ids: Sequence[str],
    row_json_costs: Sequence[int],
    dim: int,
    encoder_key: str,
    block_rows: int,
    max_rows: int,
    max_bytes: int,
) -> list[ShardPlan]:
    """Cut rows (in order) into blocks and shards within both bounds, greedily."""
    shards: list[list[tuple[int, int]]] = []
    blocks: list[tuple[int, int]] = []  # closed blocks of the open shard
    closed_bytes = shard_rows = 0
    start, block_json = 0, 0
    for i, cost in enumerate(row_json_costs):
        rows = i - start + 1
        fits = (
            rows <= block_rows
            and shard_rows + rows <= max_rows
            and shard_bytes_bound(closed_bytes + block_bytes_bound(rows, dim, block_json + cost)) <= max_bytes
        )
        if not fits:
            if i > start:  # close the block, and the shard if the block was cut by a shard bound
                blocks.append((start, i))
                closed_bytes += block_bytes_bound(i - start, dim, block_json)
                shard_rows += i - start
                start, block_json = i, 0
                shard_full = shard_rows + 1 > max_rows or shard_bytes_bound(
                    closed_bytes + block_bytes_bound(1, dim, cost)
                ) > max_bytes
            else:
                shard_full = True
            if shard_full:
                if not blocks:
                    raise ValueError(f"shard_max_bytes={max_bytes} cannot hold a single {dim}-d row")
                shards.append(blocks)
                blocks, closed_bytes, shard_rows = [], 0, 0
                if shard_bytes_bound(block_bytes_bound(1, dim, cost)) > max_bytes:
                    raise ValueError(f"shard_max_bytes={max_bytes} cannot hold a single {dim}-d row")
        block_json += cost
    if len(row_json_costs) > start:
        blocks.append((start, len(row_json_costs)))
    if blocks:
        shards.append(blocks)
    plans = []
    for shard_blocks in shards:
        first, last = shard_blocks[0][0], shard_blocks[-1][1]
        layout = ",".join(f"{b - a}" for a, b in shard_blocks)
        key = ids.stable_id("wds", encoder_key, kind, layout, *row_ids[first:last])
        plans.append(ShardPlan(f"wds/{kind}-{key}.tar", kind, tuple(shard_blocks)))
    return plans


def _member(name: str, data: bytes) -> tuple[tarfile.TarInfo, io.BytesIO]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info, io.BytesIO(data)


def npy_bytes(matrix: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(matrix, dtype=DTYPE), allow_pickle=False)
    return buffer.getvalue()


def block_json(kind: str, dim: int, block_ids: Sequence[str], texts: Sequence[str] | None) -> bytes:
    meta: dict[str, Any] = {"kind": kind, "dim": dim, "dtype": "float16", "rows": len(block_ids),
                            "ids": list(block_ids)}  # fmt: skip
    if texts is not None:
        meta["texts"] = list(texts)
    return json.dumps(meta, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def write_shard(
    path: Path,
    plan: ShardPlan,
    row_ids: Sequence[str],
    matrix_rows: Any,
    texts: Sequence[str] | None,
    dim: int,
) -> None:
    """Write one shard atomically; ``matrix_rows(a, b)`` returns rows [a, b) as float16."""
    stem = Path(plan.name).stem
    with atomic_path(path) as tmp, tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        for number, (a, b) in enumerate(plan.blocks):
            key = f"{stem}-{number:05d}"
            tar.addfile(*_member(f"{key}.npy", npy_bytes(matrix_rows(a, b))))
            block_texts = None if texts is None else texts[a:b]
            tar.addfile(*_member(f"{key}.json", block_json(plan.kind, dim, row_ids[a:b], block_texts)))


def _open(url: str, storage_options: dict[str, Any] | None) -> Any:
    import fsspec

    return fsspec.open(url, "rb", **(storage_options or {}))


def shard_urls(
    source: str | Path, kind: str | None = None, storage_options: dict[str, Any] | None = None
) -> list[str]:
    """The shard URLs a finished embeddings directory (local or any fsspec URL) lists; a
    folder without a manifest is named, since it is usually a mistyped or unfinished path."""
    return list(_listed_shards(source, kind, storage_options))


def _listed_shards(
    source: str | Path, kind: str | None, storage_options: dict[str, Any] | None
) -> dict[str, dict[str, Any]]:
    """Each listed shard's URL -> its manifest entry (sha256, bytes)."""
    base = str(source).rstrip("/")
    if "://" not in base:
        refuse_if_writing(base)
    try:
        with _open(f"{base}/manifest.json", storage_options) as handle:
            manifest = json.loads(handle.read())
    except FileNotFoundError:
        raise ScotInputError(f"{base}: no manifest.json (not a finished embed directory)") from None
    outputs = manifest.get("outputs", {})
    return {f"{base}/{s['name']}": outputs.get(s["name"], {})
            for s in manifest.get("shards", []) if kind is None or s["kind"] == kind}  # fmt: skip


def read_blocks(url: str, handle: Any) -> Iterator[WdsBlock]:
    """Blocks of one open tar stream; refuses anything but .npy and .json members."""
    pending: dict[str, dict[str, bytes]] = {}
    with tarfile.open(fileobj=handle, mode="r|") as tar:
        for info in tar:
            if not info.isfile():
                raise ValueError(f"{url}: member {info.name!r} is not a regular file")
            key, dot, suffix = info.name.partition(".")
            if "." + suffix not in ALLOWED_SUFFIXES:
                raise ValueError(
                    f"{url}: member {info.name!r} is not .npy or .json (refused, never unpickled)"
                )
            extracted = tar.extractfile(info)
            assert extracted is not None
            data = extracted.read()
            members = pending.setdefault(key, {})
            members[suffix] = data
            if len(members) == 2:
                del pending[key]
                yield _to_block(url, key, members)
    if pending:
        raise ValueError(f"{url}: incomplete samples {sorted(pending)[:3]} (each needs .npy and .json)")


def _to_block(url: str, key: str, members: dict[str, bytes]) -> WdsBlock:
    meta = json.loads(members["json"])
    matrix = np.load(io.BytesIO(members["npy"]), allow_pickle=False)
    if matrix.dtype != DTYPE or matrix.ndim != 2 or matrix.shape != (len(meta["ids"]), meta["dim"]):
        raise ValueError(
            f"{url}: sample {key}: array {matrix.dtype} {matrix.shape} does not match "
            f"{len(meta['ids'])} ids x {meta['dim']} float16"
        )
    finite = np.isfinite(matrix).all(axis=1)
    if not finite.all():
        row = int(np.argmin(finite))
        raise ValueError(f"{url}: sample {key}: row {row} (id {meta['ids'][row]!r}) is NaN or infinite")
    return WdsBlock(url, key, meta["kind"], meta["ids"], matrix, meta.get("texts"))


def iter_wds_blocks(
    source: str | Path | Iterable[str | Path],
    kind: str | None = None,
    storage_options: dict[str, Any] | None = None,
    shuffle_shards: bool = False,
    seed: int = 0,
) -> Iterator[WdsBlock]:
    """Stream embedding blocks from WebDataset shards, one shard open at a time.

    ``source`` is an embeddings directory or URL (its manifest lists the shards; ``kind``
    picks ``images`` or ``texts``) or an explicit list of shard paths/URLs. Memory use is one
    block, so sets larger than memory stream through. ``shuffle_shards`` permutes the shard
    order by ``seed`` (blocks within a shard keep their order).

    Every vector must be finite. A shard the manifest lists must also match its size and
    sha256: one below ``HASH_BELOW_BYTES`` is checked before any of its blocks is yielded;
    a larger one is hashed as it streams and refused at its end, before the next shard.
    """
    if isinstance(source, (str, Path)):
        shards = _listed_shards(source, kind, storage_options)
    else:
        shards = {str(u): {} for u in source}
    urls = list(shards)
    if shuffle_shards:
        urls = [urls[i] for i in np.random.default_rng(seed).permutation(len(urls))]
    for url in urls:
        for block in _checked_blocks(url, shards[url], storage_options):
            if kind is None or block.kind == kind:
                yield block


def _checked_blocks(
    url: str, meta: dict[str, Any], storage_options: dict[str, Any] | None
) -> Iterator[WdsBlock]:
    """One shard's blocks, its bytes checked against its manifest entry ``meta`` (if any)."""
    with _open(url, storage_options) as handle:
        if not meta:
            yield from read_blocks(url, handle)
            return
        if meta["bytes"] < HASH_BELOW_BYTES:
            data = handle.read(meta["bytes"] + 1)
            _check_shard(url, meta, len(data), hashlib.sha256(data).hexdigest())
            yield from read_blocks(url, io.BytesIO(data))
            return
        hashed = _HashingReader(handle)
        yield from read_blocks(url, hashed)
        hashed.drain()
        _check_shard(url, meta, hashed.size, hashed.digest.hexdigest())


def _check_shard(url: str, meta: dict[str, Any], size: int, sha256: str) -> None:
    if size != meta["bytes"]:
        raise ValueError(f"{url}: {size} bytes, manifest says {meta['bytes']} (truncated or altered)")
    if sha256 != meta["sha256"]:
        raise ValueError(f"{url}: sha256 differs from the manifest (altered; run scot verify)")


class _HashingReader:
    """A read-only stream that hashes and counts what passes through it."""

    def __init__(self, handle: Any) -> None:
        self.handle, self.digest, self.size = handle, hashlib.sha256(), 0

    def read(self, n: int = -1) -> bytes:
        data = self.handle.read(n)
        self.digest.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        """Read what the tar reader left (its end-of-archive padding), so the whole file is hashed."""
        while self.read(1 << 20):
            pass
