"""``scot verify DIR`` and ``scot publish DIR URL``: check a finished stage output, and copy
it anywhere fsspec reaches (local paths, ``s3://``, ``gs://``...), manifest last.

``verify`` works on any stage's directory (every file the manifest lists: present, same
size, same sha256, same row count for Parquet); for an embeddings directory it also reads
every vector (dims, float16, NaN/inf, unit norm) and every WebDataset shard (only ``.npy``
and ``.json`` members, loaded with ``allow_pickle=False``, ids and arrays agree). Each
problem is one line naming the file. It takes a local path or an fsspec URL, so a
published copy can be checked where it lies.

``publish`` refuses a directory that does not verify, skips files already at the
destination with the same size and sha256 (by the remote manifest, else by hashing the
remote bytes), checks every upload by reading it back, and writes the manifest last, so a
reader never sees a manifest whose files are not all there. Re-running a killed publish
uploads only what is missing. To ``hf://datasets/OWNER/NAME[/PREFIX]`` (huggingface_hub's
``HfFileSystem``, one commit per file) it then writes the repository's dataset card from
every manifest there (``scot_data.hub``).
"""

from __future__ import annotations

import io
import json
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scot_data import hub, stages
from scot_data.errors import ScotInputError
from scot_data.hashing import sha256_file, sha256_stream
from scot_data.outdir import refuse_if_writing

MANIFEST_NAME = "manifest.json"
NORM_TOLERANCE = 0.02  # float16 rounding of a unit vector stays far inside this


class PublishError(Exception):
    """An upload did not read back with the sha256 it was sent with."""


def _fs(url: str | Path, storage_options: dict[str, Any] | None = None) -> tuple[Any, str]:
    import fsspec

    try:
        fs, root = fsspec.core.url_to_fs(str(url), **(storage_options or {}))
    except (ValueError, ImportError) as exc:  # an unknown protocol, or one whose package is missing
        raise ScotInputError(f"{url}: {' '.join(str(exc).split())}") from None
    return fs, root.rstrip("/")


def _sha256(fs: Any, path: str) -> str:
    with fs.open(path, "rb") as handle:
        return sha256_stream(handle)


def _read_manifest(fs: Any, root: str) -> dict[str, Any] | None:
    path = posixpath.join(root, MANIFEST_NAME)
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as handle:
        return json.loads(handle.read())


def verify(
    directory: str | Path, storage_options: dict[str, Any] | None = None, deep: bool = True
) -> list[str]:
    """Every problem found in a finished stage directory (empty when it is sound)."""
    if "://" not in str(directory):
        try:
            refuse_if_writing(directory)
        except ScotInputError as busy:
            return [str(busy)]
    fs, root = _fs(directory, storage_options)
    try:
        manifest = _read_manifest(fs, root)
    except (OSError, ValueError) as exc:
        return [f"{directory}/{MANIFEST_NAME}: unreadable ({exc})"]
    if manifest is None:
        return [f"{directory}/{MANIFEST_NAME}: missing (the stage has not finished there)"]
    problems: list[str] = []
    embeddings = manifest.get("stage") == stages.EMBED
    dim = int(manifest.get("embedding", {}).get("dim", 0)) if embeddings else 0
    shard_rows = {s["name"]: s for s in manifest.get("shards", [])}
    for name, meta in sorted(manifest.get("outputs", {}).items()):
        path = posixpath.join(root, name)
        shown = f"{directory}/{name}"
        if not fs.exists(path):
            problems.append(f"{shown}: missing")
            continue
        size = fs.size(path)
        if size != meta["bytes"]:
            problems.append(f"{shown}: {size} bytes, manifest says {meta['bytes']} (truncated or altered)")
            continue
        if _sha256(fs, path) != meta["sha256"]:
            problems.append(f"{shown}: sha256 differs from the manifest (altered)")
            continue
        if not deep:
            continue
        try:
            if name.endswith(".parquet"):
                problems += _check_parquet(fs, path, shown, meta.get("rows"), dim if _is_vectors(name) else 0)
            elif name.endswith(".tar") and embeddings:
                problems += _check_shard(fs, path, shown, meta.get("rows"), dim, shard_rows.get(name))
        except Exception as exc:  # a file that cannot be parsed is a problem to report, not a crash
            problems.append(f"{shown}: unreadable ({type(exc).__name__}: {exc})")
    return problems


