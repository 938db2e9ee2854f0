"""Caption-stage configuration: one pydantic model per input format.

The same models validate the ``captions:`` section of a pipeline spec and the flags of
``scot captions ingest``; unknown keys are errors, so a typo never silently does nothing.

A format is declared once, by decorating its model with :func:`caption_format`: the spec's
union (discriminated by ``format``), :data:`FORMATS`, the ``--format`` help and the reader
table (``scot_data.captions.readers.READERS``: module ``readers/<format>.py`` with
``scan_<format>`` and ``<format>_inputs``) all follow from :data:`CAPTION_FORMATS`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_OPENCLIPART_ROOT = Path("/usr/share/openclipart/svg")
# The slowest of the 8,121 openclipart drawings renders in about 11 s (16 s beside another worker).
DEFAULT_RENDER_TIMEOUT_S = 60.0

DEFAULT_KEYWORD_STOPLIST = (
    "action",
    "application",
    "clip art",
    "clipart",
    "computer",
    "filesystem",
    "hash",
    "icon",
    "icons",
    "lemon theme icon",
    "magick",
    "mapsym",
    "menu",
    "mimetypes",
    "signs and symbols",
    "special",
    "svg",
    "theme",
    "united nations member",
    "unsorted",
)


class CaptionsOptions(BaseModel):
    """Options every format shares: sampling and how the work is split."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    limit: int | None = Field(None, ge=1, description="keep at most this many captions (seeded sample)")
    seed: int = Field(0, description="seed of the deterministic sample taken when limit is set")
    source: str | None = Field(None, description="source name in ids and rows; defaults to the format")
    workers: int = Field(2, ge=1, description="processes that decode or render images")
    part_size: int = Field(512, ge=1, description="captions per resumable part")
    holdout: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="share of images (a seeded hash of image_id) kept out of captions.parquet and written"
        " to holdout.parquet: unseen images for a benchmark (scot bench build-clipart)",
    )

    @property
    def source_name(self) -> str:
        return self.source or self.format  # type: ignore[attr-defined]


CAPTION_FORMATS: dict[str, type[CaptionsOptions]] = {}
"""Every input format by name, in the order declared (the registry the rest derives from)."""
_Format = TypeVar("_Format", bound=type[CaptionsOptions])


def caption_format(model: _Format) -> _Format:
    """Register ``model`` under its ``format`` literal."""
    name = model.model_fields["format"].default
    if not isinstance(name, str) or name in CAPTION_FORMATS:
        raise ValueError(f"{model.__name__}: format {name!r} is not a new name")
    CAPTION_FORMATS[name] = model
    return model


@caption_format
class CocoCaptions(CaptionsOptions):
    """The official COCO ``captions_*.json`` with its image folder."""

    format: Literal["coco"] = "coco"
    input: Path = Field(description="captions_<split>.json")
    images: Path = Field(description="folder holding the images' file_name")


@caption_format
class WdsCaptions(CaptionsOptions):
    """img2dataset-style WebDataset tars: ``key.jpg|png|webp`` with ``key.txt`` and/or ``key.json``."""

    format: Literal["wds"] = "wds"
    input: str = Field(description="tar path or brace pattern, e.g. shards/shard-{00000..00009}.tar")
    caption_key: str = Field("caption", description="field of the .json member holding the caption")


@caption_format
class TableCaptions(CaptionsOptions):
    """A Parquet or CSV table with an image column (paths or URLs) and a caption column."""

    format: Literal["table"] = "table"
    input: Path
    images: Path | None = Field(None, description="base folder for relative image paths (default: the table's)")
    image_column: str = "image"
    caption_column: str = "caption"


@caption_format
class OpenclipartCaptions(CaptionsOptions):
    """The SVG tree of Debian's ``openclipart-svg``; captions from titles and keywords."""

    format: Literal["openclipart"] = "openclipart"
    input: Path = DEFAULT_OPENCLIPART_ROOT
    images: Path | None = Field(None, description="render cache for PNGs (default: <out>/images)")
    render_size: int = Field(224, ge=16)
    render_timeout_s: float = Field(
        DEFAULT_RENDER_TIMEOUT_S,
        gt=0,
        description="seconds one SVG may take to render before it is rejected (the render is killed);"
        " changes no pixels, so not part of the stage fingerprint: parts already written keep their rejects",
    )
    max_keywords: int = Field(3, ge=0)
    include_description: bool = True
    max_description_words: int = Field(16, ge=1)
    generic_title_min_count: int = Field(
        5, ge=2, description="a title shared by this many drawings names a collection, not the drawing"
    )
    keyword_stoplist: tuple[str, ...] = DEFAULT_KEYWORD_STOPLIST


_FORMAT_MODELS = Union[tuple(CAPTION_FORMATS.values())]  # type: ignore[valid-type]  # noqa: UP007
CaptionsConfig = Annotated[_FORMAT_MODELS, Field(discriminator="format")]
FORMATS = tuple(CAPTION_FORMATS)
