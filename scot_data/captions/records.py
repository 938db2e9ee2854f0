"""Records that flow through the caption stage, and the Parquet schemas they land in.

A reader turns a collection into ``Candidate`` records (metadata only: cheap); a worker
turns each candidate into a ``CaptionRow`` once its image decodes (or renders), or into a
``Reject`` that says which file, which record and why.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from scot_data.images import TarMember


@dataclass(frozen=True)
class LocalImage:
    """An image file on a local filesystem."""

    path: str


@dataclass(frozen=True)
class RemoteImage:
    """An image behind a URL; it is fetched by the embedding stage, not checked here."""

    url: str


@dataclass(frozen=True)
class SvgImage:
    """A vector drawing that the worker renders once to a PNG in the render cache."""

    svg_path: str


ImageRef = LocalImage | TarMember | RemoteImage | SvgImage


@dataclass(frozen=True)
class Candidate:
    """A caption and where its image is, before the image has been checked."""

    caption_id: str
    image_id: str
    image_key: str
    caption: str
    source: str
    image: ImageRef
    file: str
    record: str


@dataclass(frozen=True)
class CaptionRow:
    """One row of the captions table (the contract of ``shared/DESIGN.md``)."""

    caption_id: str
    image_id: str
    image_uri: str
    caption: str
    source: str


@dataclass(frozen=True)
class Reject:
    """An input record the stage could not use: the file, the record in it, and why."""

    file: str
    record: str
    reason: str


CAPTIONS_SCHEMA = pa.schema(
    [
        pa.field("caption_id", pa.string(), nullable=False),
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("image_uri", pa.string(), nullable=False),
        pa.field("caption", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
    ]
)

REJECTS_SCHEMA = pa.schema(
    [
        pa.field("file", pa.string(), nullable=False),
        pa.field("record", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
    ]
)


def rows_to_table(rows: list[CaptionRow]) -> pa.Table:
    """Caption rows as an Arrow table with the contract schema."""
    columns = {name: [getattr(r, name) for r in rows] for name in CAPTIONS_SCHEMA.names}
    return pa.table(columns, schema=CAPTIONS_SCHEMA)


def rejects_to_table(rejects: list[Reject]) -> pa.Table:
    """Rejects as an Arrow table."""
    columns = {name: [getattr(r, name) for r in rejects] for name in REJECTS_SCHEMA.names}
    return pa.table(columns, schema=REJECTS_SCHEMA)
