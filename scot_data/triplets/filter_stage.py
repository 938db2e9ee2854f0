"""The filter stage: a finished triplets folder in, the triplets every enabled filter keeps
out (the same Parquet schema, so ``scot embed`` and ``scot train`` read it unchanged), with
each filter's drop counts; caption/modified-caption cosines come from an embedding cache,
texts it lacks from an encoder built only then."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from scot_data import stages
from scot_data.atomic import atomic_write_json, atomic_write_parquet
from scot_data.embed.records import text_id
from scot_data.embed.view import load_embeddings
from scot_data.encoders import create_encoder
from scot_data.encoders.base import Encoder
from scot_data.errors import ScotInputError
from scot_data.manifest import (
    MANIFEST_NAME,
    InputRef,
    fingerprint_input,
    finished_input,
    finished_summary,
    is_complete,
    read_manifest,
    stage_fingerprint,
    write_manifest,
)
from scot_data.outdir import writes_folder
from scot_data.triplets.filters import FilterConfig, find_problems, load_shots
from scot_data.triplets.prompts import prompt_file
from scot_data.triplets.records import (
    PARQUET_OPTIONS,
    REJECTS_FILE,
    REJECTS_SCHEMA,
    STAGE,
    STATS_FILE,
    TRIPLETS_FILE,
    TripletReject,
    to_table,
)


@dataclass
class Similarities:
    """Caption/modified-caption cosines and where their vectors came from."""

    values: np.ndarray
    cached: int = 0
    encoded: int = 0


def caption_similarities(
    captions: list[str], modified: list[str], embeddings_dir: Path | None, encoder: str | Encoder | None
) -> Similarities:
    """Cosines from a finished embedding cache (by ``text_id``); texts it lacks are encoded
    with ``encoder``, which is built only then, so a complete cache needs no model."""
    texts = sorted(set(captions) | set(modified))
    vectors, cached = _cached_vectors(texts, embeddings_dir)
    missing = [t for t in texts if t not in vectors]
    if missing:
        vectors.update(_encode(missing, embeddings_dir, encoder))
    a = np.stack([vectors[t] for t in captions]) if captions else np.zeros((0, 1), np.float32)
    b = np.stack([vectors[t] for t in modified]) if modified else np.zeros((0, 1), np.float32)
    return Similarities((a * b).sum(axis=1), cached, len(missing))


def _cached_vectors(texts: list[str], embeddings_dir: Path | None) -> tuple[dict[str, np.ndarray], int]:
    if embeddings_dir is None:
        return {}, 0
    cache = load_embeddings(embeddings_dir, "texts")
    rows = cache.index_of(pa.array([text_id(t) for t in texts], pa.string()))
    found = {t: _unit(cache.matrix[r]) for t, r in zip(texts, rows) if r >= 0}
    return found, len(found)


def _encode(
    texts: list[str], embeddings_dir: Path | None, encoder: str | Encoder | None
) -> dict[str, np.ndarray]:
    if encoder is None:
        where = f"the cache {embeddings_dir}" if embeddings_dir else "no --embeddings cache"
        raise ScotInputError(
            f"similarity_band: {len(texts)} texts have no vector in {where} and no --encoder is given"
        )
    if isinstance(encoder, str):
        encoder = create_encoder(encoder)
    _check_same_encoder(encoder, embeddings_dir)
    matrix = encoder.encode_texts(texts).numpy()
    return {t: _unit(v) for t, v in zip(texts, matrix)}


def _check_same_encoder(encoder: Encoder, embeddings_dir: Path | None) -> None:
    """Cached and fresh vectors are only comparable from the same weights (precision may
    differ: a GPU's bf16 vectors match a CPU cache's to ~1e-3)."""
    cached = (
        ((read_manifest(embeddings_dir) or {}).get("encoder") or {}).get("identity")
        if embeddings_dir
        else None
    )
    mine = encoder.identity
    if cached and (cached["model_name"], cached["weights_sha256"]) != (mine.model_name, mine.weights_sha256):
        raise ScotInputError(f"--encoder is {mine.model_name} ({mine.weights_sha256[:12]}), "
                             f"not the encoder of the cache {embeddings_dir}")  # fmt: skip


def _unit(vector: np.ndarray) -> np.ndarray:
    v = vector.astype(np.float32)
    return v / max(float(np.linalg.norm(v)), 1e-12)


# --- the stage -----------------------------------------------------------------------------


@dataclass
class FilterSummary:
    """What one run dropped and why; printed by the CLI and stored as ``stats.json``."""

    out_dir: str
    input_triplets: int = 0
    triplets: int = 0
    dropped: int = 0
    rejects: int = 0
    dropped_by: dict[str, int] = field(default_factory=dict)
    would_drop_alone: dict[str, int] = field(default_factory=dict)
    filters: list[str] = field(default_factory=list)
    texts_cached: int = 0
    texts_encoded: int = 0
    edit_types: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    skipped: bool = False


@writes_folder(STAGE)
def filter_triplets(
    triplets_dir: str | Path,
    out_dir: str | Path,
    cfg: FilterConfig,
    embeddings_dir: str | Path | None = None,
    encoder: str | Encoder | None = None,
    force: bool = False,
) -> FilterSummary:
    """Write the triplets of ``triplets_dir`` that pass every enabled filter to ``out_dir``
    as a finished triplets stage; a finished run with the same inputs and config is skipped."""
    started = time.perf_counter()
    source, out = Path(triplets_dir), Path(out_dir)
    embeddings = Path(embeddings_dir) if embeddings_dir is not None and cfg.similarity_band else None
    if out.resolve() == source.resolve():
        raise ScotInputError(f"--out {out} is the input directory; write the filtered triplets elsewhere")
    inputs = _inputs(source, embeddings, cfg)
    config = _stage_config(cfg, encoder)
    if is_complete(out, STAGE, stage_fingerprint(STAGE, config, inputs)):
        return finished_summary(out, FilterSummary)
    (out / MANIFEST_NAME).unlink(missing_ok=True)
    table = pq.read_table(source / TRIPLETS_FILE)
    sims = _similarities(table, cfg, embeddings, encoder)
    shots = load_shots(cfg)
    problems = [find_problems(r, s, cfg, shots) for r, s in zip(table.to_pylist(), _floats(sims, table))]
    summary = _write(
        source, out, table, problems, FilterSummary(out_dir=str(out), filters=list(cfg.enabled()))
    )
    summary.texts_cached, summary.texts_encoded = (sims.cached, sims.encoded) if sims else (0, 0)
    summary.seconds = round(time.perf_counter() - started, 2)
    _finish(out, config, inputs, summary)
    return summary


def _inputs(source: Path, embeddings: Path | None, cfg: FilterConfig) -> list[InputRef]:
    """The input triplets' and cache's manifests (they hash every file) and the prompt."""
    inputs = [finished_input(source, STAGE, "--triplets")]
    if embeddings is not None:
        inputs.append(finished_input(embeddings, stages.EMBED, "--embeddings"))
    if cfg.few_shot_copy:
        inputs.append(fingerprint_input(prompt_file(cfg.prompt)))
    return inputs


def _stage_config(cfg: FilterConfig, encoder: str | Encoder | None) -> dict[str, Any]:
    encoder_key = encoder if isinstance(encoder, str) or encoder is None else encoder.identity.key()
    return {"filters": cfg.model_dump(mode="json"), "encoder": encoder_key if cfg.similarity_band else None}


def _similarities(
    table: pa.Table, cfg: FilterConfig, embeddings: Path | None, encoder: str | Encoder | None
) -> Similarities | None:
    if not cfg.similarity_band:
        return None
    return caption_similarities(
        table.column("caption").to_pylist(), table.column("modified_caption").to_pylist(), embeddings, encoder
    )


def _floats(sims: Similarities | None, table: pa.Table) -> list[float | None]:
    return [float(v) for v in sims.values] if sims is not None else [None] * table.num_rows


def _write(
    source: Path, out: Path, table: pa.Table, problems: list[dict[str, str]], summary: FilterSummary
) -> FilterSummary:
    """Kept rows (the input's schema, untouched), then rejects: the input's plus ours."""
    keep = pa.array([not p for p in problems])
    kept = table.filter(keep)
    dropped = [_reject(row, p) for row, p in zip(table.to_pylist(), problems) if p]
    rejects = pa.concat_tables([_input_rejects(source), to_table(dropped, REJECTS_SCHEMA)])
    atomic_write_parquet(out / TRIPLETS_FILE, kept, **PARQUET_OPTIONS)
    atomic_write_parquet(out / REJECTS_FILE, rejects, **PARQUET_OPTIONS)
    summary.input_triplets, summary.triplets, summary.dropped = table.num_rows, kept.num_rows, len(dropped)
    summary.rejects = rejects.num_rows
    summary.dropped_by = dict(Counter(next(iter(p)) for p in problems if p).most_common())
    summary.would_drop_alone = {name: sum(name in p for p in problems) for name in summary.filters}
    edit_types = pc.value_counts(kept.column("edit_type")).to_pylist() if kept.num_rows else []
    summary.edit_types = {e["values"]: e["counts"] for e in sorted(edit_types, key=lambda e: -e["counts"])}
    return summary


def _reject(row: dict[str, Any], problems: dict[str, str]) -> TripletReject:
    name, detail = next(iter(problems.items()))
    return TripletReject(row["caption_id"], row["caption"], json.dumps(row), f"{name}: {detail}",
                         row["llm_model"], row["prompt_version"])  # fmt: skip


def _input_rejects(source: Path) -> pa.Table:
    path = source / REJECTS_FILE
    return (
        pq.read_table(path).select(REJECTS_SCHEMA.names).cast(REJECTS_SCHEMA)
        if path.exists()
        else to_table([], REJECTS_SCHEMA)
    )


def _finish(out: Path, config: dict[str, Any], inputs: list[InputRef], summary: FilterSummary) -> None:
    """Stats, then the manifest (last)."""
    atomic_write_json(out / STATS_FILE, asdict(summary))
    files = {TRIPLETS_FILE: summary.triplets, REJECTS_FILE: summary.rejects, STATS_FILE: None}
    write_manifest(
        out,
        STAGE,
        config,
        inputs,
        files,
        extra={"stats": asdict(summary), "filtered_from": str(inputs[0].path)},
    )
