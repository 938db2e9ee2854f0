"""``scot export`` and ``read_embeddings``: scot's cache in the layouts other tools read.

One tiny embed folder (the seeded random open_clip of conftest, 13 images of which one does
not decode, 14 captions: image 0 has two) is built once for the module; every test reads
it or an export of it. The readers are the ecosystem's own (embedding-reader, autofaiss,
HF datasets, duckdb, webdataset), each checked against the vectors scot wrote.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from scot_data import read_embeddings
from scot_data.cli import app
from scot_data.embed import embed_stage, text_id
from scot_data.errors import ScotInputError
from scot_data.export import ExportConfig, export_stage
from scot_data.manifest import read_manifest
from scot_data.verify import publish
from tests import test_embed
from tests.conftest import CORRUPT_IMAGE
from tests.test_embed import _write_captions, _write_triplets, caption_rows, make_cfg

REPO = Path(__file__).resolve().parents[1]
s3_server = test_embed.s3_server  # the moto S3 server fixture


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory, tiny_spec: str) -> dict:
    """Captions, triplets and their embed folder, with the vectors scot holds by id."""
    root = tmp_path_factory.mktemp("export")
    rows = caption_rows(root / "src", 0, 12)
    rows.append({**rows[0], "caption_id": "second-caption-of-0", "caption": "image zero again"})
    broken = root / "src" / "broken.png"
    broken.write_bytes(CORRUPT_IMAGE)
    rows.append({**rows[1], "caption_id": "broken", "image_id": "broken-image", "image_uri": str(broken)})
    captions = _write_captions(root / "captions", rows)
    triplets = _write_triplets(root / "triplets", rows[:9])
    embed = root / "embed"
    embed_stage(make_cfg(tiny_spec), captions, triplets, embed, show_progress=False)
    vectors = {kind: dict(zip(*read_embeddings(embed, kind))) for kind in ("image", "text")}
    return {"root": root, "rows": rows, "captions": captions, "triplets": triplets, "embed": embed, **vectors}


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_read_embeddings_matches_the_cache_and_imports_no_torch(cache):
    ids, matrix = read_embeddings(cache["embed"], "image")
    assert matrix.dtype == np.float16 and matrix.shape == (12, 32)  # the broken image was rejected
    assert sorted(ids) == sorted({r["image_id"] for r in cache["rows"][:12]})
    assert np.allclose(np.linalg.norm(matrix.astype(np.float32), axis=1), 1, atol=0.01)
    texts, _ = read_embeddings(cache["embed"], "text")
    assert text_id("image zero again") in texts and text_id("make it blue") in texts
    probe = ("import sys\nfrom scot_data import read_embeddings\n"
             f"ids, m = read_embeddings({str(cache['embed'])!r}, 'text')\n"
             "print(len(ids), m.shape[1], sorted(n for n in ('torch', 'open_clip') if n in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)  # fmt: skip
    assert done.stdout.split() == [str(len(texts)), "32", "[]"]
    with pytest.raises(ScotInputError, match="not a finished embed folder"):
        read_embeddings(cache["captions"], "image")
    with pytest.raises(ScotInputError, match="kind 'images'"):
        read_embeddings(cache["embed"], "images")


@pytest.mark.timeout(120)
def test_read_embeddings_over_s3_refuses_an_altered_part(cache, s3_server):
    import s3fs

    url = "s3://scot-test/runs/embed"
    publish(cache["embed"], url, storage_options=s3_server)
    ids, matrix = read_embeddings(url, "image", storage_options=s3_server)
    assert len(ids) == 12 and all(np.array_equal(matrix[i], cache["image"][k]) for i, k in enumerate(ids))
    part = read_manifest(cache["embed"])["parts"]["images"][0]
    s3fs.S3FileSystem(**s3_server).pipe(f"scot-test/runs/embed/images/{part}", b"PAR1 not a part PAR1")
    with pytest.raises(ScotInputError, match=f"images/{part}: .* bytes, manifest says"):
        read_embeddings(url, "image", storage_options=s3_server)


def test_clip_retrieval_export_aligns_each_caption_with_its_vectors(cache, tmp_path):
    out = tmp_path / "clip"
    result = CliRunner().invoke(app, ["export", str(cache["embed"]), str(out), "--block-rows", "5"])
    assert result.exit_code == 0, result.output
    stats = read_manifest(out)["stats"]
    # 14 captions: the broken image's caption has no image vector; image 0's two captions are two rows
    assert (stats["rows"], stats["captions_without_image"]) == ({"metadata": 13}, 1)
    assert stats["files_written"] == 9
    assert _files(out / "img_emb") == ["img_emb_0.npy", "img_emb_1.npy", "img_emb_2.npy"]
    assert _files(out / "metadata") == ["metadata_0.parquet", "metadata_1.parquet", "metadata_2.parquet"]
    meta = pq.read_table(out / "metadata").to_pylist()
    images = np.concatenate([np.load(out / "img_emb" / f"img_emb_{i}.npy") for i in range(3)])
    texts = np.concatenate([np.load(out / "text_emb" / f"text_emb_{i}.npy") for i in range(3)])
    assert images.dtype == np.float16 and images.shape == texts.shape == (13, 32)
    by_caption = {r["caption_id"]: r for r in cache["rows"]}
    for row, image, text in zip(meta, images, texts):
        assert row["image_path"] == by_caption[row["caption_id"]]["image_uri"]
        assert np.array_equal(image, cache["image"][row["image_id"]])
        assert np.array_equal(text, cache["text"][text_id(row["caption"])])
    in_order = [r["caption_id"] for r in cache["rows"] if r["caption_id"] != "broken"]
    assert [r["caption_id"] for r in meta] == in_order
    assert export_stage(ExportConfig(block_rows=5), cache["embed"], out).skipped


def test_a_killed_export_resumes_and_other_options_leave_no_stale_block(cache, tmp_path, monkeypatch):
    from scot_data.export import stage

    def killed_at_the_last_metadata(path, *args, **kwargs):
        if path.name == "metadata_2.parquet":
            raise KeyboardInterrupt
        return write(path, *args, **kwargs)

    out, write = tmp_path / "clip", stage.atomic_write_parquet
    monkeypatch.setattr(stage, "atomic_write_parquet", killed_at_the_last_metadata)
    with pytest.raises(KeyboardInterrupt):
        export_stage(ExportConfig(block_rows=5), cache["embed"], out)
    monkeypatch.undo()
    assert read_manifest(out) is None and (out / "export.progress.json").is_file()
    assert not list(out.glob("*.scot-tmp-*"))  # the vectors spilled for the gather went with the run
    resumed = export_stage(ExportConfig(block_rows=5), cache["embed"], out)
    assert (resumed.files_written, resumed.files_kept, resumed.rows) == (1, 8, {"metadata": 13})
    # other options: the earlier blocks are deleted, none is left for a reader's glob
    export_stage(ExportConfig(block_rows=8), cache["embed"], out)
    assert _files(out / "img_emb") == ["img_emb_0.npy", "img_emb_1.npy"]
    assert "export.progress.json" not in _files(out)


def test_npy_export_holds_every_distinct_row_in_float32(cache, tmp_path):
    out = tmp_path / "npy"
    summary = export_stage(ExportConfig(format="npy", dtype="float32", block_rows=1000), cache["embed"], out)
    assert summary.rows == {"img_ids": 12, "text_ids": len(cache["text"])}
    for kind, prefix in (("image", "img"), ("text", "text")):
        matrix = np.load(out / f"{prefix}_emb" / f"{prefix}_emb_0.npy")
        table = pq.read_table(out / f"{prefix}_ids" / f"{prefix}_ids_0.parquet")
        assert matrix.dtype == np.float32 and matrix.shape == (len(cache[kind]), 32)
        for row_id, vector in zip(table.column(0).to_pylist(), matrix):
            assert np.array_equal(vector, cache[kind][row_id].astype(np.float32))
    assert pq.read_table(out / "text_ids").column_names == ["text_id", "text"]


def test_export_refuses_unfinished_input_and_a_missing_captions_folder(cache, tmp_path):
    with pytest.raises(ScotInputError, match="not a finished embed directory"):
        export_stage(ExportConfig(), cache["triplets"], tmp_path / "a")
    with pytest.raises(ScotInputError, match="cannot go into the embed folder"):
        export_stage(ExportConfig(), cache["embed"], cache["embed"], force=True)
    with pytest.raises(ScotInputError, match="not a finished captions directory"):
        export_stage(ExportConfig(), cache["embed"], tmp_path / "b", captions_dir=cache["triplets"])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# ----------------------------------------------------------------- the ecosystem's readers


@pytest.fixture(scope="module")
def exports(cache, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("exports")
    export_stage(ExportConfig(block_rows=5), cache["embed"], root / "clip")
    export_stage(ExportConfig(format="npy", block_rows=5), cache["embed"], root / "npy")
    return {"clip": root / "clip", "npy": root / "npy"}


def test_embedding_reader_reads_vectors_with_their_metadata(cache, exports):
    """embedding-reader's ``parquet_npy`` format pairs each .npy with its metadata file."""
    from embedding_reader import EmbeddingReader

    out = exports["clip"]
    reader = EmbeddingReader(str(out / "img_emb"), file_format="parquet_npy",
                             metadata_folder=str(out / "metadata"), meta_columns=["image_id", "caption"])
    assert (reader.count, reader.dimension) == (13, 32)
    seen = 0
    for matrix, meta in reader(batch_size=4, show_progress=False):
        for vector, image in zip(matrix, meta["image_id"]):
            assert np.array_equal(vector, cache["image"][image].astype(np.float32))
        seen += len(matrix)
    assert seen == 13


