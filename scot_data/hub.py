"""``scot publish DIR hf://datasets/OWNER/NAME[/PREFIX]``: the Hugging Face Hub as a destination.

The copy is ``verify.publish``'s own (through huggingface_hub's fsspec ``HfFileSystem``:
files already there are skipped, each upload is read back, the manifest goes last). This
module adds what the Hub needs on top of it: the URL checked before any work (a model or
space URL, a missing name, a revision or a ``..`` is one line), the Hub's refusals and
network failures turned into one line, and the dataset card.

The card is ``README.md`` at the repository root, rendered again after every publish from
every stage folder in the repository (each ``manifest.json`` found there), so one repository
can hold captions, triplets and embeddings under their own prefixes and a single card
describes them all. Its YAML front matter gives ``datasets`` one config per Parquet table
(a glob when the remote folder holds exactly the manifest's parts, else the listed files,
so stale parts of an older publish are never read), plus ``license``, ``task_categories``,
``tags`` and ``size_categories``; its body gives each table's columns, the encoder that
made the vectors, the row counts and how to load them. A README that scot did not write
(no ``MARKER`` line) is left alone. The token is huggingface_hub's own (``HF_TOKEN`` or
``hf auth login``): scot never reads it.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import yaml

from scot_data import stages
from scot_data.errors import ScotInputError

HF_SCHEME = "hf://"
CARD_NAME = "README.md"
MANIFEST_NAME = "manifest.json"
MARKER = "<!-- scot publish wrote this card from the manifests; delete this line to keep your own edits -->"
REPO_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
LICENSE = re.compile(r"[a-z0-9][a-z0-9.+-]*")
USAGE = "expected hf://datasets/OWNER/NAME[/PREFIX]"
# table -> (the table it is a split of, split name): the captions stage's held-out rows
SPLITS = {"holdout": ("captions", "holdout")}
TASKS = {
    stages.CAPTIONS: ["image-to-text", "text-to-image"],
    stages.TRIPLETS: ["image-to-image", "text-to-image"],
    stages.EMBED: ["image-feature-extraction", "feature-extraction"],
}
# the Hub's size_categories labels, by the row count they stop below
SIZES = [(10**3, "n<1K"), (10**4, "1K<n<10K"), (10**5, "10K<n<100K"), (10**6, "100K<n<1M"),
         (10**7, "1M<n<10M"), (10**8, "10M<n<100M"), (10**9, "100M<n<1B"), (10**10, "1B<n<10B"),
         (10**11, "10B<n<100B"), (10**12, "100B<n<1T")]  # fmt: skip


@dataclass(frozen=True)
class HubTarget:
    """Where in which dataset repository a stage folder goes."""

    repo_id: str
    prefix: str

    @property
    def repo_url(self) -> str:
        return f"{HF_SCHEME}datasets/{self.repo_id}"


def hub_target(url: str) -> HubTarget | None:
    """The dataset repository and prefix of an ``hf://`` URL; None for any other URL."""
    if not url.startswith(HF_SCHEME):
        return None
    kind, _, rest = url[len(HF_SCHEME) :].strip("/").partition("/")
    if kind != "datasets":
        raise ScotInputError(f"{url}: scot publishes to dataset repositories only; {USAGE}")
    if "@" in rest:
        raise ScotInputError(f"{url}: a revision (@...) is not supported, publish writes main; {USAGE}")
    if rest.count("/") < 1:
        raise ScotInputError(f"{url}: OWNER/NAME missing; {USAGE}")
    owner, name, *prefix = rest.split("/")
    for part in (owner, name):
        if not REPO_PART.fullmatch(part):
            raise ScotInputError(f"{url}: {part!r} is not a repository owner or name; {USAGE}")
    if any(p in ("", ".", "..") for p in prefix):
        raise ScotInputError(f"{url}: the prefix may not hold empty, '.' or '..' parts; {USAGE}")
    return HubTarget(f"{owner}/{name}", "/".join(prefix))


def check_license(license: str | None) -> None:
    """A Hub license id (``cc-by-4.0``, ``mit``, ``other``...), checked for its form only:
    the Hub refuses a card with an unknown one, and that refusal is reported in one line."""
    if license is not None and not LICENSE.fullmatch(license):
        raise ScotInputError(f"--license {license!r}: not a license id like cc-by-4.0, mit or other")


