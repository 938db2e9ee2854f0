"""``scot publish`` to an fsspec ``memory://`` URL and to the Hugging Face Hub, with no network.

The Hub cannot be reached from the tests, so huggingface_hub's ``HfFileSystem`` is replaced
at fsspec's registry by an in-memory filesystem that answers ``hf://`` (``FakeHub``, the only
double): URL checks, copy, manifest-last order, skips, the card and its read-back are scot's
own code against it, and the card is loaded by the real ``datasets`` library from a local
copy of the repository. The stage folders are real: the embed stage run with the tiny
seeded open_clip encoder the embed tests use, and its triplets.
"""

from __future__ import annotations

import importlib
import uuid
from pathlib import Path
from types import SimpleNamespace

import fsspec
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from fsspec.implementations.memory import MemoryFileSystem
from typer.testing import CliRunner

from scot_data import hub
from scot_data.cli import app
from scot_data.embed import embed_stage
from scot_data.embed.records import to_matrix
from scot_data.errors import ScotInputError
from scot_data.manifest import read_manifest
from scot_data.verify import publish, verify
from tests.test_embed import _write_captions, _write_triplets, caption_rows, make_cfg


class FakeHub(MemoryFileSystem):
    """``hf://datasets/OWNER/NAME/...`` kept in memory; ``writes`` records every upload in order."""

    protocol = "hf"
    store: dict = {}
    pseudo_dirs = [""]
    writes: list[str] = []

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        return MemoryFileSystem._strip_protocol("memory://" + path.removeprefix("hf://"))

    def put_file(self, lpath, rpath, **kwargs):
        self.writes.append(rpath)
        return super().put_file(lpath, rpath, **kwargs)

    def pipe_file(self, path, value, **kwargs):
        self.writes.append(path)
        return super().pipe_file(path, value, **kwargs)


@pytest.fixture
def fake_hub(monkeypatch) -> FakeHub:
    """The ``hf`` protocol served by ``FakeHub`` for this test, with repository me/demo created."""
    monkeypatch.setitem(importlib.import_module("fsspec.registry")._registry, "hf", FakeHub)
    FakeHub.store.clear()
    FakeHub.pseudo_dirs[:] = [""]
    FakeHub.writes.clear()
    fs = FakeHub()
    fs.mkdir("/datasets/me/demo")
    return fs


@pytest.fixture(scope="module")
def stage_folders(tmp_path_factory, tiny_spec) -> tuple[Path, Path]:
    """A finished embed folder (images, texts, rejects, WebDataset shards) and its triplets."""
    root = tmp_path_factory.mktemp("publish")
    rows = caption_rows(root / "src", 0, 12)
    captions = _write_captions(root / "captions", rows)
    triplets = _write_triplets(root / "triplets", rows[:9])
    embed_stage(make_cfg(tiny_spec), captions, triplets, root / "embed", show_progress=False)
    return root / "embed", triplets


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card[4:].split("\n---\n", 1)[0])


# ------------------------------------------------------------------------------ URLs


def test_hf_urls_are_parsed_and_bad_ones_refused_in_one_line():
    assert hub.hub_target("s3://bucket/x") is None
    assert hub.hub_target("hf://datasets/me/demo") == hub.HubTarget("me/demo", "")
    assert hub.hub_target("hf://datasets/me/demo/runs/embed/") == hub.HubTarget("me/demo", "runs/embed")
    bad = {
        "hf://me/model": "dataset repositories only",
        "hf://spaces/me/app": "dataset repositories only",
        "hf://datasets/me": "OWNER/NAME missing",
        "hf://datasets/me/demo@dev/x": "revision",
        "hf://datasets/me/de mo": "'de mo' is not a repository owner or name",
        "hf://datasets/-me/demo": "'-me'",
        "hf://datasets/me/demo/a/../b": "'..'",
        "hf://datasets/me/demo//b": "empty",
    }
    for url, reason in bad.items():
        with pytest.raises(ScotInputError) as caught:
            hub.hub_target(url)
        message = str(caught.value)
        assert message.startswith(f"{url}: ") and reason in message and "\n" not in message, message
        assert message.endswith(hub.USAGE)


# ------------------------------------------------------------------------------ the card


def _manifest(stage: str, outputs: dict[str, int | None], **extra) -> dict:
    described = {name: {"sha256": "0" * 64, "bytes": 1, "rows": rows} for name, rows in outputs.items()}
    return {"stage": stage, "config": {"k": 1}, "outputs": described, "created_at": "2026-01-02T03:04:05+00:00",
            "code_version": {"scot_data": "0.1.0", "git_commit": "abcdef1234567890"}, **extra}  # fmt: skip


