"""Options of the embedding-cache stage: the spec's ``embed:`` section and ``scot embed``'s flags."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from scot_data.encoders.factory import EncoderSpec
from scot_data.encoders.lit_family import LIT_VARIANTS

# Options that change speed or file cut-up, never the vectors or the shards' content.
RUNTIME_ONLY_OPTIONS = {"image_batch_size", "text_batch_size", "num_workers", "part_rows"}


class EmbedConfig(BaseModel):
    """Which encoder, how to batch, and how the WebDataset shards are bounded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    encoder: EncoderSpec = Field(
        EncoderSpec(), description="backend[:model][@weights], or a mapping of backend, model, weights"
    )
    fit_lit: bool = Field(
        False, description="scot run: fit the LiT encoder's heads on the run's captions first (<out>/fit-lit)"
    )
    seed: int = Field(0, description="seed of any random init (untrained heads, random open_clip)")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    image_batch_size: int = Field(64, ge=1)
    text_batch_size: int = Field(256, ge=1)
    num_workers: int = Field(2, ge=0, description="DataLoader processes that decode and preprocess images")
    part_rows: int = Field(4096, ge=1, description="rows per resumable Parquet part")
    shard_max_rows: int = Field(262_144, ge=1, description="WebDataset shard bound: rows")
    shard_max_bytes: int = Field(512 * 1024 * 1024, ge=64 * 1024, description="WebDataset shard bound: bytes")
    block_rows: int = Field(1024, ge=1, description="embeddings per WebDataset sample (one .npy block)")
    include_caption_table: bool = Field(
        True, description="embed every caption of the captions table, not only the triplets' texts"
    )

    @model_validator(mode="after")
    def _fit_needs_lit(self) -> EmbedConfig:
        if self.fit_lit and self.encoder.backend not in LIT_VARIANTS:
            known = ", ".join(LIT_VARIANTS)
            raise ValueError(f"fit_lit: fits a LiT encoder's heads ({known}); the encoder is {self.encoder}")
        return self
