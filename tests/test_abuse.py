"""Hostile inputs: NaN vectors, flipped bytes, lone surrogates, bad images, stray paths, odd options.

Each must end in a one-line error or a reject that names the file and the record, never
in a run that "succeeds" with garbage, a traceback, or a reason that changes per run.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from scot_data.captions.config import CocoCaptions
from scot_data.captions.ingest import ingest_captions
from scot_data.combiner.checkpoint import latest_checkpoint
from scot_data.embed import shards as shards_module
from scot_data.embed.records import PARQUET_OPTIONS, to_column, to_matrix
from scot_data.embed.shards import block_json, iter_wds_blocks, npy_bytes
from scot_data.embed.view import load_embeddings
from scot_data.errors import ScotInputError
from scot_data.evaluate.retriever import Retriever
from scot_data.images import ImageDataset, ImageItem
from scot_data.manifest import read_manifest, write_manifest
from scot_data.outdir import holds, stage_folder
from scot_data.train import stage as train_module
from scot_data.train.stage import TrainConfig, train_combiner
from scot_data.train.synthetic import PART, write_synthetic_cache
from scot_data.train.view import load_training_view
from scot_data.verify import verify

SMALL = {
    "epochs": 2,
    "batch_size": 8,
    "val_fraction": 0.0,
    "checkpoint_every": 2,
    "amp": False,
    "device": "cpu",
}


@pytest.fixture
def cache(tmp_path: Path) -> tuple[Path, Path]:
    return write_synthetic_cache(tmp_path / "cache", images=8, per_image=4, dim=16)


def _poison(embeddings: Path, kind: str, row: int) -> Path:
    """Set one float16 of ``row`` to NaN and re-write the manifest to match, as an encoder
    that produced the NaN itself would have: the files are consistent, the vector is not."""
    part = embeddings / kind / PART
    table = pq.read_table(part)
    matrix = to_matrix(table.column("embedding")).copy()
    matrix[row, 3] = np.nan
    table = table.set_column(table.schema.get_field_index("embedding"), "embedding", to_column(matrix))
    pq.write_table(table, part, **PARQUET_OPTIONS)
    manifest = read_manifest(embeddings)
    files = {name: meta["rows"] for name, meta in manifest["outputs"].items()}
    extra = {"embedding": manifest["embedding"], "parts": manifest["parts"]}
    write_manifest(embeddings, manifest["stage"], manifest["config"], [], files, extra=extra)
    return part


# ---------------------------------------------------------------- 1. NaN and altered parts


def test_nan_vector_is_refused_by_the_training_view(cache: tuple[Path, Path]) -> None:
    embeddings, triplets = cache
    part = _poison(embeddings, "images", row=3)
    image_id = pq.read_table(part).column("image_id")[3].as_py()
    with pytest.raises(ScotInputError) as error:
        load_training_view(embeddings, triplets)
    assert str(error.value) == f"{part}: row 3 (image_id {image_id}): embedding has NaN/inf values"


def test_nan_vector_stops_training_before_it_writes_anything(
    cache: tuple[Path, Path], tmp_path: Path
) -> None:
    embeddings, triplets = cache
    _poison(embeddings, "texts", row=0)
    out = tmp_path / "combiner"
    with pytest.raises(ScotInputError, match=r"texts/part-00000\.parquet: row 0 "):
        train_combiner(TrainConfig(**SMALL), embeddings, triplets, out, show_progress=False)
    assert not (out / "manifest.json").exists() and not (out / "summary.json").exists()


def test_scot_train_on_a_nan_cache_exits_2_with_one_line(cache: tuple[Path, Path], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from scot_data.cli import app

    embeddings, triplets = cache
    part = _poison(embeddings, "images", row=0)
    image_id = pq.read_table(part).column("image_id")[0].as_py()
    out = tmp_path / "combiner"
    args = ["train", "--embeddings", str(embeddings), "--triplets", str(triplets), "--out", str(out),
            "--epochs", "1", "--batch-size", "8", "--device", "cpu", "--no-progress"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert result.stderr == f"error: {part}: row 0 (image_id {image_id}): embedding has NaN/inf values\n"
    assert not (out / "manifest.json").exists()


def test_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(
    cache: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    embeddings, triplets = cache
    real_forward = train_module.ScotLoss.forward
    calls = {"n": 0}

    def nan_from_step_3(self, *args):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        loss = real_forward(self, *args)
        return loss * torch.nan if calls["n"] >= 3 else loss

    monkeypatch.setattr(train_module.ScotLoss, "forward", nan_from_step_3)
    out = tmp_path / "combiner"
    with pytest.raises(ScotInputError) as error:
        train_combiner(TrainConfig(**SMALL), embeddings, triplets, out, show_progress=False)
    last = out / "checkpoints" / "step-00000002"
    assert str(error.value) == (
        f"{out}: training loss is nan at step 3 (check the embeddings and the learning rate); "
        f"the last good checkpoint is {last}"
    )
    assert latest_checkpoint(out) == last
    assert not (out / "manifest.json").exists() and not (out / "summary.json").exists()
    logged = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert logged == [1, 2]


def test_verify_names_the_file_and_row_of_a_nan_vector(cache: tuple[Path, Path]) -> None:
    embeddings, _ = cache
    _poison(embeddings, "images", row=5)
    assert verify(embeddings) == [f"{embeddings}/images/{PART}: 1 rows with NaN/inf (first row 5)"]


def test_flipped_byte_in_a_part_is_refused_by_the_training_view(cache: tuple[Path, Path]) -> None:
    embeddings, triplets = cache
    part = embeddings / "texts" / PART
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    assert verify(embeddings) == [f"{embeddings}/texts/{PART}: sha256 differs from the manifest (altered)"]
    with pytest.raises(ScotInputError) as error:
        load_training_view(embeddings, triplets)
    assert str(error.value) == f"{part}: sha256 differs from the manifest (altered; run scot verify)"


def test_truncated_part_is_refused_by_the_training_view(cache: tuple[Path, Path]) -> None:
    embeddings, triplets = cache
    part = embeddings / "images" / PART
    size = part.stat().st_size
    part.write_bytes(part.read_bytes()[:-10])
    with pytest.raises(ScotInputError) as error:
        load_training_view(embeddings, triplets)
    assert str(error.value) == f"{part}: {size - 10} bytes, manifest says {size} (truncated or altered)"


def test_large_parts_are_checked_by_size_only(
    cache: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from scot_data import manifest

    embeddings, triplets = cache
    monkeypatch.setattr(manifest, "HASH_BELOW_BYTES", 100)  # every part counts as large ...
    monkeypatch.setattr(
        manifest, "sha256_file", lambda path: pytest.fail(f"{path} re-hashed")
    )  # ... so none is hashed
    assert len(load_training_view(embeddings, triplets)) == 32
    part = embeddings / "images" / PART
    part.write_bytes(part.read_bytes() + b"x")
    with pytest.raises(
        ScotInputError, match=r"part-00000\.parquet: \d+ bytes, manifest says \d+ \(truncated or altered\)$"
    ):
        load_training_view(embeddings, triplets)


def test_retriever_never_returns_padding_ids() -> None:
    matrix = np.eye(3, 4, dtype=np.float16)
    queries = np.array([[np.nan] * 4, [0, 1, 0, 0]], np.float32)
    for use_faiss in (True, False):
        retriever = Retriever(["a", "b", "c"], matrix, use_faiss=use_faiss)
        found = retriever.search(queries, k=2)
        assert found.ids == [[], ["b", found.ids[1][1]]] and found.ids[1][1] in {"a", "c"}
        assert found.rows[0].tolist() == [-1, -1] and found.scores[0].tolist() == [-np.inf, -np.inf]
        assert retriever.search(queries[1:], k=10).ids[0][0] == "b"
        assert len(retriever.search(queries[1:], k=10).ids[0]) == 3
    poisoned = matrix.copy()
    poisoned[0, 0] = np.nan  # a NaN gallery row scores NaN, which torch.topk ranks first
    found = Retriever(["a", "b", "c"], poisoned, use_faiss=False).search(queries[1:], k=3)
    assert found.ids == [["b", found.ids[0][1]]] and found.scores[0][0] == 1.0
    assert found.rows[0].tolist()[::2] == [1, -1] and found.scores[0][2] == -np.inf


# ------------------------------------------------------------ 2. a lone surrogate in a caption


def test_lone_surrogate_caption_is_rejected_and_the_run_continues(coco_dir: Path, tmp_path: Path) -> None:
    annotations = coco_dir / "annotations/captions_train2017.json"
    data = json.loads(annotations.read_text())
    data["annotations"].append({"id": 22, "image_id": 2, "caption": "a cat \ud800 on a sofa"})
    data["images"].append({"id": 7, "file_name": "bad\udcff.jpg"})
    data["annotations"].append({"id": 23, "image_id": 7, "caption": "a fine caption"})
    annotations.write_text(json.dumps(data))  # ensure_ascii: valid JSON with \ud800 escapes
    cfg = CocoCaptions(input=annotations, images=coco_dir / "train2017")
    summary = ingest_captions(cfg, tmp_path / "out", show_progress=False)
    rejects = {r["record"]: r for r in pq.read_table(tmp_path / "out/rejects.parquet").to_pylist()}
    assert rejects["annotations[12]"] == {
        "file": str(annotations), "record": "annotations[12]",
        "reason": "caption is not valid UTF-8 text (lone surrogate '\\ud800' at character 6)",
    }  # fmt: skip
    assert rejects["annotations[13]"]["reason"] == (
        "image key is not valid UTF-8 text (lone surrogate '\\udcff' at character 3)"
    )
    assert summary.rows == 5 and summary.rejects == 10


def test_stable_id_names_a_lone_surrogate() -> None:
    from scot_data import ids

    with pytest.raises(
        ValueError, match=r"^id part 2 is not valid UTF-8 text \(lone surrogate '\\ud800' at character 1\)$"
    ):
        ids.stable_id("caption", "x\ud800")


# ------------------------------------------------------- 3. reasons that name the file, stably


def test_caption_stage_rejects_of_an_empty_image_are_stable(coco_dir: Path, tmp_path: Path) -> None:
    empty = coco_dir / "train2017" / "000000000004.jpg"
    empty.write_bytes(b"")
    cfg = CocoCaptions(input=coco_dir / "annotations/captions_train2017.json", images=coco_dir / "train2017")
    first = ingest_captions(cfg, tmp_path / "one", show_progress=False)
    ingest_captions(cfg, tmp_path / "two", show_progress=False)
    one, two = (pq.read_table(tmp_path / d / "rejects.parquet") for d in ("one", "two"))
    assert one.equals(two)
    reasons = {r["record"]: r["reason"] for r in one.to_pylist()}
    assert reasons["annotations[8]"] == "image_id 42 has no image record"
    assert (
        reasons["annotations[4]"] == f"image does not decode: {empty.resolve()}: cannot identify image file"
    )
    corrupt = (coco_dir / "train2017" / "000000000005.jpg").resolve()
    assert reasons["annotations[6]"] == f"image does not decode: {corrupt}: cannot identify image file"
    assert not any("0x" in r for r in reasons.values())
    assert first.reject_reasons["image does not decode"] == 2


def test_embed_stage_reason_of_an_empty_image_names_the_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    reasons = [ImageDataset([ImageItem("i", str(empty), 0)], transform=torch.as_tensor)[0] for _ in range(2)]
    assert (
        reasons[0] == reasons[1] == (0, None, f"image does not decode: {empty}: cannot identify image file")
    )


# ------------------------------------------- 4. user-supplied files and options of scot search


@pytest.fixture(scope="module")
def gallery(tiny_spec: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished embedding cache of a tiny CIRR-layout benchmark's val images."""
    from scot_data.evaluate.evaluate import EvalConfig, evaluate
    from tests.test_evaluate import cirr_layout

    tmp = tmp_path_factory.mktemp("gallery")
    root = cirr_layout(tmp / "cirr")
    evaluate(EvalConfig(benchmark="cirr", data=root, encoder=tiny_spec, device="cpu", num_workers=0),
             tmp / "out", show_progress=False)  # fmt: skip
    return tmp / "out" / "cache" / "cirr-val"


