"""The embedding-cache stage, its training view, shards, verify and publish.

A tiny open_clip ViT with a seeded random init stands in for the real encoder (the vectors
mean nothing, but identities, caching, alignment and file formats are the same code path),
so the whole file runs in seconds. Captions and triplets directories are written in the
contract layout with real manifests; images are PNG files and members of a tar shard.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from scot_data import ids
from scot_data.captions.records import CAPTIONS_SCHEMA
from scot_data.embed import EmbedConfig, embed_stage, iter_wds_blocks, text_id
from scot_data.embed import compute as embed_compute
from scot_data.embed.records import to_matrix
from scot_data.embed.shards import plan_shards
from scot_data.encoders import create_encoder
from scot_data.manifest import read_manifest, write_manifest
from scot_data.outdir import LOCK_FILE
from scot_data.train.view import load_training_view
from scot_data.triplets.records import TRIPLETS_SCHEMA
from scot_data.verify import publish, verify
from tests.conftest import CORRUPT_IMAGE, TINY, TINY_CONFIG, png_bytes


def make_cfg(spec: str, **overrides) -> EmbedConfig:
    values = dict(encoder=spec, device="cpu", num_workers=2, image_batch_size=4, text_batch_size=8,
                  part_rows=5, block_rows=4, shard_max_rows=8)  # fmt: skip
    values.update(overrides)
    return EmbedConfig(**values)


# ------------------------------------------------------------------ input directories


def _write_captions(directory: Path, rows: list[dict]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    table = pa.table({k: [r[k] for r in rows] for k in CAPTIONS_SCHEMA.names}, schema=CAPTIONS_SCHEMA)
    pq.write_table(table, directory / "captions.parquet")
    write_manifest(directory, "captions", {"test": True}, [], {"captions.parquet": len(rows)})
    return directory


def _write_triplets(directory: Path, captions: list[dict], modification: str = "make it blue") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    rows = []
    for c in captions:
        rows.append({
            "triplet_id": ids.stable_id("t", c["caption_id"], modification), "caption_id": c["caption_id"],
            "image_id": c["image_id"], "caption": c["caption"], "modification": modification,
            "modified_caption": f"{c['caption']} in blue", "edit_type": "color", "llm_model": "template",
            "prompt_version": "test", "seed": 0,
        })  # fmt: skip
    table = pa.table({k: [r[k] for r in rows] for k in TRIPLETS_SCHEMA.names}, schema=TRIPLETS_SCHEMA)
    pq.write_table(table, directory / "triplets.parquet")
    write_manifest(directory, "triplets", {"test": True}, [], {"triplets.parquet": len(rows)})
    return directory


def caption_rows(root: Path, start: int, count: int, tar_every: int = 3) -> list[dict]:
    """``count`` images (every ``tar_every``-th one inside a tar shard), one caption each."""
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    shard = root / f"shard-{start:05d}.tar"
    rows, members = [], []
    for n in range(start, start + count):
        data = png_bytes(n, size=40)
        if n % tar_every == 0:
            members.append((f"{n:06d}.png", data))
            uri = f"tar://{shard}#{n:06d}.png"
        else:
            path = images / f"{n:06d}.png"
            path.write_bytes(data)
            uri = str(path)
        caption = f"a picture number {n}" if n % 4 else f"a shared caption {n % 8}"
        rows.append({"caption_id": ids.stable_id("c", str(n)), "image_id": ids.stable_id("i", str(n)),
                     "image_uri": uri, "caption": caption, "source": "test"})  # fmt: skip
    if members:
        with tarfile.open(shard, "w") as tar:
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return rows


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path, list[dict]]:
    rows = caption_rows(tmp_path / "src", 0, 12)
    captions = _write_captions(tmp_path / "captions", rows)
    triplets = _write_triplets(tmp_path / "triplets", rows[:9])
    return captions, triplets, rows


def load_direct(encoder, uri: str):
    if uri.startswith("tar://"):
        shard, _, member = uri[len("tar://") :].rpartition("#")
        with tarfile.open(shard) as tar:
            data = tar.extractfile(member).read()
    else:
        data = Path(uri).read_bytes()
    return encoder.image_transform(Image.open(io.BytesIO(data)))


# ------------------------------------------------------------------------------ stage


def test_identity_in_manifest_and_rerun_embeds_nothing(tiny_spec, inputs, tmp_path):
    captions, triplets, rows = inputs
    out = tmp_path / "emb"
    first = embed_stage(make_cfg(tiny_spec), captions, triplets, out, show_progress=False)
    texts = {r["caption"] for r in rows} | {"make it blue"} | {f"{r['caption']} in blue" for r in rows[:9]}
    assert (first.images, first.images_embedded, first.rejects) == (12, 12, 0)
    assert first.texts == first.texts_embedded == len(texts)
    manifest = read_manifest(out)
    encoder = create_encoder(tiny_spec, device="cpu")
    assert manifest["encoder"]["identity"] == encoder.identity.as_dict()
    assert manifest["encoder"]["key"] == encoder.identity.key()
    assert all(len(meta["sha256"]) == 64 for meta in manifest["outputs"].values())
    assert manifest["parts"]["images"] and manifest["shards"]
    # Same inputs and encoder: nothing embedded, nothing rewritten (runtime options may differ).
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != LOCK_FILE}
    again = embed_stage(make_cfg(tiny_spec, image_batch_size=3, num_workers=0), captions, triplets, out,
                        show_progress=False)  # fmt: skip
    assert again.skipped and again.images_embedded == again.texts_embedded == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != LOCK_FILE} == mtimes
    # A changed shard bound re-packs the shards but embeds nothing.
    repacked = embed_stage(make_cfg(tiny_spec, shard_max_rows=100), captions, triplets, out, show_progress=False)
    assert not repacked.skipped and repacked.images_embedded == repacked.texts_embedded == 0
    assert repacked.shards == 2 and verify(out) == []


def test_texts_are_deduplicated_by_content_hash(tiny_spec, inputs, tmp_path):
    captions, triplets, rows = inputs
    out = tmp_path / "emb"
    embed_stage(make_cfg(tiny_spec), captions, triplets, out, show_progress=False)
    table = pa.concat_tables(pq.read_table(p) for p in sorted((out / "texts").glob("*.parquet")))
    texts = table.column("text").to_pylist()
    assert len(texts) == len(set(texts))
    assert table.column("text_id").to_pylist() == [text_id(t) for t in texts]
    assert texts.count("make it blue") == 1


def test_training_view_rows_align_with_direct_encode(tiny_spec, inputs, tmp_path):
    captions, triplets, rows = inputs
    out = tmp_path / "emb"
    embed_stage(make_cfg(tiny_spec), captions, triplets, out, show_progress=False)
    view = load_training_view(out, triplets)
    table = pq.read_table(triplets / "triplets.parquet")
    assert list(view.triplet_ids) == table.column("triplet_id").to_pylist() and len(view) == 9
    for matrix in (view.V, view.T, view.T_m, view.T_u):
        assert matrix.dtype == np.float16 and matrix.shape == (9, 32)
        np.testing.assert_allclose(np.linalg.norm(matrix.astype(np.float32), axis=1), 1.0, atol=2e-3)
    encoder = create_encoder(tiny_spec, device="cpu")
    uri_of = {r["image_id"]: r["image_uri"] for r in rows}
    import torch

    pixels = torch.stack([load_direct(encoder, uri_of[i]) for i in table.column("image_id").to_pylist()])
    np.testing.assert_allclose(view.V.astype(np.float32), encoder.encode_images(pixels).numpy(), atol=2e-3)
    direct_tu = encoder.encode_texts(table.column("modified_caption").to_pylist()).numpy()
    np.testing.assert_allclose(view.T_u.astype(np.float32), direct_tu, atol=2e-3)
    direct_t = encoder.encode_texts(table.column("caption").to_pylist()).numpy()
    np.testing.assert_allclose(view.T.astype(np.float32), direct_t, atol=2e-3)
    assert np.all(view.tm_index == view.tm_index[0])  # one shared modification text, one row
    # The gallery matrix is a view over the Arrow buffer, not a copy per access.
    assert view.images.base is not None


def test_incremental_add_embeds_only_new_rows(tiny_spec, tmp_path):
    rows = caption_rows(tmp_path / "src", 0, 12)
    captions = _write_captions(tmp_path / "captions", rows)
    triplets = _write_triplets(tmp_path / "triplets", rows)
    out = tmp_path / "emb"
    first = embed_stage(make_cfg(tiny_spec), captions, triplets, out, show_progress=False)
    old_parts = {p.name: p.stat().st_mtime_ns for p in (out / "images").glob("*.parquet")}
    old_shards = set(s["name"] for s in read_manifest(out)["shards"])
    more = rows + caption_rows(tmp_path / "src", 12, 3)
    _write_captions(captions, more)
    _write_triplets(triplets, more)
    second = embed_stage(make_cfg(tiny_spec), captions, triplets, out, show_progress=False)
    assert second.images_embedded == 3 and second.images == 15
    old_texts = {r["caption"] for r in rows} | {f"{r['caption']} in blue" for r in rows}
    new_texts = ({r["caption"] for r in more[12:]} | {f"{r['caption']} in blue" for r in more[12:]}) - old_texts
    assert second.texts_embedded == len(new_texts) and second.texts == first.texts + len(new_texts)
    for name, mtime in old_parts.items():  # earlier parts untouched
        assert (out / "images" / name).stat().st_mtime_ns == mtime
    new_shards = set(s["name"] for s in read_manifest(out)["shards"])
    assert old_shards & new_shards  # full earlier shards kept their names ...
    assert second.shards_written < second.shards  # ... and were not rewritten
    assert verify(out) == []
    assert len(load_training_view(out, triplets)) == 15


def test_corrupt_image_goes_to_rejects_and_run_completes(tiny_spec, tmp_path):
    rows = caption_rows(tmp_path / "src", 0, 7)
    bad_file = tmp_path / "src" / "broken.png"
    bad_file.write_bytes(CORRUPT_IMAGE)
    rows[1]["image_uri"] = str(bad_file)
    rows[4]["image_uri"] = f"tar://{tmp_path / 'src' / 'shard-00000.tar'}#no-such-member.png"
    rows[5]["image_uri"] = str(tmp_path / "src" / "missing.png")
    captions = _write_captions(tmp_path / "captions", rows)
    triplets = _write_triplets(tmp_path / "triplets", rows)
    out = tmp_path / "emb"
    summary = embed_stage(make_cfg(tiny_spec), captions, triplets, out, show_progress=False)
    assert summary.images == 4 and summary.rejects == 3
    rejects = {r["row"]: r for r in pq.read_table(out / "rejects.parquet").to_pylist()}
    assert set(rejects) == {1, 4, 5}
    assert rejects[1]["file"] == str(bad_file) and "does not decode" in rejects[1]["reason"]
    assert "no-such-member.png" in rejects[4]["reason"] and rejects[4]["file"].endswith("shard-00000.tar")
    assert "unreadable" in rejects[5]["reason"]
    assert verify(out) == []
    view = load_training_view(out, triplets)
    assert len(view) == 4 and view.dropped == {"image_missing_or_rejected": 3}
    # Rejected images are remembered: a re-run after an input change does not retry them.
    _write_triplets(triplets, rows, modification="make it red")
    again = embed_stage(make_cfg(tiny_spec), captions, triplets, out, show_progress=False)
    assert again.images_embedded == 0 and again.rejects == 3


def test_interrupted_run_resumes_without_loss_or_duplicates(tiny_spec, inputs, tmp_path, monkeypatch):
    captions, triplets, rows = inputs
    out = tmp_path / "emb"
    real_write = embed_compute._write_image_part
    calls = []

    def write_then_die(plan, part):
        result = real_write(plan, part)
        calls.append(part.path.name)
        if len(calls) == 1:
            raise KeyboardInterrupt("killed after the first part")
        return result

    monkeypatch.setattr(embed_compute, "_write_image_part", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        embed_stage(make_cfg(tiny_spec, num_workers=0), captions, triplets, out, show_progress=False)
    monkeypatch.setattr(embed_compute, "_write_image_part", real_write)
    assert read_manifest(out) is None and len(list((out / "images").glob("*.parquet"))) == 1
    summary = embed_stage(make_cfg(tiny_spec), captions, triplets, out, show_progress=False)
    assert summary.images == 12 and summary.images_embedded == 12 - 5
    table = pa.concat_tables(pq.read_table(p) for p in (out / "images").glob("*.parquet"))
    assert sorted(table.column("image_id").to_pylist()) == sorted(r["image_id"] for r in rows)
    assert verify(out) == []


def test_reuse_adopts_another_outputs_rows_and_embeds_only_the_new(tiny_spec, tmp_path):
    """A second training set over the same images: its cache adopts the first's parts."""
    rows = caption_rows(tmp_path / "src", 0, 12)
    captions = _write_captions(tmp_path / "captions", rows)
    first_out, second_out = tmp_path / "first", tmp_path / "second"
    embed_stage(make_cfg(tiny_spec), captions, _write_triplets(tmp_path / "t1", rows), first_out, show_progress=False)
    other = _write_triplets(tmp_path / "t2", rows[:6], modification="make it green")
    second = embed_stage(make_cfg(tiny_spec), captions, other, second_out, show_progress=False, reuse=[first_out])
    assert second.images_embedded == 0 and second.images == 12
    assert second.texts_embedded == 1  # "make it green": every other text is the first set's
    assert verify(second_out) == [] and verify(first_out) == []
    fresh = embed_stage(make_cfg(tiny_spec), captions, other, tmp_path / "fresh", show_progress=False)
    reused_view, fresh_view = load_training_view(second_out, other), load_training_view(fresh.out_dir, other)
    assert np.array_equal(reused_view.V, fresh_view.V) and np.array_equal(reused_view.T_u, fresh_view.T_u)