@contextmanager
def hub_errors(url: str) -> Iterator[None]:
    """The Hub's refusals (401, 403, 404, a rejected card), offline mode and a network that
    fails, as one line naming the URL. huggingface_hub's own errors are OSErrors; a failed
    connection is its HTTP library's ``HTTPError``, which ``huggingface_hub.errors`` names."""
    from huggingface_hub import errors

    transport = getattr(errors, "HTTPError", OSError)
    try:
        yield
    except (OSError, transport) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ScotInputError(f"{url}: the Hub refused or could not be reached ({reason[:300]})") from None


def check_repo(fs: Any, repo_root: str, target: HubTarget, url: str) -> None:
    """Refuse, in one line, a repository that does not exist or that the token cannot see."""
    try:
        fs.info(repo_root)
    except FileNotFoundError:
        raise ScotInputError(
            f"{url}: no dataset repository {target.repo_id} that this token can see (create it with `hf "
            f"repos create {target.repo_id} --repo-type dataset`; the token is HF_TOKEN or `hf auth login`'s)"
        ) from None


# ----------------------------------------------------------------------------- the card


@dataclass(frozen=True)
class Folder:
    """A finished stage folder in the repository: its prefix (``""`` at the root), its
    manifest, its tables' columns as (name, type) and every file under it (relative)."""

    prefix: str
    manifest: dict[str, Any]
    columns: dict[str, list[tuple[str, str]]]
    files: frozenset[str]


def tables(outputs: dict[str, Any]) -> dict[str, list[str]]:
    """A manifest's Parquet files by table: ``X.parquet`` is table X, the files under ``D/``
    are table D, except where ``D.parquet`` exists (then ``D/`` holds its per-part pieces)."""
    top = {n.removesuffix(".parquet") for n in outputs if n.endswith(".parquet") and "/" not in n}
    found: dict[str, list[str]] = {}
    for name in sorted(n for n in outputs if n.endswith(".parquet")):
        table = name.split("/")[0] if "/" in name else name.removesuffix(".parquet")
        if "/" not in name or table not in top:
            found.setdefault(table, []).append(name)
    return dict(sorted(found.items(), key=lambda item: (item[0] == "rejects", item[0])))


def read_folders(fs: Any, repo_root: str) -> list[Folder]:
    """Every stage folder published in the repository, with one schema read per table
    (a Parquet footer: a few ranged reads on the Hub)."""
    names = sorted(p[len(repo_root) :].lstrip("/") for p in fs.find(repo_root))
    folders = []
    for name in names:
        if posixpath.basename(name) != MANIFEST_NAME:
            continue
        prefix = posixpath.dirname(name)
        with fs.open(posixpath.join(repo_root, name), "rb") as handle:
            manifest = json.loads(handle.read())
        if not isinstance(manifest, dict) or not isinstance(manifest.get("outputs"), dict):
            continue
        under = f"{prefix}/" if prefix else ""
        files = frozenset(n[len(under) :] for n in names if n.startswith(under))
        columns = {
            table: _columns(fs, posixpath.join(repo_root, prefix, parts[0]))
            for table, parts in tables(manifest["outputs"]).items()
            if parts[0] in files
        }
        folders.append(Folder(prefix, manifest, columns, files))
    return folders


def _columns(fs: Any, path: str) -> list[tuple[str, str]]:
    import pyarrow.parquet as pq

    with fs.open(path, "rb") as handle:
        schema = pq.read_schema(handle)
    described = []
    for column in schema:
        meta = column.metadata or {}
        shape = ""
        if b"dim" in meta:
            shape = f" ({meta[b'dtype'].decode()} x {meta[b'dim'].decode()}, little-endian)"
        described.append((column.name, f"{column.type}{shape}"))
    return described


def card_license(card: str | None) -> str | None:
    """The ``license`` of a card's front matter (kept when a later publish names none)."""
    if not card or not card.startswith("---\n"):
        return None
    front = yaml.safe_load(card[4:].split("\n---\n", 1)[0])
    return front.get("license") if isinstance(front, dict) else None