def test_card_configs_splits_features_and_sizes():
    captions = hub.Folder(
        "runs/captions",
        _manifest("captions", {"captions.parquet": 12_000, "holdout.parquet": 300, "rejects.parquet": 0,
                               "stats.json": None}),  # fmt: skip
        {"captions": [("caption_id", "string"), ("caption", "string")]},
        frozenset({"captions.parquet", "holdout.parquet", "rejects.parquet", "stats.json", "manifest.json"}),
    )
    identity = {"backend": "open_clip", "model_name": "ViT-L-14", "weights": "openai", "weights_sha256": "f" * 64}
    embed_outputs = {"images/part-a.parquet": 5, "images/part-b.parquet": 4, "texts/part-a.parquet": 20,
                     "rejects.parquet": 2, "rejects/part-a.parquet": 2, "wds/images-1.tar": 9}  # fmt: skip
    embed = hub.Folder(
        "embed",
        _manifest("embed", embed_outputs, encoder={"spec": "open_clip:ViT-L-14", "key": "k" * 8, "identity": identity},
                  embedding={"dtype": "float16", "dim": 768, "normalised": True}),  # fmt: skip
        {"images": [("image_id", "string"), ("embedding", "fixed_size_binary[1536] (float16 x 768, little-endian)")]},
        # a part left from an older publish lies beside this one's: the glob would read it too
        frozenset(embed_outputs) | {"images/part-old.parquet", "manifest.json"},
    )
    card = hub.render_card("me/demo", [captions, embed], "cc-by-4.0")
    front = front_matter(card)
    assert front["license"] == "cc-by-4.0"
    assert front["size_categories"] == ["10K<n<100K"]  # the largest table: 12,000 captions
    assert front["task_categories"] == ["image-to-text", "text-to-image", "image-feature-extraction",
                                        "feature-extraction"]  # fmt: skip
    assert front["tags"] == ["scot", "composed-image-retrieval", "captions", "embed"]
    assert front["configs"] == [
        {"config_name": "runs-captions", "default": True, "data_files": [
            {"split": "train", "path": "runs/captions/captions.parquet"},
            {"split": "holdout", "path": "runs/captions/holdout.parquet"}]},
        {"config_name": "embed-images", "data_files": [
            {"split": "train", "path": ["embed/images/part-a.parquet", "embed/images/part-b.parquet"]}]},
        {"config_name": "embed-texts", "data_files": [{"split": "train", "path": "embed/texts/*.parquet"}]},
        {"config_name": "embed-rejects", "data_files": [{"split": "train", "path": "embed/rejects.parquet"}]},
    ]  # fmt: skip
    body = card.split("\n---\n", 1)[1]
    assert body.startswith(hub.MARKER)
    assert "| holdout | runs-captions | holdout | 1 | 300 |" in body
    assert "| rejects | (empty: no config) |  | 1 | 0 |" in body  # datasets cannot read an empty file
    assert "| images | embed-images | train | 2 | 9 |" in body
    assert "`embedding` fixed_size_binary[1536] (float16 x 768, little-endian)" in body
    assert f"Encoder `open_clip:ViT-L-14` (backend open_clip, model_name ViT-L-14, weights openai, " \
           f"weights_sha256 {'f' * 64})" in body  # fmt: skip
    assert "Vectors: 768-dim float16, unit length" in body
    assert "scot verify hf://datasets/me/demo/runs/captions" in body and "(commit abcdef123456)" in body
    assert hub.card_license(card) == "cc-by-4.0" and hub.card_license("# hand-written") is None
    sizes = [hub.size_category(n) for n in (0, 999, 1_000, 99_999, 10**9, 10**12)]
    assert sizes == ["n<1K", "n<1K", "1K<n<10K", "10K<n<100K", "1B<n<10B", "n>1T"]


# ------------------------------------------------------------------------------ publish


def test_publish_to_a_memory_url_resumes_and_writes_no_card(stage_folders):
    embed, _ = stage_folders
    url = f"memory://scot-{uuid.uuid4().hex}/runs/embed"
    fs = fsspec.filesystem("memory")
    outputs = read_manifest(embed)["outputs"]
    try:
        first = publish(embed, url)
        assert first.uploaded == [*sorted(outputs), "manifest.json"] and first.card is None
        assert verify(url) == [] and not fs.exists(url.rsplit("/", 2)[0] + "/README.md")
        shard = next(name for name in outputs if name.endswith(".tar"))
        fs.rm(f"{url}/manifest.json")  # as if killed after one upload was lost and before the manifest
        fs.rm(f"{url}/{shard}")
        second = publish(embed, url)
        assert second.uploaded == [shard, "manifest.json"] and len(second.skipped) == len(outputs) - 1
        third = publish(embed, url)
        assert third.uploaded == [] and len(third.skipped) == len(outputs) + 1
    finally:
        fs.rm(url.split("/runs/")[0], recursive=True)