def _scot(*args: str) -> tuple[int, str]:
    from typer.testing import CliRunner

    from scot_data.cli import app

    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stderr


def _search(gallery: Path, *args: str) -> tuple[int, str]:
    return _scot("search", "--gallery", str(gallery), "--device", "cpu", *args)


def _bomb_png(path: Path) -> Path:
    """A 1x1 PNG whose header claims 20000 x 20000 pixels, over twice PIL's MAX_IMAGE_PIXELS."""
    import io
    import struct
    import zlib

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("P", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = bytearray(data[12:29])  # chunk type + 13 header bytes
    ihdr[4:12] = struct.pack(">II", 20000, 20000)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    path.write_bytes(bytes(data))
    return path


def test_search_names_an_image_that_does_not_decode(gallery: Path, tmp_path: Path) -> None:
    text = tmp_path / "notanimage.jpg"
    text.write_text("hello, not an image\n")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    for image in (text, empty):
        code, stderr = _search(gallery, "--image", str(image))
        assert (code, stderr) == (
            2,
            f"error: --image {image}: image does not decode: cannot identify image file\n",
        )


def test_search_names_a_decompression_bomb(gallery: Path, tmp_path: Path) -> None:
    bomb = _bomb_png(tmp_path / "bomb.png")
    code, stderr = _search(gallery, "--image", str(bomb))
    assert code == 2 and stderr.count("\n") == 1
    assert stderr.startswith(
        f"error: --image {bomb}: image does not decode: Image size (400000000 pixels) exceeds"
    )


def test_search_names_a_combiner_file_that_is_not_a_combiner(gallery: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    missing = tmp_path / "missing.safetensors"
    noise = tmp_path / "noise.safetensors"
    noise.write_bytes(np.random.default_rng(0).bytes(256))
    other = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(1)}, str(other))
    expected = {
        missing: "no such file",
        noise: "not a safetensors file",
        other: "not a Combiner checkpoint (no tensor 'output_layer.weight')",
    }
    image = str(gallery.parents[2] / "cirr" / "val" / "img5.png")
    for path, reason in expected.items():
        code, stderr = _search(gallery, "--image", image, "--text", "red", "--combiner", str(path))
        assert (code, stderr) == (2, f"error: {path}: {reason}\n")