def test_autofaiss_builds_an_index_where_each_image_finds_itself(cache, exports, tmp_path):
    """autofaiss 2.18 pins numpy<2, so it is installed --no-deps (scripts/setup.sh) and runs
    on numpy 2; ``save_on_disk=False`` because its index-info JSON dump fails on numpy
    floats there, so the index is written with faiss itself."""
    import faiss
    from autofaiss import build_index

    out = exports["npy"]
    index, infos = build_index(str(out / "img_emb"), save_on_disk=False, metric_type="ip", verbose=40,
                               max_index_memory_usage="100MB", current_memory_available="1G")
    assert infos["nb vectors"] == 12 and index.ntotal == 12
    faiss.write_index(index, str(tmp_path / "knn.index"))
    vectors = np.concatenate([np.load(p) for p in sorted((out / "img_emb").glob("*.npy"))]).astype(np.float32)
    scores, found = faiss.read_index(str(tmp_path / "knn.index")).search(vectors, 1)
    assert found.ravel().tolist() == list(range(12)) and np.allclose(scores, 1, atol=0.01)


def test_hf_datasets_and_duckdb_read_the_tables(cache, exports, tmp_path):
    import datasets
    import duckdb

    captions, triplets = cache["captions"] / "captions.parquet", cache["triplets"] / "triplets.parquet"
    # one load per table: the splits of one load_dataset call must share a schema
    table = {name: datasets.load_dataset("parquet", data_files=str(path), split="train", cache_dir=str(tmp_path))
             for name, path in (("captions", captions), ("triplets", triplets))}  # fmt: skip
    assert (table["captions"].num_rows, table["triplets"].num_rows) == (14, 9)
    assert table["triplets"][0]["modification"] == "make it blue"
    assert table["captions"][12]["caption"] == "image zero again"
    sql = duckdb.connect()
    assert sql.execute(f"SELECT count(*) FROM '{captions}'").fetchone() == (14,)
    joined = sql.execute(
        f"SELECT t.triplet_id, m.image_path FROM '{triplets}' t "
        f"JOIN '{exports['clip']}/metadata/*.parquet' m USING (caption_id) ORDER BY t.triplet_id"
    ).fetchall()
    by_caption = {r["caption_id"]: r["image_uri"] for r in cache["rows"]}
    triplet_rows = pq.read_table(triplets).to_pylist()
    expected = sorted((t["triplet_id"], by_caption[t["caption_id"]]) for t in triplet_rows)
    assert joined == expected


def test_webdataset_reads_the_shards_with_its_standard_decoders(cache):
    """Each sample of an embed tar is a block: ``.npy`` (rows x dim float16) + ``.json`` (ids)."""
    import webdataset as wds

    manifest = read_manifest(cache["embed"])
    urls = [str(cache["embed"] / s["name"]) for s in manifest["shards"] if s["kind"] == "images"]
    found = {}
    for sample in wds.WebDataset(urls, shardshuffle=False).decode():
        assert sample["npy"].dtype == np.float16 and sample["json"]["kind"] == "images"
        found.update(zip(sample["json"]["ids"], sample["npy"]))
    assert found.keys() == cache["image"].keys()
    assert all(np.array_equal(found[k], cache["image"][k]) for k in found)