def _is_vectors(name: str) -> bool:
    return name.startswith(("images/", "texts/"))


def _check_vectors(matrix: np.ndarray, shown: str, where: str = "") -> list[str]:
    problems = []
    finite = np.isfinite(matrix).all(axis=1)
    if not finite.all():
        first = int(np.flatnonzero(~finite)[0])
        problems.append(f"{shown}{where}: {int((~finite).sum())} rows with NaN/inf (first row {first})")
    norms = np.linalg.norm(matrix[finite].astype(np.float32), axis=1)
    off = np.flatnonzero(np.abs(norms - 1.0) > NORM_TOLERANCE)
    if len(off):
        problems.append(f"{shown}{where}: {len(off)} rows not unit length (e.g. norm {norms[off[0]]:.3f})")
    return problems


def _check_parquet(fs: Any, path: str, shown: str, rows: int | None, dim: int) -> list[str]:
    import pyarrow.parquet as pq

    from scot_data.embed.records import table_dim, to_matrix

    with fs.open(path, "rb") as handle:
        table = pq.read_table(io.BytesIO(handle.read()))
    problems = []
    if rows is not None and table.num_rows != rows:
        problems.append(f"{shown}: {table.num_rows} rows, manifest says {rows}")
    if dim:
        if "embedding" not in table.column_names:
            return problems + [f"{shown}: no embedding column"]
        if table_dim(table.schema) != dim:
            problems.append(f"{shown}: embedding dim {table_dim(table.schema)}, manifest says {dim}")
            return problems
        id_column = table.column(0)
        if id_column.null_count or len(set(id_column.to_pylist())) != table.num_rows:
            problems.append(f"{shown}: null or duplicate ids in {table.column_names[0]}")
        problems += _check_vectors(to_matrix(table.column("embedding")), shown)
    return problems


def _check_shard(
    fs: Any, path: str, shown: str, rows: int | None, dim: int, listed: dict[str, Any] | None
) -> list[str]:
    from scot_data.embed.shards import read_blocks

    problems: list[str] = []
    total = blocks = 0
    with fs.open(path, "rb") as handle:
        for block in read_blocks(shown, handle):
            blocks += 1
            total += len(block.ids)
            if block.embeddings.shape[1] != dim:
                got = block.embeddings.shape[1]
                problems.append(f"{shown}: sample {block.key}: dim {got}, manifest says {dim}")
            if block.texts is not None and len(block.texts) != len(block.ids):
                counts = f"{len(block.texts)} texts for {len(block.ids)} ids"
                problems.append(f"{shown}: sample {block.key}: {counts}")
            problems += _check_vectors(block.embeddings, shown, f" sample {block.key}")
    if rows is not None and total != rows:
        problems.append(f"{shown}: {total} rows, manifest says {rows}")
    if listed is not None and blocks != listed.get("blocks", blocks):
        problems.append(f"{shown}: {blocks} samples, manifest says {listed['blocks']}")
    return problems


# ----------------------------------------------------------------------------- publish


@dataclass
class PublishSummary:
    source: str
    destination: str
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes_uploaded: int = 0
    card: str | None = None  # hf:// only: "written", "unchanged" or why it was kept


def _put(fs: Any, local: Path, remote: str, atomic: bool) -> None:
    parent = posixpath.dirname(remote)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    if atomic:  # a plain filesystem: copy beside, then rename, so no half file gets the name
        tmp = remote + ".tmp-publish"
        fs.put_file(str(local), tmp)
        fs.mv(tmp, remote)
    else:  # object stores make an object visible only once its upload completed
        fs.put_file(str(local), remote)