@pytest.mark.parametrize("k", ["0", "-3"])
def test_search_names_a_k_below_one(gallery: Path, k: str) -> None:
    assert _search(gallery, "--text", "red", "-k", k) == (2, f"error: -k/--top-k {k}: must be at least 1\n")


# ----------------------------------------------------------- 5. folders, spec names, captions


def test_wds_blocks_of_a_folder_without_a_manifest_name_it(tmp_path: Path) -> None:
    from scot_data.embed import iter_wds_blocks

    with pytest.raises(ScotInputError) as error:
        next(iter_wds_blocks(tmp_path, kind="images"))
    assert str(error.value) == f"{tmp_path}: no manifest.json (not a finished embed directory)"


@pytest.mark.parametrize("name", ["../../x", "a/b", ".hidden", "a\\b", ""])
def test_spec_name_that_would_leave_shards_is_refused(tmp_path: Path, name: str) -> None:
    import yaml

    from scot_data.spec import load_spec

    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"name": name, "captions": {"format": "openclipart"}}))
    with pytest.raises(ScotInputError, match=rf"^{path}: name: ") as error:
        load_spec(path)
    assert "letters, digits" in str(error.value)


def test_shipped_spec_names_still_validate() -> None:
    from scot_data.spec import load_spec

    specs = sorted(Path(__file__).parents[1].glob("pipelines/*.yaml"))
    assert {load_spec(path).name for path in specs} >= {"demo", "coco-290k"}