def config_name(prefix: str, table: str) -> str:
    """``table`` at the root; else the prefix's parts and the table (``runs-demo-embed-images``),
    the table left out where the last part already names it (``triplets/``: ``triplets``)."""
    parts = prefix.split("/") if prefix else []
    return "-".join(parts if parts and parts[-1] == table else [*parts, table])


def placement(folder: Folder, table: str) -> tuple[str, str] | None:
    """The config and split a table is loaded as; None for an empty table (``datasets``
    cannot read a Parquet file of no rows, so an empty table gets no config)."""
    found = tables(folder.manifest["outputs"])
    if _rows(folder.manifest, found[table]) == 0:
        return None
    parent, split = SPLITS.get(table, (table, "train"))
    if parent not in found:
        parent, split = table, "train"
    return config_name(folder.prefix, parent), split


def _data_files(folder: Folder, parts: list[str]) -> str | list[str]:
    """A glob for a folder of parts when it matches exactly the manifest's parts, else the list."""
    directory = posixpath.dirname(parts[0])
    present = {f for f in folder.files if posixpath.dirname(f) == directory and f.endswith(".parquet")}
    if directory and present == set(parts):
        return posixpath.join(folder.prefix, directory, "*.parquet")
    listed = [posixpath.join(folder.prefix, p) for p in parts]
    return listed[0] if len(listed) == 1 else listed


def configs(folder: Folder) -> list[dict[str, Any]]:
    """The folder's ``configs`` entries: one per table, a split table under its parent's."""
    entries: dict[str, dict[str, Any]] = {}
    for table, parts in tables(folder.manifest["outputs"]).items():
        placed = placement(folder, table)
        if placed is not None:
            entry = entries.setdefault(placed[0], {"config_name": placed[0], "data_files": []})
            entry["data_files"].append({"split": placed[1], "path": _data_files(folder, parts)})
    return list(entries.values())


def _rows(manifest: dict[str, Any], parts: list[str]) -> int:
    return sum(int(manifest["outputs"][p].get("rows") or 0) for p in parts)


def size_category(rows: int) -> str:
    return next((label for limit, label in SIZES if rows < limit), "n>1T")


def render_card(repo_id: str, folders: list[Folder], license: str) -> str:
    """The whole README.md: YAML front matter for the Hub and ``datasets``, then the body."""
    entries = [entry for folder in folders for entry in configs(folder)]
    if entries:
        entries[0] = {**entries[0], "default": True}
    main_rows = [
        _rows(f.manifest, parts)
        for f in folders
        for table, parts in tables(f.manifest["outputs"]).items()
        if table != "rejects"
    ]
    stage_names = [f.manifest.get("stage", "") for f in folders]
    front = {
        "license": license,
        "task_categories": list(dict.fromkeys(t for s in stage_names for t in TASKS.get(s, []))),
        "tags": list(dict.fromkeys(["scot", "composed-image-retrieval", *stage_names])),
        "size_categories": [size_category(max(main_rows, default=0))],
        "configs": entries,
    }
    body = [MARKER, f"# {repo_id}", "", _intro(repo_id, folders)]
    body += [line for folder in folders for line in _folder_section(folder)]
    body += _load_section(repo_id, folders, entries)
    header = yaml.safe_dump(front, sort_keys=False, allow_unicode=True)
    return f"---\n{header}---\n" + "\n".join(body) + "\n"


def _intro(repo_id: str, folders: list[Folder]) -> str:
    shown = ", ".join(f"`{f.prefix or '.'}` ({f.manifest.get('stage')})" for f in folders)
    return (
        f"Data for zero-shot composed image retrieval written by scot's `scot publish`: {len(folders)} "
        f"finished stage folder(s), {shown}. Each folder's `manifest.json` lists every file with its "
        f"sha256, size and rows; `scot verify hf://datasets/{repo_id}/PREFIX` checks them where they lie."
    )


