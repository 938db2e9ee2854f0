"""Each reader on a small collection in its official layout: rows, rejects, ids, manifest."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from scot_data import ids
from scot_data.captions.config import CocoCaptions, OpenclipartCaptions, TableCaptions, WdsCaptions
from scot_data.captions.ingest import ingest_captions
from scot_data.hashing import sha256_file
from tests.conftest import CORRUPT_IMAGE, png_bytes


def table(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def reasons_by_record(out: Path) -> dict[str, str]:
    return {r["record"]: r["reason"] for r in table(out / "rejects.parquet")}


def test_coco_rows_rejects_and_manifest(coco_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cfg = CocoCaptions(input=coco_dir / "annotations/captions_train2017.json", images=coco_dir / "train2017")
    summary = ingest_captions(cfg, out, show_progress=False)

    rows = table(out / "captions.parquet")
    assert [r["caption"] for r in rows] == [
        "A dog on the grass.",
        "A brown dog lying on grass.",
        "Two cats on a sofa.",
        "A red bus in the street.",
        "A bowl of fruit.",
    ]
    first = rows[0]
    assert first["image_id"] == ids.image_id("coco", "000000000001.jpg") == rows[1]["image_id"]
    assert first["caption_id"] == ids.caption_id("coco", "000000000001.jpg", "A dog on the grass.")
    assert first["image_uri"] == str((coco_dir / "train2017/000000000001.jpg").resolve())
    assert {r["source"] for r in rows} == {"coco"}

    reasons = reasons_by_record(out)
    assert reasons["images[6]"] == "image record lacks 'id' or 'file_name'"
    assert reasons["annotations[5]"].startswith("duplicate (image, caption)")
    assert reasons["annotations[6]"].startswith("image does not decode")
    assert reasons["annotations[7]"].startswith("image file unreadable")
    assert reasons["annotations[8]"] == "image_id 42 has no image record"
    assert reasons["annotations[9]"] == "empty caption"
    assert reasons["annotations[10]"] == "annotation lacks 'image_id'"
    assert reasons["annotations[11]"] == "caption is int, not text"
    assert summary.rows == 5 and summary.rejects == 8 and summary.duplicates == 1 and summary.images == 4

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == "captions"
    assert manifest["outputs"]["captions.parquet"]["rows"] == 5
    for name, meta in manifest["outputs"].items():
        assert meta["sha256"] == sha256_file(out / name)
    assert {i["kind"] for i in manifest["inputs"]} == {"file", "listing"}
    assert not (out / "_parts").exists()


def test_coco_missing_lists_is_an_input_error(tmp_path: Path) -> None:
    from scot_data.errors import ScotInputError

    bad = tmp_path / "captions.json"
    bad.write_text(json.dumps({"annotations": []}))
    with pytest.raises(ScotInputError, match="captions.json: a COCO captions file needs"):
        ingest_captions(CocoCaptions(input=bad, images=tmp_path), tmp_path / "out", show_progress=False)


def test_wds_brace_pattern(wds_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cfg = WdsCaptions(input=str(wds_dir / "shard-{00000..00001}.tar"))
    summary = ingest_captions(cfg, out, show_progress=False)

    rows = table(out / "captions.parquet")
    assert [r["caption"] for r in rows] == ["a yellow taxi", "a green tree", "a blue boat", "a white horse"]
    shard0 = (wds_dir / "shard-00000.tar").resolve()
    assert rows[1]["image_uri"] == f"tar://{shard0}#000000001.png"
    assert rows[0]["image_id"] == ids.image_id("wds", "shard-00000.tar#000000000.jpg")

    reasons = reasons_by_record(out)
    assert reasons["key 000000003"].startswith("malformed caption member")
    assert reasons["key 000001000"].startswith("image does not decode")
    assert reasons["key 000001001"] == "no image member (.jpg/.jpeg/.png/.webp)"
    assert reasons["key 000001002"] == "no .txt member and no 'caption' in .json"
    assert summary.rows == 4 and summary.rejects == 4


def _samples_by_cut(shard: Path, cut: int) -> tuple[set[str], set[str]]:
    """Keys of the samples of the intact ``shard`` whose members all end by byte ``cut``, and of
    those cut short (their first member's header is whole, a later byte is not)."""
    ends: dict[str, list[int]] = {}
    with tarfile.open(shard) as tar:
        for member in tar:
            end = member.offset_data + member.size if member.offset_data <= cut else -1  # -1: header cut
            ends.setdefault(_key(member.name), []).append(end)
    whole = {key for key, e in ends.items() if all(0 <= x <= cut for x in e)}
    return whole, {key for key, e in ends.items() if key not in whole and e[0] >= 0}


def _key(member_name: str) -> str:
    return member_name.split(".")[0]


def _outcome(out: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Sample key -> caption of each row, and reject record -> the reason's kind (its details,
    such as an object's address in a decoder message, vary from run to run)."""
    rows = {_key(r["image_uri"].rsplit("#", 1)[1]): r["caption"] for r in table(out / "captions.parquet")}
    rejects = {r["record"].removeprefix("key "): r["reason"].split(":")[0]
               for r in table(out / "rejects.parquet")}  # fmt: skip
    return rows, rejects


@pytest.mark.parametrize(
    ("shard_name", "cut_in"),
    [("shard-00001.tar", None), ("shard-00000.tar", "000000002.webp")],  # between samples; in an image
)
def test_wds_truncated_shard_keeps_earlier_samples(
    wds_dir: Path, tmp_path: Path, shard_name: str, cut_in: str | None
) -> None:
    """Every sample wholly before the cut comes out as from the intact shard, the one cut
    short is a reject, none after it appears, and the damage is one ``tar`` reject."""
    shard = wds_dir / shard_name
    data = shard.read_bytes()
    with tarfile.open(shard) as tar:
        member = tar.getmember(cut_in) if cut_in else None
    cut = member.offset_data + member.size // 2 if member else len(data) // 2 + 100
    whole, cut_short = _samples_by_cut(shard, cut)
    ingest_captions(WdsCaptions(input=str(shard)), tmp_path / "intact", show_progress=False)
    shard.write_bytes(data[:cut])
    summary = ingest_captions(WdsCaptions(input=str(shard)), tmp_path / "cut", show_progress=False)

    intact_rows, intact_rejects = _outcome(tmp_path / "intact")
    rows, rejects = _outcome(tmp_path / "cut")
    assert whole and len(whole | cut_short) < len(set(intact_rows) | set(intact_rejects))  # some are lost
    assert rows == {k: c for k, c in intact_rows.items() if k in whole}
    kept_rejects = {k: r for k, r in intact_rejects.items() if k in whole}
    assert set(rejects) == set(kept_rejects) | cut_short | {"tar"}
    assert {k: rejects[k] for k in kept_rejects} == kept_rejects
    assert rejects["tar"] == f"unreadable tar after {len(whole | cut_short)} samples"
    assert summary.rows == len(rows) and summary.rejects == len(rejects)


def test_limit_keeps_the_captions_of_a_smaller_limit(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    for i in range(30):
        (tmp_path / "img" / f"{i}.png").write_bytes(png_bytes(i))
    csv = tmp_path / "pairs.csv"
    pacsv.write_csv(pa.table({"image": [f"img/{i}.png" for i in range(30)],
                              "caption": [f"picture {i}" for i in range(30)]}), csv)  # fmt: skip

    def picked(limit: int, seed: int = 0) -> list[str]:
        out = tmp_path / f"out-{limit}-{seed}"
        cfg = TableCaptions(input=csv, limit=limit, seed=seed, workers=1)
        summary = ingest_captions(cfg, out, show_progress=False)
        captions = [r["caption"] for r in table(out / "captions.parquet")]
        assert summary.rows == len(captions) == limit
        return captions

    small, large = picked(5), picked(12)
    assert set(small) < set(large)  # a larger limit keeps every caption a smaller one picked
    assert all(c == sorted(c, key=lambda text: int(text.split()[1])) for c in (small, large))  # table order
    assert set(picked(5, seed=1)) != set(small)


def test_table_csv_with_paths_and_urls(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(png_bytes(1))
    (tmp_path / "img" / "b.png").write_bytes(CORRUPT_IMAGE)
    csv = tmp_path / "pairs.csv"
    pacsv.write_csv(
        pa.table(
            {
                "path": ["img/a.png", "img/b.png", "https://example.org/c.jpg", "", "img/a.png"],
                "text": ["a red square", "broken", "a remote photo", "no image", ""],
            }
        ),
        csv,
    )
    out = tmp_path / "out"
    cfg = TableCaptions(input=csv, image_column="path", caption_column="text")
    summary = ingest_captions(cfg, out, show_progress=False)
    rows = table(out / "captions.parquet")
    assert [(r["caption"], r["image_uri"]) for r in rows] == [
        ("a red square", str((tmp_path / "img/a.png").resolve())),
        ("a remote photo", "https://example.org/c.jpg"),
    ]
    reasons = reasons_by_record(out)
    assert reasons["row 1"].startswith("image does not decode")
    assert reasons["row 3"] == "empty 'path'"
    assert reasons["row 4"] == "empty caption"
    assert summary.rows == 2


def test_table_parquet_missing_column_names_it(tmp_path: Path) -> None:
    from scot_data.errors import ScotInputError

    path = tmp_path / "pairs.parquet"
    pq.write_table(pa.table({"image": ["x.png"], "text": ["t"]}), path)
    with pytest.raises(ScotInputError, match=r"pairs.parquet: no column 'caption'"):
        ingest_captions(TableCaptions(input=path), tmp_path / "out", show_progress=False)


def test_openclipart_fixture(clipart_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = ingest_captions(OpenclipartCaptions(input=clipart_dir, workers=1), out, show_progress=False)
    captions = [r["caption"] for r in table(out / "captions.parquet")]
    # A title shared by five drawings names the collection: each is named by its file.
    assert captions.count("star (stars, shapes)") == 5
    assert sorted(set(captions) - {"star (stars, shapes)"}) == [
        "red apple (food, fruit)",
        "tiger (mammal, cat, feline). A striped tiger walking.",
    ]
    by_file = {Path(r["file"]).name: r["reason"] for r in table(out / "rejects.parquet")}
    assert by_file["broken.svg"].startswith("unreadable SVG")
    assert by_file["jane_roe_jane_ro_01.svg"].startswith("no descriptive title")
    assert by_file["blank_page.svg"] == "svg renders as a blank image"
    assert by_file["tiger_link.svg"].startswith("duplicate (image, caption)")
    assert summary.duplicates == 1 and summary.rows == 7 and summary.images == 7
    rows = {r["caption"]: r for r in table(out / "captions.parquet")}
    tiger = rows["tiger (mammal, cat, feline). A striped tiger walking."]
    assert tiger["image_id"] == ids.image_id("openclipart", "animals/tiger_jane_roe_01.svg")
    from PIL import Image

    with Image.open(tiger["image_uri"]) as image:
        assert image.size == (224, 224) and image.mode == "RGB"
        assert image.getpixel((112, 112)) == (255, 0, 0) and image.getpixel((2, 2)) == (255, 255, 255)


def test_holdout_keeps_whole_images_out_and_grows_monotonically(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    rows = []
    for n in range(40):
        (images / f"{n}.png").write_bytes(png_bytes(n))
        rows += [{"image": f"images/{n}.png", "caption": f"picture {n}"}, {"image": f"images/{n}.png", "caption": f"photo {n}"}]
    table = tmp_path / "pairs.csv"
    pacsv.write_csv(pa.Table.from_pylist(rows), table)

    def split(fraction: float) -> tuple[set[str], set[str], int]:
        out = tmp_path / f"out-{fraction}"
        summary = ingest_captions(TableCaptions(input=table, holdout=fraction), out, show_progress=False)
        kept = set(pq.read_table(out / "captions.parquet").column("image_id").to_pylist())
        held = pq.read_table(out / "holdout.parquet")
        assert summary.holdout_rows == held.num_rows and summary.rows + summary.holdout_rows == 80
        assert "holdout.parquet" in json.loads((out / "manifest.json").read_text())["outputs"]
        return kept, set(held.column("image_id").to_pylist()), held.num_rows

    kept, held, held_rows = split(0.25)
    assert not kept & held and len(kept | held) == 40
    assert held_rows == 2 * len(held) and 4 <= len(held) <= 18  # both captions of an image go together
    _, more, _ = split(0.5)
    assert held < more
    _, none, _ = split(0.0)
    assert none == set()