def test_coco_file_name_outside_the_image_folder_is_rejected(coco_dir: Path, tmp_path: Path) -> None:
    annotations = coco_dir / "annotations/captions_train2017.json"
    data = json.loads(annotations.read_text())
    outside = tmp_path / "outside.jpg"
    outside.write_bytes((coco_dir / "train2017" / "000000000001.jpg").read_bytes())
    data["images"] += [{"id": 7, "file_name": str(outside)}, {"id": 8, "file_name": "../outside.jpg"}]
    data["annotations"] += [
        {"id": 22, "image_id": 7, "caption": "a dog"},
        {"id": 23, "image_id": 8, "caption": "a dog"},
    ]
    annotations.write_text(json.dumps(data))
    cfg = CocoCaptions(input=annotations, images=coco_dir / "train2017")
    summary = ingest_captions(cfg, tmp_path / "out", show_progress=False)
    rejects = {r["record"]: r["reason"] for r in pq.read_table(tmp_path / "out/rejects.parquet").to_pylist()}
    folder = (coco_dir / "train2017").resolve()
    assert rejects["annotations[12]"] == f"file_name {str(outside)!r} is outside the image folder {folder}"
    assert rejects["annotations[13]"] == f"file_name '../outside.jpg' is outside the image folder {folder}"
    assert summary.rows == 5