def publish(
    directory: str | Path,
    url: str,
    storage_options: dict[str, Any] | None = None,
    license: str | None = None,
) -> PublishSummary:
    """Copy a verified stage directory to ``url``; see the module docstring. An ``hf://``
    URL also gets its dataset card (``scot_data.hub``), with ``license`` or the card's own."""
    target = hub.hub_target(url)
    if license is not None and target is None:
        raise ScotInputError(f"--license: only an hf://datasets/... destination gets a dataset card ({url})")
    hub.check_license(license)
    source = Path(directory)
    problems = verify(source)
    if problems:
        raise ScotInputError(f"{source} does not verify, not publishing: " + "; ".join(problems[:5]))
    fs, root = _fs(url, storage_options)
    if target is None:
        return _copy(fs, root, source, url)
    repo_root = _fs(target.repo_url, storage_options)[1]
    with hub.hub_errors(url):
        fs.invalidate_cache()
        hub.check_repo(fs, repo_root, target, url)
        summary = _copy(fs, root, source, url)
        summary.card = _write_card(fs, repo_root, target, license)
    return summary


def _copy(fs: Any, root: str, source: Path, url: str) -> PublishSummary:
    """Every file the manifest lists that is not already there, then the manifest."""
    manifest = json.loads((source / MANIFEST_NAME).read_text(encoding="utf-8"))
    fs.invalidate_cache()
    if fs.isfile(root):
        raise ScotInputError(f"{url}: a file is in the way of the destination folder")
    atomic = "file" in (fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,))
    remote_manifest = _read_manifest(fs, root)
    known = (remote_manifest or {}).get("outputs", {})
    if remote_manifest is not None and remote_manifest != manifest:
        fs.rm(posixpath.join(root, MANIFEST_NAME))  # it describes other files; readers must not trust it now
    summary = PublishSummary(str(source), url)
    for name, meta in sorted(manifest["outputs"].items()):
        remote = posixpath.join(root, name)
        if fs.exists(remote) and fs.size(remote) == meta["bytes"]:
            listed = known.get(name, {}).get("sha256") == meta["sha256"]
            same = listed or _sha256(fs, remote) == meta["sha256"]
            if same:
                summary.skipped.append(name)
                continue
        _put(fs, source / name, remote, atomic)
        fs.invalidate_cache()
        if _sha256(fs, remote) != meta["sha256"]:
            raise PublishError(f"{url}/{name}: read back with a different sha256 than {source / name}")
        summary.uploaded.append(name)
        summary.bytes_uploaded += meta["bytes"]
    remote = posixpath.join(root, MANIFEST_NAME)
    if remote_manifest == manifest and not summary.uploaded:
        summary.skipped.append(MANIFEST_NAME)
        return summary
    _put(fs, source / MANIFEST_NAME, remote, atomic)
    fs.invalidate_cache()
    if _sha256(fs, remote) != sha256_file(source / MANIFEST_NAME):
        raise PublishError(f"{url}/{MANIFEST_NAME}: read back differently")
    summary.uploaded.append(MANIFEST_NAME)
    return summary


def _write_card(fs: Any, repo_root: str, target: hub.HubTarget, license: str | None) -> str:
    """The repository's README.md rendered from every manifest there, written after them
    (a card never describes a folder whose manifest is not up yet) and read back."""
    path = posixpath.join(repo_root, hub.CARD_NAME)
    old = fs.cat_file(path).decode("utf-8") if fs.exists(path) else None
    if old is not None and hub.MARKER not in old:
        return f"kept ({hub.CARD_NAME} was not written by scot)"
    text = hub.render_card(target.repo_id, hub.read_folders(fs, repo_root),
                           license or hub.card_license(old) or "unknown")  # fmt: skip
    if text == old:
        return "unchanged"
    fs.pipe_file(path, text.encode("utf-8"))
    fs.invalidate_cache()
    if fs.cat_file(path).decode("utf-8") != text:
        raise PublishError(f"{target.repo_url}/{hub.CARD_NAME}: read back differently")
    return "written"
