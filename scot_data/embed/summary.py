"""What a run of the embedding-cache stage did: per phase and in all."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from scot_data.manifest import finished_summary


@dataclass
class EmbedSummary:
    """What one run did; printed by the CLI, stored as ``stats.json`` and in the manifest."""

    out_dir: str
    encoder: str = ""
    encoder_key: str = ""
    dim: int = 0
    images: int = 0
    texts: int = 0
    images_wanted: int = 0
    texts_wanted: int = 0
    images_embedded: int = 0
    images_from_tower_features: int = 0  # of images_embedded: the head only, on a fit's features
    texts_embedded: int = 0
    rejects: int = 0
    reject_reasons: dict[str, int] = field(default_factory=dict)
    image_parts: int = 0
    text_parts: int = 0
    shards: int = 0
    shards_written: int = 0
    image_seconds: float = 0.0
    text_seconds: float = 0.0
    images_per_second: float = 0.0
    texts_per_second: float = 0.0
    seconds: float = 0.0
    skipped: bool = False


@dataclass
class PhaseStats:
    """One phase (images or texts) of one run."""

    embedded: int = 0
    from_tower_features: int = 0
    rejected: int = 0
    parts: int = 0
    seconds: float = 0.0


def skipped_summary(out: Path) -> EmbedSummary:
    return finished_summary(
        out, EmbedSummary, images_embedded=0, images_from_tower_features=0, texts_embedded=0, shards_written=0
    )