@pytest.mark.parametrize(
    ("caption", "reason"),
    [
        ("x" * 2001, "caption is 2001 characters, over the 2000 maximum"),
        ("a cat\x00 on a sofa", "caption has control character '\\x00' at character 5"),
        ("a \x1b[31mred\x1b[0m bus", "caption has control character '\\x1b' at character 2"),
    ],
)
def test_overlong_or_control_character_captions_are_rejected(
    coco_dir: Path, tmp_path: Path, caption: str, reason: str
) -> None:
    annotations = coco_dir / "annotations/captions_train2017.json"
    data = json.loads(annotations.read_text())
    data["annotations"].append({"id": 22, "image_id": 2, "caption": caption})
    data["annotations"].append({"id": 23, "image_id": 2, "caption": "x" * 2000 + "\t\n"})
    annotations.write_text(json.dumps(data))
    cfg = CocoCaptions(input=annotations, images=coco_dir / "train2017")
    summary = ingest_captions(cfg, tmp_path / "out", show_progress=False)
    rejects = {r["record"]: r["reason"] for r in pq.read_table(tmp_path / "out/rejects.parquet").to_pylist()}
    assert rejects["annotations[12]"] == reason and "annotations[13]" not in rejects
    assert summary.rows == 6


# ------------------------------------------ 8. output folders: ownership, one writer, readers


HOLDER = """
import sys, time
from scot_data.outdir import stage_folder
with stage_folder(sys.argv[1], sys.argv[2]):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def holder() -> Iterator[Callable[[Path, str], subprocess.Popen[str]]]:
    """Start a process that holds a folder as a stage's writer (as a running stage does)."""
    started: list[subprocess.Popen[str]] = []

    def hold(folder: Path, stage: str) -> subprocess.Popen[str]:
        process = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), stage], stdout=subprocess.PIPE,
                                   text=True, cwd=Path(__file__).parents[1])  # fmt: skip
        assert process.stdout is not None and process.stdout.readline() == "held\n"
        started.append(process)
        return process

    yield hold
    for process in started:
        process.kill()
        process.wait()


def _ingest_args(coco_dir: Path, out: Path, *extra: str) -> list[str]:
    annotations = coco_dir / "annotations/captions_train2017.json"
    return ["captions", "ingest", "--format", "coco", "--input", str(annotations),
            "--images", str(coco_dir / "train2017"), "--out", str(out), "--no-progress", *extra]  # fmt: skip


def test_out_on_a_foreign_folder_is_refused_and_nothing_there_is_touched(
    coco_dir: Path, tmp_path: Path
) -> None:
    """Issue 13 case 1: a stage's start used to delete every ``*.tmp-*`` under --out."""
    out = tmp_path / "d"
    report = out / "projects/deep/report.tmp-final.docx"
    report.parent.mkdir(parents=True)
    report.write_text("a person's report")
    (out / "notes.tmp-1.txt").write_text("mine")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code, output = _scot(*_ingest_args(coco_dir, out))
    assert code == 2 and output.count("\n") == 1, output
    assert output.startswith(f"error: --out {out}: not empty and not a captions folder (it holds ")
    assert "notes.tmp-1.txt, projects)" in output
    assert "--force" in output
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    # --force writes the stage's files beside them and still deletes nothing of theirs.
    code, output = _scot(*_ingest_args(coco_dir, out, "--force"))
    assert code == 0, output
    assert all(p.read_bytes() == data for p, data in before.items())
    assert read_manifest(out)["stage"] == "captions"


