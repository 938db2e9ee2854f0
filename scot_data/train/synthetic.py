"""A synthetic embedding cache with a known composition rule, for tests and benchmarks.

Reference images V are random unit vectors, modifications T_m come from a small shared
vocabulary (so T_m alone cannot find the target), the caption is
``T = normalize(V W + noise)`` and the modified caption ``T_u = normalize(V W + T_m)``,
where W is a fixed random rotation standing in for the image/text modality gap. The sum
baseline ``normalize(V + T_m)`` gets the T_m half right and the V half wrong, so a
Combiner that learns W beats it: a trainer that works must show that on held-out images.
The files are the real layouts (an ``embeddings`` and a ``triplets`` directory with
manifests), so ``load_training_view`` reads them like any cache.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from scot_data import ids, stages
from scot_data.embed.layout import IMAGES_DIR, STAGE, TEXTS_DIR
from scot_data.embed.records import PARQUET_OPTIONS, images_schema, text_id, texts_schema, to_column
from scot_data.manifest import write_manifest
from scot_data.triplets.records import TRIPLETS_SCHEMA

PART = "part-00000.parquet"


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def write_synthetic_cache(
    root: str | Path,
    images: int,
    per_image: int,
    dim: int,
    seed: int = 0,
    noise: float = 0.3,
    vocabulary: int = 32,
) -> tuple[Path, Path]:
    """Write ``root/embeddings`` and ``root/triplets`` (images x per_image triplets); return both."""
    rng = np.random.default_rng(seed)
    rotation, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    v = _unit(rng.standard_normal((images, dim)))
    t = _unit(v @ rotation + noise * rng.standard_normal((images, dim)) / np.sqrt(dim))
    n = images * per_image
    owner = np.repeat(np.arange(images), per_image)
    vocabulary = max(vocabulary, per_image)
    mod_vectors = _unit(rng.standard_normal((vocabulary, dim)))
    mod_of = np.concatenate([rng.choice(vocabulary, per_image, replace=False) for _ in range(images)])
    tu = _unit(v[owner] @ rotation + mod_vectors[mod_of])
    image_ids = [ids.stable_id("synthetic-image", str(i)) for i in range(images)]
    captions = [f"synthetic caption {i}" for i in range(images)]
    mods = [f"synthetic modification {k}" for k in range(vocabulary)]
    modified = [f"synthetic modified caption {j}" for j in range(n)]
    root = Path(root)
    embeddings, triplets = root / stages.EMBED, root / stages.TRIPLETS
    text_vectors = np.concatenate([t, mod_vectors, tu])
    _write_embeddings(embeddings, image_ids, v, captions + mods + modified, text_vectors)
    _write_triplets(triplets, image_ids, captions, [mods[k] for k in mod_of], modified, owner)
    return embeddings, triplets


def _write_embeddings(
    out: Path, image_ids: list[str], v: np.ndarray, texts: list[str], t: np.ndarray
) -> None:
    dim = v.shape[1]
    for kind in (IMAGES_DIR, TEXTS_DIR):
        (out / kind).mkdir(parents=True, exist_ok=True)
    image_columns = [pa.array(image_ids), to_column(v.astype(np.float16))]
    text_columns = [pa.array([text_id(s) for s in texts]), pa.array(texts), to_column(t.astype(np.float16))]
    image_table = pa.table(image_columns, schema=images_schema(dim, "synthetic"))
    text_table = pa.table(text_columns, schema=texts_schema(dim, "synthetic"))
    pq.write_table(image_table, out / IMAGES_DIR / PART, **PARQUET_OPTIONS)
    pq.write_table(text_table, out / TEXTS_DIR / PART, **PARQUET_OPTIONS)
    files = {f"{IMAGES_DIR}/{PART}": len(image_ids), f"{TEXTS_DIR}/{PART}": len(texts)}
    extra = {"embedding": {"dtype": "float16", "dim": dim, "normalised": True},
             "parts": {IMAGES_DIR: [PART], TEXTS_DIR: [PART]}}  # fmt: skip
    write_manifest(out, STAGE, {"synthetic": True}, [], files, extra=extra)


def _write_triplets(
    out: Path,
    image_ids: list[str],
    captions: list[str],
    mods: list[str],
    modified: list[str],
    owner: np.ndarray,
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    n = len(modified)
    columns = {
        "triplet_id": [ids.stable_id("synthetic-triplet", str(j)) for j in range(n)],
        "caption_id": [ids.stable_id("synthetic-caption", str(i)) for i in owner],
        "image_id": [image_ids[i] for i in owner],
        "caption": [captions[i] for i in owner],
        "modification": mods,
        "modified_caption": modified,
        "edit_type": ["synthetic"] * n,
        "llm_model": ["synthetic"] * n,
        "prompt_version": ["synthetic"] * n,
        "seed": [0] * n,
    }
    table = pa.table({k: columns[k] for k in TRIPLETS_SCHEMA.names}, schema=TRIPLETS_SCHEMA)
    pq.write_table(table, out / "triplets.parquet")
    write_manifest(out, "triplets", {"synthetic": True}, [], {"triplets.parquet": n})