def test_publish_to_the_hub_writes_a_card_that_datasets_loads(stage_folders, fake_hub, tmp_path):
    embed, triplets = stage_folders
    summary = publish(embed, "hf://datasets/me/demo/embed", license="cc0-1.0")
    outputs = read_manifest(embed)["outputs"]
    assert summary.card == "written" and summary.uploaded == [*sorted(outputs), "manifest.json"]
    assert [w.removeprefix("/datasets/me/demo/") for w in FakeHub.writes] == [
        *(f"embed/{name}" for name in sorted(outputs)), "embed/manifest.json", "README.md"]  # fmt: skip
    result = CliRunner().invoke(app, ["publish", str(triplets), "hf://datasets/me/demo/triplets"])
    assert result.exit_code == 0, result.output
    sent = sum(m["bytes"] for m in read_manifest(triplets)["outputs"].values())
    assert result.output.strip().endswith(f"2 uploaded ({sent} bytes), 0 already there; dataset card written")
    card = fake_hub.cat_file("/datasets/me/demo/README.md").decode()
    front = front_matter(card)
    assert front["license"] == "cc0-1.0"  # the card's own, kept when the second publish names none
    assert [c["config_name"] for c in front["configs"]] == ["embed-images", "embed-texts", "triplets"]
    assert front["configs"][0]["data_files"] == [{"split": "train", "path": "embed/images/*.parquet"}]
    assert "scot train --embeddings demo/embed --triplets demo/triplets" in card
    assert verify("hf://datasets/me/demo/embed") == [] and verify("hf://datasets/me/demo/triplets") == []
    FakeHub.writes.clear()
    again = publish(embed, "hf://datasets/me/demo/embed")
    assert again.uploaded == [] and again.card == "unchanged" and FakeHub.writes == []

    # the repository as `hf download` would give it, read by datasets the way the card says
    from datasets import load_dataset

    local = tmp_path / "demo"
    fake_hub.get("/datasets/me/demo", str(local), recursive=True)
    loaded = {c["config_name"]: load_dataset(str(local), c["config_name"], split="train", cache_dir=str(tmp_path / "c"))
              for c in front["configs"]}  # fmt: skip
    rows = {name: sum(m["rows"] for f, m in outputs.items() if f.startswith(f"{name}/")) for name in ("images", "texts")}
    assert {k: len(v) for k, v in loaded.items()} == {"embed-images": rows["images"], "embed-texts": rows["texts"],
                                                       "triplets": 9}  # fmt: skip
    images = loaded["embed-images"].with_format("arrow")
    vectors = np.frombuffer(b"".join(images["embedding"].to_pylist()), dtype="<f2").reshape(len(images), -1)
    local_parts = [pq.read_table(p) for p in sorted((embed / "images").glob("part-*.parquet"))]
    expected = {i: v for t in local_parts for i, v in zip(t.column("image_id").to_pylist(), to_matrix(t.column("embedding")))}
    assert vectors.shape == (rows["images"], 32)
    assert all(np.array_equal(v, expected[i]) for i, v in zip(images["image_id"].to_pylist(), vectors))


def test_hub_refusals_are_one_line_and_a_hand_written_card_is_kept(stage_folders, fake_hub, monkeypatch):
    embed, triplets = stage_folders
    with pytest.raises(ScotInputError, match=r"^hf://datasets/me/none: no dataset repository me/none that this"):
        publish(triplets, "hf://datasets/me/none")
    assert FakeHub.writes == []
    fake_hub.pipe_file("/datasets/me/demo/README.md", b"# my own card\n")
    assert publish(triplets, "hf://datasets/me/demo/triplets").card == "kept (README.md was not written by scot)"
    assert fake_hub.cat_file("/datasets/me/demo/README.md") == b"# my own card\n"

    from huggingface_hub import errors

    def refuse(error: Exception):
        def put_file(self, lpath, rpath, **kwargs):
            raise error

        monkeypatch.setattr(FakeHub, "put_file", put_file)

    response = SimpleNamespace(headers={}, request=None)  # what HfHubHTTPError reads of the reply
    refuse(errors.HfHubHTTPError("403 Forbidden: you may not write\nto me/demo", response=response))
    with pytest.raises(ScotInputError) as caught:
        publish(embed, "hf://datasets/me/demo/embed")
    assert str(caught.value) == ("hf://datasets/me/demo/embed: the Hub refused or could not be reached "
                                 "(403 Forbidden: you may not write to me/demo)")  # fmt: skip
    refuse(errors.HTTPError("[Errno 111] Connection refused"))  # the HTTP library's, not an OSError
    with pytest.raises(ScotInputError, match=r"could not be reached \(\[Errno 111\] Connection refused\)$"):
        publish(embed, "hf://datasets/me/demo/embed")