def test_folder_of_another_stage_is_refused_and_its_manifest_kept(coco_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "d"
    out.mkdir()
    manifest = json.dumps({"stage": "embed", "outputs": {}})
    (out / "manifest.json").write_text(manifest)
    code, output = _scot(*_ingest_args(coco_dir, out))
    assert code == 2 and "not empty and not a captions folder" in output
    assert (out / "manifest.json").read_text() == manifest


def test_second_writer_is_refused_naming_the_holder_until_it_is_gone(
    coco_dir: Path, tmp_path: Path, holder: Callable[[Path, str], subprocess.Popen[str]]
) -> None:
    """Issue 13 case 2: two writers of one folder. The second refuses with the holder's pid and
    command; once the holder is killed (-9) the lock is not stale and the run goes through."""
    out = tmp_path / "captions"
    process = holder(out, "captions")
    code, output = _scot(*_ingest_args(coco_dir, out))
    assert code == 2 and output.count("\n") == 1, output
    assert output.startswith(f"error: {out}: being written by pid {process.pid} (")
    assert "-c" in output and "wait for it to finish or stop it" in output
    assert read_manifest(out) is None
    process.kill()
    process.wait()
    code, output = _scot(*_ingest_args(coco_dir, out))
    assert code == 0, output
    assert read_manifest(out)["stage"] == "captions"


def test_reader_of_a_folder_being_written_is_refused(
    coco_dir: Path, tmp_path: Path, holder: Callable[[Path, str], subprocess.Popen[str]]
) -> None:
    """A finished caption folder that a writer is re-running is not read half-written."""
    captions = tmp_path / "captions"
    assert _scot(*_ingest_args(coco_dir, captions))[0] == 0
    process = holder(captions, "captions")
    code, output = _scot("triplets", "generate", "--backend", "template", "--captions", str(captions),
                         "--out", str(tmp_path / "triplets"), "--no-progress")  # fmt: skip
    assert code == 2 and output.startswith(f"error: {captions}: still being written by pid {process.pid} (")
    assert read_manifest(tmp_path / "triplets") is None


def test_claims_nest_in_one_process_and_end_with_the_stage(tmp_path: Path) -> None:
    """A pipeline's stage re-enters the folder its CLI claimed; a failed stage lets go."""
    out = tmp_path / "d"
    with stage_folder(out, "captions"), stage_folder(out, "captions"):
        assert holds(out)
    assert not holds(out)
    with pytest.raises(RuntimeError), stage_folder(out, "captions"):
        raise RuntimeError("the stage failed")
    assert not holds(out)
    with stage_folder(out, "captions"):  # taken again at once: nothing stale
        pass


def test_two_real_writers_never_mix_rows(coco_dir: Path, tmp_path: Path) -> None:
    """Two ``scot captions ingest`` into one folder at once: every run either finishes alone
    or is refused; the folder holds exactly one run's rows, as its manifest says."""
    out = tmp_path / "shared"
    args = [sys.executable, "-m", "scot_data", *_ingest_args(coco_dir, out)]
    runs = [subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for _ in range(3)]  # fmt: skip
    results = [(run.wait(timeout=300), run.stderr.read() if run.stderr else "") for run in runs]
    assert all(code == 0 or (code == 2 and "being written by pid" in err) for code, err in results), results
    assert any(code == 0 for code, _ in results)
    assert verify(out) == []
    rows = read_manifest(out)["outputs"]["captions.parquet"]["rows"]
    assert pq.read_table(out / "captions.parquet").num_rows == rows == 5


# ------------------------------------------- 9. WebDataset shards read back against the manifest


def _first_shard(embeddings: Path) -> Path:
    return embeddings / next(s["name"] for s in read_manifest(embeddings)["shards"] if s["kind"] == "images")


def _flip_vector_byte(shard: Path) -> None:
    """Flip one bit inside the first .npy payload of ``shard`` (past its 128-byte header)."""
    with tarfile.open(shard) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(".npy"))
    data = bytearray(shard.read_bytes())
    data[member.offset_data + 128 + 2] ^= 0x01
    shard.write_bytes(bytes(data))


