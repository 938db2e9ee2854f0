"""Planning a run of the embedding-cache stage: the encoder (kept for the process), the
inputs and options that fingerprint the output, the distinct images and texts wanted, and
what is left to embed once the parts already on disk (or adopted) are subtracted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import torch

from scot_data.embed.config import RUNTIME_ONLY_OPTIONS, EmbedConfig
from scot_data.embed.layout import (
    IMAGES_DIR,
    STAGE,
    TEXTS_DIR,
    adopt_parts,
    ids_in,
    reject_part,
    remove_other_encoders,
    valid_parts,
)
from scot_data.embed.records import text_id
from scot_data.embed.summary import EmbedSummary, skipped_summary
from scot_data.encoders import Encoder, EncoderSpec, create_encoder, resolve_device
from scot_data.images import TAR_SCHEME, ImageItem, index_tars
from scot_data.manifest import (
    InputRef,
    fingerprint_input,
    finished_input,
    is_complete,
    read_manifest,
    stage_fingerprint,
)


@dataclass
class EmbedPlan:
    """Everything a run needs after ``prepare``: the encoder, and what is left to embed."""

    cfg: EmbedConfig
    out: Path
    config: dict[str, Any]
    inputs: list[InputRef]
    fingerprint: str
    encoder: Encoder
    images_todo: list[ImageItem]
    pre_rejects: dict[str, str]  # image_id -> reason found before decoding (tar member missing)
    texts_todo: list[tuple[str, str]]
    images_wanted: int
    texts_wanted: int
    previous: dict[str, Any] | None
    started: float = field(default_factory=time.perf_counter)
    # image_id -> (path, image-tower features) computed earlier (a head fit's cache)
    tower_features: dict[str, tuple[str, torch.Tensor]] = field(default_factory=dict)

    @property
    def encoder_key(self) -> str:
        return self.encoder.identity.key()

    @property
    def dim(self) -> int:
        return self.encoder.identity.dim


# ----------------------------------------------------------------------------- encoder

_ENCODERS: dict[tuple[EncoderSpec, str, int], Encoder] = {}


def get_encoder(cfg: EmbedConfig) -> Encoder:
    """The encoder a config names, kept for the process (a flow's tasks share one model)."""
    key = (cfg.encoder, cfg.device, cfg.seed)
    if key not in _ENCODERS:
        _ENCODERS.clear()
        _ENCODERS[key] = create_encoder(cfg.encoder, device=cfg.device, seed=cfg.seed)
    return _ENCODERS[key]


def clear_encoder_cache() -> None:
    _ENCODERS.clear()


# ------------------------------------------------------------------------------ inputs


def stage_config(cfg: EmbedConfig) -> dict[str, Any]:
    """Options that determine the output, plus the device kind (it sets the forward dtype)."""
    # fit_lit says how scot run made the heads; the heads file itself is in the config
    config = cfg.model_dump(mode="json", exclude=RUNTIME_ONLY_OPTIONS | {"fit_lit"})
    config["device_type"] = resolve_device(cfg.device).type
    return config


def stage_inputs(cfg: EmbedConfig, captions_dir: Path, triplets_dir: Path | None) -> list[InputRef]:
    """The captions and triplets manifests (they hash every file they list) and local weights."""
    inputs = [finished_input(captions_dir, "captions", "--captions")]
    if triplets_dir is not None:
        inputs.append(finished_input(triplets_dir, "triplets", "--triplets"))
    for local in (cfg.encoder.weights, cfg.encoder.model):
        if local and Path(local).exists():
            inputs.append(fingerprint_input(local, content=Path(local).is_file()))
    return inputs


def wanted_images(captions_dir: Path) -> list[ImageItem]:
    """One item per distinct image_id, with the first captions row that names it."""
    table = pq.read_table(captions_dir / "captions.parquet", columns=["image_id", "image_uri"])
    seen: set[str] = set()
    items = []
    for row, (image, uri) in enumerate(zip(table.column(0).to_pylist(), table.column(1).to_pylist())):
        if image not in seen:
            seen.add(image)
            items.append(ImageItem(image, uri, row))
    return items


def wanted_texts(captions_dir: Path, triplets_dir: Path | None, with_captions: bool) -> list[tuple[str, str]]:
    """Distinct texts (by content hash) in first-seen order: captions, then triplet texts."""
    texts: list[str] = []
    if with_captions:
        texts += pq.read_table(captions_dir / "captions.parquet", columns=["caption"]).column(0).to_pylist()
    if triplets_dir is not None:
        table = pq.read_table(
            triplets_dir / "triplets.parquet", columns=["caption", "modification", "modified_caption"]
        )
        for columns in zip(*(table.column(i).to_pylist() for i in range(3))):
            texts.extend(columns)
    out: dict[str, str] = {}
    for text in texts:
        out.setdefault(text_id(text), text)
    return list(out.items())


# ---------------------------------------------------------------------------- prepare


def prepare(
    cfg: EmbedConfig,
    captions_dir: str | Path,
    triplets_dir: str | Path | None,
    out_dir: str | Path,
    encoder: Encoder | None = None,
    reuse: Sequence[str | Path] = (),
) -> EmbedPlan | EmbedSummary:
    """Plan a run over a caption (and triplet) table, or return the skipped summary of a
    finished identical one (``reuse``: see :func:`plan_collection`)."""
    captions = Path(captions_dir)
    triplets = Path(triplets_dir) if triplets_dir is not None else None
    return plan_collection(
        cfg,
        stage_inputs(cfg, captions, triplets),
        lambda: wanted_images(captions),
        lambda: wanted_texts(captions, triplets, cfg.include_caption_table),
        out_dir,
        encoder,
        reuse,
    )


def plan_collection(
    cfg: EmbedConfig,
    inputs: list[InputRef],
    images: Callable[[], list[ImageItem]],
    texts: Callable[[], list[tuple[str, str]]],
    out_dir: str | Path,
    encoder: Encoder | None = None,
    reuse: Sequence[str | Path] = (),
) -> EmbedPlan | EmbedSummary:
    """Plan a run over any images and texts (a benchmark gallery, a search collection).

    ``inputs`` fingerprint where they come from; the lists are only built when the output
    is not already complete for those inputs. The caller holds ``out_dir`` as the stage's
    folder (``outdir.stage_folder``), which also clears a killed run's temporaries; the
    shards of a scaled-out run plan inside the claim of the flow that started them. ``reuse``
    names other outputs whose parts by the same encoder are adopted first (another training
    set over the same images embeds only its new texts).
    """
    out = Path(out_dir)
    config = stage_config(cfg)
    fingerprint = stage_fingerprint(STAGE, config, inputs)
    if is_complete(out, STAGE, fingerprint):
        return skipped_summary(out)
    previous = read_manifest(out)
    out.mkdir(parents=True, exist_ok=True)
    encoder = encoder or get_encoder(cfg)
    key = encoder.identity.key()
    remove_other_encoders(out, key)
    for source in reuse:
        adopt_parts(Path(source), out, key)
    if previous is not None and (previous.get("encoder") or {}).get("key") != key:
        previous = None

    image_parts = valid_parts(out, IMAGES_DIR, key)
    have_images = ids_in(image_parts, "image_id") | ids_in(
        [reject_part(out, p) for p in image_parts], "image_id"
    )
    wanted = images()
    todo = [item for item in wanted if item.image_id not in have_images]
    ready, bad = index_tars(item for item in todo if item.uri.startswith(TAR_SCHEME))
    located = {item.image_id: item for item in ready}
    images_todo = [located.get(item.image_id, item) for item in todo]

    have_texts = ids_in(valid_parts(out, TEXTS_DIR, key), "text_id")
    wanted_text = texts()
    return EmbedPlan(
        cfg=cfg,
        out=out,
        config=config,
        inputs=inputs,
        fingerprint=fingerprint,
        encoder=encoder,
        images_todo=images_todo,
        pre_rejects={item.image_id: reason for item, reason in bad},
        texts_todo=[t for t in wanted_text if t[0] not in have_texts],
        images_wanted=len(wanted),
        texts_wanted=len(wanted_text),
        previous=previous,
    )
