"""The fit-lit stage: ``fit_lit_heads`` (pairs in, heads, feature cache, model card and
manifest out) and ``fit_lit_from_captions`` (the same from caption tables): see the package."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress

from scot_data.atomic import atomic_write_bytes, atomic_write_json
from scot_data.encoders.lit import LitEncoder, save_heads
from scot_data.evaluate.text_image_recall import chance_recall
from scot_data.fit_lit.card import FitLitResult, print_summary, render_model_card
from scot_data.fit_lit.config import (
    CARD_JSON,
    CARD_MARKDOWN,
    FEATURES_FILE,
    HEADS_FILE,
    STAGE,
    FitLitConfig,
)
from scot_data.fit_lit.features import TowerFeatures, tower_features
from scot_data.fit_lit.pairs import CaptionPair, caption_table_file, pairs_digest, read_caption_table
from scot_data.fit_lit.train import FitLog, SplitPairs, evaluate, fit_heads, split_three_ways
from scot_data.manifest import (
    InputRef,
    fingerprint_input,
    is_complete,
    stage_fingerprint,
    write_manifest,
)
from scot_data.outdir import writes_folder


def _stage_config(config: FitLitConfig) -> dict[str, Any]:
    return config.fingerprint_config()


def _finished_result(out: Path) -> FitLitResult:
    card = json.loads((out / CARD_JSON).read_text(encoding="utf-8"))
    return FitLitResult(**{**card, "skipped": True})


def _counts(
    pairs: Sequence[CaptionPair], features: TowerFeatures, splits: dict[str, SplitPairs]
) -> dict[str, int]:
    counts = {"pairs": len(pairs), "images": len(features.image_ids), "failed_images": len(features.failed)}
    for name, split in splits.items():
        counts[f"{name}_pairs"], counts[f"{name}_images"] = len(split.texts), split.n_images
    return counts


def _fit_summary(log: FitLog) -> dict[str, Any]:
    tail = log.losses[-50:]
    return {
        "steps_run": len(log.losses),
        "best_step": log.best_step,
        "first_loss": round(log.losses[0], 4),
        "final_loss": round(sum(tail) / len(tail), 4),
        "validation_curve": [[step, round(score, 4)] for step, score in log.validation],
    }


def _write_outputs(
    out: Path, result: FitLitResult, config: FitLitConfig, inputs: list[InputRef], rows: int
) -> None:
    """Model card (Markdown, then JSON) and, last, the manifest."""
    atomic_write_bytes(out / CARD_MARKDOWN, render_model_card(result).encode("utf-8"))
    atomic_write_json(out / CARD_JSON, asdict(result))
    write_manifest(
        out,
        STAGE,
        _stage_config(config),
        inputs,
        {HEADS_FILE: None, FEATURES_FILE: rows, CARD_JSON: None, CARD_MARKDOWN: None},
        extra={"encoder": result.encoder, "metrics": {"held_out": result.held_out, "chance": result.chance}},
    )


@writes_folder(STAGE)
def fit_lit_heads(
    pairs: Sequence[CaptionPair],
    out_dir: str | Path,
    config: FitLitConfig = FitLitConfig(),
    inputs: list[InputRef] | None = None,
    show_progress: bool = True,
    console: Console | None = None,
    force: bool = False,
) -> FitLitResult:
    """Fit the heads of ``config.encoder`` (a LiT variant) on ``pairs``; write heads, feature
    cache, model card and manifest.

    ``inputs`` names where the pairs came from for the manifest (default: a digest of the
    pairs themselves). A finished ``out_dir`` with the same inputs and settings is kept.
    Progress and the summary go to ``console`` (default: stderr); a run's live view passes
    the console it draws on, so the bars nest under it.
    """
    out = Path(out_dir)
    inputs = inputs or [InputRef("<pairs>", "pairs", pairs_digest(pairs))]
    fingerprint = stage_fingerprint(STAGE, _stage_config(config), inputs)
    if is_complete(out, STAGE, fingerprint):
        return _finished_result(out)
    (out / "manifest.json").unlink(missing_ok=True)
    if console is None or not show_progress:
        console = Console(stderr=True, quiet=not show_progress)
    encoder = LitEncoder(config.encoder, device=config.device, embed_dim=config.embed_dim, seed=config.seed)
    with Progress(console=console, disable=not show_progress) as progress:
        features = tower_features(encoder, pairs, out / FEATURES_FILE, config, progress)
        train, validation, held = split_three_ways(pairs, features, config)
        model = encoder.model.cpu()  # the heads train on cached CPU features
        untrained = evaluate(model, features, held)
        started = time.perf_counter()
        log = fit_heads(model, features, train, validation, config, progress)
        fit_seconds = time.perf_counter() - started
    heads_path = save_heads(out / HEADS_FILE, model, {"fingerprint": fingerprint})
    fitted = LitEncoder(config.encoder, heads=heads_path, device="cpu")  # what users load, checked strictly
    n_read = len(features.image_ids) - len(features.failed)
    result = FitLitResult(
        out_dir=str(out),
        heads=str(heads_path),
        encoder=fitted.identity.as_dict(),
        held_out=evaluate(fitted.model, features, held),
        held_out_untrained=untrained,
        chance=chance_recall(held.n_images),
        counts=_counts(pairs, features, {"train": train, "validation": validation, "held_out": held}),
        timing={
            "features_from_cache": features.reused,
            "extract_seconds": round(features.seconds, 2),
            "images_per_second": round(n_read / features.seconds, 2) if features.seconds else 0.0,
            "fit_seconds": round(fit_seconds, 2),
            "ms_per_step": round(1000 * fit_seconds / len(log.losses), 3),
        },
        config=config.model_dump(),
        temperature=round(float(1 / model.logit_scale.exp()), 5),
        fit=_fit_summary(log),
        failed_images=features.failed,
    )
    _write_outputs(out, result, config, inputs, rows=len(features.image_ids))
    print_summary(result, console)
    return result


def fit_lit_from_captions(
    captions: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    config: FitLitConfig = FitLitConfig(),
    show_progress: bool = True,
    console: Console | None = None,
    force: bool = False,
) -> FitLitResult:
    """``scot fit-lit --captions DIR [--captions DIR ...] --out PATH``: fit on one
    caption table (dir or file) or on several in order (single objects + scenes)."""
    sources = [captions] if isinstance(captions, (str, Path)) else list(captions)
    table_files = [caption_table_file(Path(source)) for source in sources]
    pairs = [pair for table_file in table_files for pair in read_caption_table(table_file)]
    inputs = [fingerprint_input(table_file) for table_file in table_files]
    return fit_lit_heads(pairs, out_dir, config, inputs, show_progress, console, force)