def _folder_section(folder: Folder) -> list[str]:
    manifest = folder.manifest
    version = manifest.get("code_version", {})
    commit = (version.get("git_commit") or "")[:12] or "unknown"
    lines = [
        "",
        f"## `{folder.prefix or '.'}`: the {manifest.get('stage')} stage",
        "",
        f"Finished {manifest.get('created_at', '?')} by scot {version.get('scot_data', '?')} "
        f"(commit {commit}).",
        "",
    ]
    lines += _encoder_lines(manifest)
    lines += ["| table | config | split | files | rows |", "|---|---|---|---|---|"]
    for table, parts in tables(manifest["outputs"]).items():
        config, split = placement(folder, table) or ("(empty: no config)", "")
        lines.append(f"| {table} | {config} | {split} | {len(parts)} | {_rows(manifest, parts):,} |")
    lines += ["", "Columns:", ""]
    for table, columns in folder.columns.items():
        lines.append(f"- {table}: " + ", ".join(f"`{name}` {kind}" for name, kind in columns))
    others = sorted(n for n in manifest["outputs"] if not n.endswith(".parquet"))
    if others:
        more = f" and {len(others) - 8} more" if len(others) > 8 else ""
        lines += ["", "Other files: " + ", ".join(f"`{n}`" for n in others[:8]) + more + "."]
    config = json.dumps(manifest.get("config", {}), indent=2, sort_keys=True)
    return lines + ["", "<details><summary>stage config</summary>", "", "```json", config, "```", "",
                    "</details>"]  # fmt: skip


def _encoder_lines(manifest: dict[str, Any]) -> list[str]:
    encoder, embedding = manifest.get("encoder"), manifest.get("embedding")
    if not encoder:
        return []
    identity = encoder.get("identity", {})
    keys = ("backend", "model_name", "weights", "weights_sha256")
    known = ", ".join(f"{k} {identity[k]}" for k in keys if k in identity)
    lines = [f"Encoder `{encoder.get('spec')}` ({known}); encoder key `{encoder.get('key')}`."]
    if embedding:
        lines.append(
            f"Vectors: {embedding.get('dim')}-dim {embedding.get('dtype')}, "
            f"{'unit length' if embedding.get('normalised') else 'not normalised'}, stored as "
            "`fixed_size_binary` (little-endian float16 bytes); the WebDataset shards (`wds/`) hold the "
            "same vectors."
        )
    return lines + [""]


def _load_section(repo_id: str, folders: list[Folder], entries: list[dict[str, Any]]) -> list[str]:
    lines = ["", "## Load", "", "```python", "from datasets import load_dataset", ""]
    embedded = [f for f in folders if f.manifest.get("stage") == stages.EMBED and configs(f)]
    if embedded:  # the vectors are float16 bytes: one frombuffer over the whole column
        name = configs(embedded[0])[0]["config_name"]
        lines += ["import numpy as np", "",
                  f'images = load_dataset("{repo_id}", "{name}", split="train").with_format("arrow")',
                  'vectors = np.frombuffer(b"".join(images["embedding"].to_pylist()), dtype="<f2")',
                  "vectors = vectors.reshape(len(images), -1)"]  # fmt: skip
    else:
        first = entries[0]["config_name"] if entries else "CONFIG"
        lines.append(f'table = load_dataset("{repo_id}", "{first}", split="train")')
    lines += ["```", "", "With scot:", "", "```bash"]
    lines += [f"scot verify hf://datasets/{repo_id}/{f.prefix}".rstrip("/") for f in folders]
    local = repo_id.split("/")[1]
    lines.append(f"hf download {repo_id} --repo-type dataset --local-dir {local}   # the folders, as written")
    by_stage = {f.manifest.get("stage"): f.prefix for f in folders}
    if stages.EMBED in by_stage and stages.TRIPLETS in by_stage:
        embed, triplets = (posixpath.join(local, by_stage[s]) for s in (stages.EMBED, stages.TRIPLETS))
        lines.append(f"scot train --embeddings {embed} --triplets {triplets} --out combiner")
    lines.append("```")
    if embedded:
        url = f"hf://datasets/{repo_id}/{embedded[0].prefix}".rstrip("/")
        lines += ["", f'`scot_data.embed.iter_wds_blocks("{url}", "images")` streams the shards.']
    return lines
