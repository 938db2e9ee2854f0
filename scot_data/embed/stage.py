"""The embedding-cache stage: every distinct image and text embedded once, incrementally.

1. ``prepare`` reads the finished caption (and triplet) tables, lists the distinct images
   (by ``image_id``) and texts (captions, modifications, modified captions, by ``text_id`` =
   hash of the text), and subtracts what the output already holds for *this* encoder
   (parts tagged with another encoder's identity are removed first). A finished output
   with the same inputs, encoder spec and options is skipped without loading the model.
2. ``embed_images`` decodes and preprocesses images in DataLoader worker processes (the
   encoder's picklable transform), runs the frozen encoder under ``torch.inference_mode``
   and writes L2-normalised float16 vectors in parts of ``part_rows``, each named by its
   encoder and ids and written atomically (rejects first, vectors last). A corrupt image
   becomes a reject (file, captions row, reason); the run goes on.
3. ``embed_texts`` does the same for texts (batches sorted by length to cut padding).
4. ``finish`` packs every part, in a stable order, into WebDataset shards of row blocks
   (unchanged shards keep their names and are not rewritten), consolidates the rejects,
   writes ``stats.json`` and then ``manifest.json`` with the encoder identity and per-file
   sha256, and only then deletes files the new manifest no longer lists.

A ``kill -9`` loses at most the part in flight; the previous finished manifest stays valid
until the new one replaces it (unless the encoder changed, which invalidates it first).

The steps live in modules of their own: ``layout`` (names, parts on disk), ``plan``
(``prepare``, ``plan_collection``), ``compute`` (``embed_images``, ``embed_texts``),
``pack`` (``finish``) and ``summary`` (``EmbedSummary``, ``PhaseStats``). This module runs
them in order and re-exports the steps a flow calls one by one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from rich.progress import Progress

from scot_data.embed.compute import embed_images, embed_texts
from scot_data.embed.config import EmbedConfig
from scot_data.embed.layout import STAGE, SUBFOLDERS
from scot_data.embed.pack import finish
from scot_data.embed.plan import EmbedPlan, plan_collection, prepare
from scot_data.embed.summary import EmbedSummary, PhaseStats
from scot_data.encoders import Encoder
from scot_data.outdir import writes_folder

__all__ = [
    "EmbedPlan",
    "EmbedSummary",
    "PhaseStats",
    "embed_images",
    "embed_stage",
    "embed_texts",
    "finish",
    "plan_collection",
    "prepare",
    "run_plan",
]


@writes_folder(STAGE, SUBFOLDERS)
def embed_stage(
    cfg: EmbedConfig,
    captions_dir: str | Path,
    triplets_dir: str | Path | None,
    out_dir: str | Path,
    show_progress: bool = True,
    encoder: Encoder | None = None,
    reuse: Sequence[str | Path] = (),
    force: bool = False,
    tower_features: Callable[[Encoder], Mapping[str, tuple[str, torch.Tensor]]] | None = None,
) -> EmbedSummary:
    """Run the whole stage into ``out_dir``: only what is new is embedded (rows already in
    ``reuse`` outputs by the same encoder are adopted); an identical finished run is
    skipped without loading the model. ``tower_features`` gives, for the plan's encoder,
    image-tower features already computed (``image_id -> (path, features)``): those images
    go through the encoder's head only (``encode_image_tower_features``)."""
    plan = prepare(cfg, captions_dir, triplets_dir, out_dir, encoder=encoder, reuse=reuse)
    if tower_features is not None and isinstance(plan, EmbedPlan):
        plan.tower_features = dict(tower_features(plan.encoder))
    return run_plan(plan, show_progress)


def run_plan(plan: EmbedPlan | EmbedSummary, show_progress: bool = True) -> EmbedSummary:
    """Embed what a plan left to do and finish the output (a skipped plan is returned as is)."""
    if isinstance(plan, EmbedSummary):
        return plan
    with Progress(disable=not show_progress, transient=False) as bar:
        images = embed_images(plan, progress=bar)
        texts = embed_texts(plan, progress=bar)
    return finish(plan, images, texts)