def test_encoder_change_replaces_the_cache(tiny_spec, inputs, tmp_path):
    captions, triplets, _ = inputs
    out = tmp_path / "emb"
    first = embed_stage(make_cfg(tiny_spec), captions, triplets, out, show_progress=False)
    second = embed_stage(make_cfg(tiny_spec, seed=1), captions, triplets, out, show_progress=False)
    assert second.encoder_key != first.encoder_key
    assert second.images_embedded == 12 and second.images == 12
    keys = {pq.read_schema(p).metadata[b"scot.encoder_key"].decode() for p in out.rglob("part-*.parquet")
            if p.parent.name != "rejects"}  # fmt: skip
    assert keys == {second.encoder_key} and verify(out) == []


# ----------------------------------------------------------------------------- shards


def test_shards_hold_blocks_and_no_pickle(tiny_spec, inputs, tmp_path):
    captions, triplets, _ = inputs
    out = tmp_path / "emb"
    embed_stage(make_cfg(tiny_spec), captions, triplets, out, show_progress=False)
    manifest = read_manifest(out)
    shards = sorted((out / "wds").glob("*.tar"))
    assert {f"wds/{p.name}" for p in shards} == {s["name"] for s in manifest["shards"]}
    for shard in shards:
        with tarfile.open(shard) as tar:
            members = tar.getmembers()
            assert {Path(m.name).suffix for m in members} == {".npy", ".json"}
            for member in members:
                data = tar.extractfile(member).read()
                assert b"pickle" not in data.lower() and not data.startswith(b"\x80")  # no pickle protocol
                if member.name.endswith(".npy"):
                    array = np.load(io.BytesIO(data), allow_pickle=False)
                    assert array.dtype == np.dtype("<f2") and array.ndim == 2 and array.shape[0] <= 4
        shard_meta = next(s for s in manifest["shards"] if s["name"] == f"wds/{shard.name}")
        assert shard_meta["rows"] <= 8
    # Streaming the shards gives back exactly the Parquet rows.
    parquet = {}
    for path in (out / "images").glob("*.parquet"):
        table = pq.read_table(path)
        parquet.update(zip(table.column(0).to_pylist(), to_matrix(table.column("embedding"))))
    streamed = {}
    for block in iter_wds_blocks(out, kind="images"):
        assert len(block.ids) <= 4
        streamed.update(zip(block.ids, block.embeddings))
    assert streamed.keys() == parquet.keys()
    assert all(np.array_equal(streamed[k], parquet[k]) for k in parquet)
    texts = [t for block in iter_wds_blocks(out, kind="texts") for t in block.texts]
    assert "make it blue" in texts


