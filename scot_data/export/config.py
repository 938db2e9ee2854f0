"""Options of the export stage (``scot export``'s flags): light, no tables."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

FORMATS = ("clip-retrieval", "npy")


class ExportConfig(BaseModel):
    """Which layout, which float type, and how many rows per ``.npy`` file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["clip-retrieval", "npy"] = Field(
        "clip-retrieval",
        description="clip-retrieval: one row per caption (image and caption vectors + metadata) | "
        "npy: every distinct image and text with its ids",
    )
    dtype: Literal["float16", "float32"] = Field(
        "float16", description="float type of the .npy files (the cache holds float16)"
    )
    # 262,144 rows of 512-d float16 are 256 MiB: the memory one block takes while it is written
    block_rows: int = Field(262_144, ge=1, description="rows per .npy file (and its aligned Parquet file)")
