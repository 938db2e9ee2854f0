"""A Parquet or CSV table of (image, caption); images as local paths or URLs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from scot_data.captions.config import TableCaptions
from scot_data.captions.readers.common import candidate_or_reject, require_path
from scot_data.captions.records import Candidate, ImageRef, LocalImage, Reject, RemoteImage
from scot_data.errors import ScotInputError
from scot_data.manifest import InputRef, fingerprint_input

REMOTE_SCHEMES = ("http", "https", "s3", "gs", "gcs", "az", "abfs")


def table_inputs(cfg: TableCaptions) -> list[InputRef]:
    """The table by content."""
    require_path(cfg.input, "caption table")
    return [fingerprint_input(cfg.input)]


def _read(path: Path) -> pa.Table:
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pq.read_table(path)
        if suffix in (".csv", ".tsv"):
            options = pacsv.ParseOptions(delimiter="\t" if suffix == ".tsv" else ",")
            return pacsv.read_csv(path, parse_options=options)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ScotInputError(f"{path}: not a readable {suffix[1:]} table ({exc})") from exc
    raise ScotInputError(f"{path}: a caption table must be .parquet, .csv or .tsv")


def _image_ref(value: str, base: Path) -> ImageRef:
    if urlparse(value).scheme in REMOTE_SCHEMES:
        return RemoteImage(value)
    path = Path(value)
    return LocalImage(str((path if path.is_absolute() else base / path).resolve()))


def scan_table(cfg: TableCaptions) -> Iterator[Candidate | Reject]:
    """Yield one candidate per row; rows with no image or caption are rejected by row number."""
    table = _read(cfg.input)
    for column in (cfg.image_column, cfg.caption_column):
        if column not in table.column_names:
            raise ScotInputError(f"{cfg.input}: no column {column!r} (columns: {', '.join(table.column_names)})")
    base = cfg.images or cfg.input.parent
    file = str(cfg.input)
    images = table.column(cfg.image_column).to_pylist()
    captions = table.column(cfg.caption_column).to_pylist()
    for row, (image, caption) in enumerate(zip(images, captions, strict=True)):
        record = f"row {row}"
        if not isinstance(image, str) or not image.strip():
            yield Reject(file, record, f"empty {cfg.image_column!r}")
            continue
        yield candidate_or_reject(cfg.source_name, image, caption, _image_ref(image, base), file, record)