def test_wds_blocks_refuse_a_shard_with_a_flipped_bit(gallery: Path, tmp_path: Path) -> None:
    """Issue 13 case 3: ``iter_wds_blocks`` used to return altered vectors."""
    copy = Path(shutil.copytree(gallery, tmp_path / "cache"))
    assert len(list(iter_wds_blocks(copy, "images"))) >= 1
    shard = _first_shard(copy)
    _flip_vector_byte(shard)
    with pytest.raises(ValueError, match=r"sha256 differs from the manifest \(altered") as error:
        list(iter_wds_blocks(copy, "images"))
    assert str(error.value).startswith(f"{shard}: ")


def test_wds_blocks_of_a_large_shard_are_hashed_as_they_stream(
    gallery: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above the hashing size a shard is checked at its end, before the next shard is opened."""
    monkeypatch.setattr(shards_module, "HASH_BELOW_BYTES", 100)
    copy = Path(shutil.copytree(gallery, tmp_path / "cache"))
    images = len(load_embeddings(copy, "images").ids)
    assert sum(len(b.ids) for b in iter_wds_blocks(copy, "images")) == images
    _flip_vector_byte(_first_shard(copy))
    with pytest.raises(ValueError, match="sha256 differs from the manifest"):
        list(iter_wds_blocks(copy, "images"))


def test_wds_blocks_refuse_a_nan_vector_naming_the_row(tmp_path: Path) -> None:
    """A shard list without a manifest (no bytes to compare) still never yields NaN vectors."""
    matrix = np.ones((3, 4), dtype=np.float16)
    matrix[1, 2] = np.nan
    shard = tmp_path / "x.tar"
    with tarfile.open(shard, "w") as tar:
        members = {"k.npy": npy_bytes(matrix), "k.json": block_json("images", 4, ["a", "b", "c"], None)}
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(ValueError, match=r"x\.tar: sample k: row 1 \(id 'b'\) is NaN or infinite"):
        list(iter_wds_blocks([shard]))


# ----------------------------------------- 10. the evaluation cache follows the images' content


def test_rewritten_gallery_image_is_embedded_again(tiny_spec: str, tmp_path: Path) -> None:
    """Issue 13 case 7: the cache was keyed by the name=path listing, so a changed image kept
    its old vector. Now the part holding the changed image is embedded again (4 images)."""
    from scot_data.embed.config import EmbedConfig
    from scot_data.evaluate.benchmark import Source
    from scot_data.evaluate.cirr import read
    from scot_data.evaluate.gallery import embed_benchmark
    from tests.conftest import png_bytes
    from tests.test_evaluate import cirr_layout

    root = cirr_layout(tmp_path / "cirr")
    cfg = EmbedConfig(encoder=tiny_spec, device="cpu", num_workers=0, part_rows=4)
    (bench,) = read(Source(root, "val"))
    first = embed_benchmark(bench, cfg, tmp_path / "cache", show_progress=False)
    again = embed_benchmark(bench, cfg, tmp_path / "cache", show_progress=False)
    assert again.summary.images_embedded == 0 and np.array_equal(again.gallery, first.gallery)
    changed = bench.names.index("img3")
    Path(bench.gallery["img3"]).write_bytes(png_bytes(40, size=48))
    after = embed_benchmark(bench, cfg, tmp_path / "cache", show_progress=False)
    assert after.summary.images_embedded == 4
    assert not np.allclose(after.gallery[changed], first.gallery[changed])
    others = [row for row in range(len(bench.names)) if row != changed]
    assert np.array_equal(after.gallery[others], first.gallery[others])
