"""Triplet and reject records and their Parquet schemas (``shared/DESIGN.md`` section 2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from scot_data import stages


@dataclass(frozen=True)
class CaptionIn:
    """A caption the stage works on (a row of the captions table)."""

    caption_id: str
    image_id: str
    caption: str


@dataclass(frozen=True)
class Triplet:
    triplet_id: str
    caption_id: str
    image_id: str
    caption: str
    modification: str
    modified_caption: str
    edit_type: str
    llm_model: str
    prompt_version: str
    seed: int


@dataclass(frozen=True)
class TripletReject:
    """An answer the stage could not use, kept with its raw text."""

    caption_id: str
    caption: str
    raw: str
    reason: str
    llm_model: str
    prompt_version: str


TRIPLETS_SCHEMA = pa.schema(
    [(name, pa.int64() if name == "seed" else pa.string()) for name in Triplet.__dataclass_fields__]
)
REJECTS_SCHEMA = pa.schema([(name, pa.string()) for name in TripletReject.__dataclass_fields__])


def to_table(records: list, schema: pa.Schema) -> pa.Table:
    """Dataclass records as an Arrow table with ``schema``."""
    return pa.table({name: [getattr(r, name) for r in records] for name in schema.names}, schema=schema)


# Optional column of synthetic triplets whose target image exists (rendered scenes): the
# target's image_id, for training towards the target image instead of its caption.
TARGET_IMAGE_COLUMN = "target_image_id"

# The triplet stage's directory: every writer of one (generate, filter, mix) uses these.
STAGE = stages.TRIPLETS
TRIPLETS_FILE = "triplets.parquet"
REJECTS_FILE = "rejects.parquet"
STATS_FILE = "stats.json"
PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd"}