def test_stream_reader_refuses_non_npy_members(tmp_path):
    shard = tmp_path / "evil.tar"
    with tarfile.open(shard, "w") as tar:
        for name, data in (("x.pyd", b"\x80\x04K\x01."), ("x.json", b"{}")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(ValueError, match="never unpickled"):
        list(iter_wds_blocks([shard]))


def test_shard_plan_respects_rows_and_bytes():
    row_ids = [f"{i:020x}" for i in range(100)]
    costs = [25] * 100
    plans = plan_shards("images", row_ids, costs, 512, "k", block_rows=16, max_rows=40, max_bytes=10**9)
    assert [p.rows for p in plans] == [40, 40, 20]
    assert all(b - a <= 16 for p in plans for a, b in p.blocks)
    small = plan_shards("images", row_ids, costs, 512, "k", block_rows=1024, max_rows=10**6, max_bytes=64 * 1024)
    assert sum(p.rows for p in small) == 100 and len(small) > 1
    assert plans[0].name == plan_shards("images", row_ids, costs, 512, "k", 16, 40, 10**9)[0].name


def test_written_shards_stay_within_byte_bound(tiny_spec, inputs, tmp_path):
    captions, triplets, _ = inputs
    out = tmp_path / "emb"
    embed_stage(make_cfg(tiny_spec, shard_max_rows=10**6, shard_max_bytes=64 * 1024, block_rows=1024),
                captions, triplets, out, show_progress=False)  # fmt: skip
    assert all(p.stat().st_size <= 64 * 1024 for p in (out / "wds").glob("*.tar"))


# ----------------------------------------------------------------------------- verify


def test_verify_names_truncated_or_altered_files(tiny_spec, inputs, tmp_path):
    captions, triplets, _ = inputs
    out = tmp_path / "emb"
    embed_stage(make_cfg(tiny_spec), captions, triplets, out, show_progress=False)
    assert verify(out) == []
    shard = sorted((out / "wds").glob("images-*.tar"))[0]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    problems = verify(out)
    assert len(problems) == 1 and shard.name in problems[0] and "truncated" in problems[0]
    shard.write_bytes(data[:1000] + bytes([data[1000] ^ 1]) + data[1001:])
    problems = verify(out)
    assert len(problems) == 1 and shard.name in problems[0] and "sha256" in problems[0]
    shard.write_bytes(data)
    part = sorted((out / "texts").glob("*.parquet"))[0]
    part.unlink()
    assert verify(out) == [f"{out}/texts/{part.name}: missing"]


def test_verify_deep_checks_catch_nan_with_a_matching_checksum(tiny_spec, inputs, tmp_path):
    captions, triplets, _ = inputs
    out = tmp_path / "emb"
    embed_stage(make_cfg(tiny_spec), captions, triplets, out, show_progress=False)
    part = sorted((out / "images").glob("*.parquet"))[0]
    table = pq.read_table(part)
    matrix = to_matrix(table.column("embedding")).copy()
    matrix[0, 0] = np.nan
    from scot_data.embed.records import PARQUET_OPTIONS, to_column

    pq.write_table(table.set_column(1, table.schema.field(1), to_column(matrix)), part, **PARQUET_OPTIONS)
    manifest = read_manifest(out)  # a manifest rewritten to match: only the content check can tell
    from scot_data.hashing import sha256_file

    name = f"images/{part.name}"
    manifest["outputs"][name].update(sha256=sha256_file(part), bytes=part.stat().st_size)
    (out / "manifest.json").write_text(json.dumps(manifest))
    problems = verify(out)
    assert len(problems) == 1 and part.name in problems[0] and "NaN" in problems[0]
    assert verify(tmp_path / "nowhere")[0].endswith("missing (the stage has not finished there)")


# ---------------------------------------------------------------------------- publish


def test_publish_to_a_local_directory_is_resumable(tiny_spec, inputs, tmp_path):
    captions, triplets, _ = inputs
    out = tmp_path / "emb"
    embed_stage(make_cfg(tiny_spec), captions, triplets, out, show_progress=False)
    first = publish(out, str(tmp_path / "published"))
    assert first.uploaded[-1] == "manifest.json" and not first.skipped
    assert verify(tmp_path / "published") == []
    (tmp_path / "published" / "manifest.json").unlink()  # as if killed before the manifest
    (tmp_path / "published" / first.uploaded[0]).unlink()
    second = publish(out, str(tmp_path / "published"))
    assert second.uploaded == [first.uploaded[0], "manifest.json"]
    third = publish(out, str(tmp_path / "published"))
    assert third.uploaded == [] and verify(tmp_path / "published") == []


@pytest.fixture
def s3_server():
    """A real S3-compatible server (moto) on 127.0.0.1, stopped after the test."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    options = {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
    try:
        import boto3
        import s3fs

        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                     aws_secret_access_key="testing").create_bucket(Bucket="scot-test")  # fmt: skip
        s3fs.S3FileSystem.clear_instance_cache()
        yield options
    finally:
        server.stop()


@pytest.mark.timeout(120)
def test_publish_round_trip_through_local_s3(tiny_spec, inputs, tmp_path, s3_server):
    captions, triplets, _ = inputs
    out = tmp_path / "emb"
    embed_stage(make_cfg(tiny_spec), captions, triplets, out, show_progress=False)
    url = "s3://scot-test/runs/emb"
    first = publish(out, url, storage_options=s3_server)
    assert first.uploaded[-1] == "manifest.json" and len(first.uploaded) == len(read_manifest(out)["outputs"]) + 1
    assert verify(url, storage_options=s3_server) == []
    again = publish(out, url, storage_options=s3_server)
    assert again.uploaded == [] and len(again.skipped) == len(first.uploaded)
    local = {k: v for b in iter_wds_blocks(out, "images") for k, v in zip(b.ids, b.embeddings)}
    remote = {k: v for b in iter_wds_blocks(url, "images", storage_options=s3_server) for k, v in zip(b.ids, b.embeddings)}
    assert remote.keys() == local.keys() and all(np.array_equal(remote[k], local[k]) for k in local)
    import s3fs

    fs = s3fs.S3FileSystem(**s3_server)
    shard = read_manifest(out)["shards"][0]["name"]
    fs.pipe(f"scot-test/runs/emb/{shard}", b"not a tar")
    problems = verify(url, storage_options=s3_server)
    assert len(problems) == 1 and shard in problems[0]


# ------------------------------------------------------------------------ kill -9, flow

KILL_SCRIPT = """
import json, sys, open_clip, pathlib
path = pathlib.Path(sys.argv[1]) / "{name}.json"
path.write_text(json.dumps({config}))
open_clip.add_model_config(path)
from scot_data.embed import EmbedConfig, embed_stage
cfg = EmbedConfig(encoder="open_clip:{name}", device="cpu", num_workers=1, image_batch_size=2, part_rows=2,
                  block_rows=4, shard_max_rows=8)
embed_stage(cfg, sys.argv[2], sys.argv[3], sys.argv[4], show_progress=False)
"""


@pytest.mark.slow
def test_kill_9_mid_run_then_resume(tiny_spec, tmp_path):
    rows = caption_rows(tmp_path / "src", 0, 80)
    captions = _write_captions(tmp_path / "captions", rows)
    triplets = _write_triplets(tmp_path / "triplets", rows)
    out = tmp_path / "emb"
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT.format(name=TINY, config=TINY_CONFIG))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    process = subprocess.Popen([sys.executable, str(script), str(tmp_path), str(captions), str(triplets), str(out)],
                               env=env, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list((out / "images").glob("part-*.parquet"))) < 3:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert read_manifest(out) is None
    done_before = len(list((out / "images").glob("part-*.parquet")))
    assert 3 <= done_before < 40
    summary = embed_stage(make_cfg(tiny_spec, part_rows=2), captions, triplets, out, show_progress=False)
    assert summary.images == 80 and summary.images_embedded <= 80 - 2 * done_before
    table = pa.concat_tables(pq.read_table(p) for p in (out / "images").glob("*.parquet"))
    assert sorted(table.column("image_id").to_pylist()) == sorted(r["image_id"] for r in rows)
    assert verify(out) == [] and len(load_training_view(out, triplets)) == 80


@pytest.mark.slow
def test_embed_flow_runs_and_reruns(tiny_spec, inputs, tmp_path):
    from prefect.testing.utilities import prefect_test_harness

    from flows.embed import embed_flow

    captions, triplets, _ = inputs
    config = make_cfg(tiny_spec).model_dump(mode="json")
    with prefect_test_harness(server_startup_timeout=120):
        first = embed_flow(config, str(captions), str(triplets), str(tmp_path / "emb"))
        second = embed_flow(config, str(captions), str(triplets), str(tmp_path / "emb"))
    assert first["images"] == 12 and not first["skipped"] and second["skipped"]
    assert verify(tmp_path / "emb") == []
