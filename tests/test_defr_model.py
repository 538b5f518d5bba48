"""DEFR's backbones, classifier variants and network: initial weights, logits, loading weights by path."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from raysweep.errors import ConfigError
from raysweep.tasks.defr.backbones import (_open_clip_arch, _timm_name, build_backbone, interpolate_token_grid,
                                           normalisation_for)
from raysweep.tasks.defr.classifier import ClipImageProjection, build_classifier
from raysweep.tasks.defr.config import ClassifierConfig, ModelConfig
from raysweep.tasks.defr.model import DefrNet

TINY_VIT = dict(backbone="vit_tiny", width=32, depth=1, heads=2, patch_size=8)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """No hub access in tests: a hub request must fail fast, not hang."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny_open_clip_archs(tmp_path_factory):
    """Registers two tiny open_clip architectures (a ViT and a ResNet) so real open_clip code runs in seconds."""
    import open_clip

    folder = tmp_path_factory.mktemp("open_clip_configs")
    text = {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 1}
    configs = {
        "RaysweepTest-ViT": {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 1, "width": 64,
                                                             "patch_size": 8}, "text_cfg": text},
        "RaysweepTest-RN": {"embed_dim": 32, "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8,
                                                            "patch_size": None}, "text_cfg": text},
    }
    for name, config in configs.items():
        (folder / f"{name}.json").write_text(json.dumps(config))
    open_clip.add_model_config(folder)
    return configs


def embeddings(num_classes: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(num_classes, width)).astype(np.float32)  # deliberately not unit rows


# ----------------------------------------------------------------------------------------------- initial weights

def test_language_cosine_weight_equals_embedding_rows():
    emb = embeddings(5, 16)
    head = build_classifier(ClassifierConfig(head="cosine", init="language"), 16, 5, emb, seed=0, clip_proj=None)
    assert torch.equal(head.weight.data, torch.from_numpy(emb))
    assert head.image_proj is None


def test_language_linear_weight_is_row_normalised_embeddings_and_bias_zero():
    emb = embeddings(5, 16)
    head = build_classifier(ClassifierConfig(head="linear", init="language"), 16, 5, emb, seed=0, clip_proj=None)
    expected = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    np.testing.assert_allclose(head.linear.weight.detach().numpy(), expected, rtol=1e-6)
    assert torch.count_nonzero(head.linear.bias) == 0


def test_rand_cosine_std_is_inverse_sqrt_width():
    torch.manual_seed(0)
    head = build_classifier(ClassifierConfig(head="cosine", init="rand"), 2048, 64, None, seed=0, clip_proj=None)
    assert head.weight.shape == (64, 2048)
    assert head.weight.std().item() == pytest.approx(2048 ** -0.5, rel=0.02)
    assert abs(head.weight.mean().item()) < 0.01 * 2048 ** -0.5 * 10


def test_rand_linear_is_pytorch_default_init():
    torch.manual_seed(0)
    head = build_classifier(ClassifierConfig(head="linear", init="rand"), 100, 50, None, seed=0, clip_proj=None)
    bound = 1 / math.sqrt(100)  # kaiming_uniform(a=√5) and the bias both give U(-1/√fan_in, 1/√fan_in)
    assert head.linear.weight.abs().max().item() <= bound
    assert head.linear.weight.abs().max().item() > 0.9 * bound
    assert head.linear.bias.abs().max().item() <= bound
    assert head.linear.bias.abs().max().item() > 0.5 * bound


def test_mixing_starts_at_identity_with_fixed_rows():
    emb = embeddings(6, 8)
    head = build_classifier(ClassifierConfig(head="mixing", init="language"), 8, 6, emb, seed=0, clip_proj=None)
    assert torch.equal(head.mixing.data, torch.eye(6))
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    np.testing.assert_allclose(head.fixed_rows.numpy(), unit, rtol=1e-6)
    assert not head.fixed_rows.requires_grad
    assert all(p is not head.fixed_rows for p in head.parameters())
    np.testing.assert_allclose(head.class_rows().detach().numpy(), unit, rtol=1e-6, atol=1e-7)

    optimiser = torch.optim.SGD([p for p in head.parameters() if p.requires_grad], lr=0.1)
    head(torch.randn(3, 8)).sum().backward()
    optimiser.step()
    assert not torch.equal(head.mixing.data, torch.eye(6))
    np.testing.assert_allclose(head.fixed_rows.numpy(), unit, rtol=1e-6)


def test_shuffle_is_a_seeded_permutation_of_the_rows():
    emb = embeddings(20, 8)
    cfg = ClassifierConfig(head="cosine", init="language", shuffle=True)
    first = build_classifier(cfg, 8, 20, emb, seed=3, clip_proj=None).weight.detach()
    again = build_classifier(cfg, 8, 20, emb, seed=3, clip_proj=None).weight.detach()
    other = build_classifier(cfg, 8, 20, emb, seed=4, clip_proj=None).weight.detach()
    permutation = torch.randperm(20, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, torch.from_numpy(emb)[permutation])
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert not torch.equal(first, torch.from_numpy(emb))
    assert sorted(map(tuple, first.tolist())) == sorted(map(tuple, torch.from_numpy(emb).tolist()))


# ----------------------------------------------------------------------------------------------- logits

def test_cosine_logits_hand_computed():
    emb = np.array([[2.0, 0.0], [1.0, 1.0]], dtype=np.float32)
    cfg = ClassifierConfig(head="cosine", init="language", log_scale=math.log(2.0))
    head = build_classifier(cfg, 2, 2, emb, seed=0, clip_proj=None)
    logits = head(torch.tensor([[3.0, 4.0]]))
    # f̂ = (0.6, 0.8); rows (1, 0) and (1, 1)/√2; s = 2
    expected = [2 * 0.6, 2 * (0.6 + 0.8) / math.sqrt(2)]
    np.testing.assert_allclose(logits.detach().numpy(), [expected], rtol=1e-6)


def test_linear_log_scale_zero_is_an_unnormalised_probe():
    emb = np.array([[3.0, 4.0], [0.0, 2.0]], dtype=np.float32)
    cfg = ClassifierConfig(head="linear", init="language", log_scale=0.0)
    head = build_classifier(cfg, 2, 2, emb, seed=0, clip_proj=None)
    with torch.no_grad():
        head.linear.bias.copy_(torch.tensor([0.5, -1.0]))
    logits = head(torch.tensor([[10.0, 20.0]]))
    # weight rows (0.6, 0.8) and (0, 1), features used raw: 6 + 16 + 0.5, 20 - 1
    np.testing.assert_allclose(logits.detach().numpy(), [[22.5, 19.0]], rtol=1e-6)


def test_linear_with_scale_normalises_then_scales_the_features():
    emb = np.array([[3.0, 4.0], [0.0, 2.0]], dtype=np.float32)
    cfg = ClassifierConfig(head="linear", init="language", log_scale=math.log(10.0))
    head = build_classifier(cfg, 2, 2, emb, seed=0, clip_proj=None)
    logits = head(torch.tensor([[10.0, 20.0]]))
    f = np.array([10.0, 20.0]) / math.sqrt(500) * 10
    np.testing.assert_allclose(logits.detach().numpy(), [[0.6 * f[0] + 0.8 * f[1], f[1]]], rtol=1e-5)


def test_trainable_logit_scale_is_clamped_to_its_max():
    emb = np.array([[1.0, 0.0]], dtype=np.float32)
    cfg = ClassifierConfig(head="cosine", init="language", log_scale=5.0, log_scale_trainable=True, log_scale_max=4.61)
    head = build_classifier(cfg, 2, 1, emb, seed=0, clip_proj=None)
    logits = head(torch.tensor([[1.0, 0.0]]))
    assert head.logit_scale.item() == pytest.approx(4.61)
    assert logits.item() == pytest.approx(math.exp(4.61), rel=1e-6)

    fixed = build_classifier(cfg.model_copy(update=dict(log_scale_trainable=False)), 2, 1, emb, 0, None)
    assert fixed(torch.tensor([[1.0, 0.0]])).item() == pytest.approx(math.exp(5.0), rel=1e-6)
    assert not fixed.logit_scale.requires_grad


# ----------------------------------------------------------------------------------------------- text width != image

def test_auto_projection_back_projects_clip_text_with_clip_proj():
    text = embeddings(4, 3)
    proj = torch.randn(5, 3)
    cfg = ClassifierConfig(head="cosine", init="language", text_encoder="clip")
    head = build_classifier(cfg, 5, 4, text, seed=0, clip_proj=proj)
    assert head.image_proj is None
    np.testing.assert_allclose(head.weight.detach().numpy(), (proj.numpy() @ text.T).T, rtol=1e-5)


def test_auto_projection_without_clip_proj_adds_a_trainable_image_side_linear():
    cfg = ClassifierConfig(head="cosine", init="language", text_encoder="minilm")
    head = build_classifier(cfg, 12, 4, embeddings(4, 6), seed=0, clip_proj=None)
    assert head.image_proj.weight.shape == (6, 12) and head.image_proj.bias is None
    assert head.image_proj.weight.requires_grad
    assert head(torch.randn(2, 12)).shape == (2, 4)


def test_project_none_with_mismatched_widths_is_a_config_error():
    cfg = ClassifierConfig(head="cosine", init="language", project="none")
    with pytest.raises(ConfigError, match="classifier.project 'none'"):
        build_classifier(cfg, 12, 4, embeddings(4, 6), seed=0, clip_proj=None)


def test_project_clip_proj_without_a_matching_projection_is_a_config_error():
    cfg = ClassifierConfig(head="cosine", init="language", project="clip_proj")
    with pytest.raises(ConfigError, match="clip_proj"):
        build_classifier(cfg, 12, 4, embeddings(4, 6), seed=0, clip_proj=None)


def test_rand_with_clip_proj_is_defr_rand_512():
    proj = torch.randn(10, 7)
    cfg = ClassifierConfig(head="cosine", init="rand", project="clip_proj")
    head = build_classifier(cfg, 10, 3, None, seed=0, clip_proj=proj)
    assert isinstance(head.image_proj, ClipImageProjection) and torch.equal(head.image_proj.proj.data, proj)
    assert head.weight.shape == (3, 7)
    features = torch.randn(2, 10)
    expected = math.exp(4.61) * F.normalize(features @ proj, dim=1) @ F.normalize(head.weight, dim=1).t()
    torch.testing.assert_close(head(features), expected)


def test_wrong_number_of_class_embeddings_is_a_config_error():
    with pytest.raises(ConfigError, match="3 classes"):
        build_classifier(ClassifierConfig(), 8, 3, embeddings(4, 8), seed=0, clip_proj=None)


# ----------------------------------------------------------------------------------------------- DefrNet

def tiny_net(head: str = "cosine", log_scale_trainable: bool = False) -> DefrNet:
    torch.manual_seed(0)
    backbone = build_backbone(ModelConfig(**TINY_VIT), image_size=32)
    cfg = ClassifierConfig(head=head, init="language", log_scale_trainable=log_scale_trainable)
    return DefrNet(backbone, build_classifier(cfg, backbone.width, 7, embeddings(7, 32), seed=0, clip_proj=None))


@pytest.mark.parametrize("head", ["cosine", "linear", "mixing"])
def test_defr_net_forward_shape_and_finite_gradients(head):
    net = tiny_net(head)
    logits = net(torch.randn(3, 3, 32, 32))
    assert logits.shape == (3, 7)
    logits.logsumexp(dim=1).mean().backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


def test_param_groups_learning_rates_and_no_decay_membership():
    net = tiny_net(log_scale_trainable=True)
    groups = {g["name"]: g for g in net.param_groups(backbone_lr_mult=0.1, weight_decay=0.05,
                                                     no_decay_norm_bias=True, base_lr=1e-3)}
    assert set(groups) == {"backbone/decay", "backbone/no_decay", "classifier/decay", "classifier/no_decay"}
    assert groups["backbone/decay"]["lr"] == pytest.approx(1e-4)
    assert groups["classifier/decay"]["lr"] == pytest.approx(1e-3)
    assert groups["backbone/decay"]["weight_decay"] == 0.05 and groups["backbone/no_decay"]["weight_decay"] == 0.0

    def ids(name):
        return {id(p) for p in groups[name]["params"]}

    body = net.backbone.body
    for exempt in (body.pos_embed, body.cls_token, body.norm.weight, body.norm.bias, body.patch_embed.proj.bias,
                   body.blocks[0].attn.qkv.bias):
        assert id(exempt) in ids("backbone/no_decay")
    assert id(body.patch_embed.proj.weight) in ids("backbone/decay")
    assert id(body.blocks[0].mlp.fc1.weight) in ids("backbone/decay")
    assert ids("classifier/decay") == {id(net.classifier.weight)}
    assert ids("classifier/no_decay") == {id(net.classifier.logit_scale)}
    trainable = sum(1 for p in net.parameters() if p.requires_grad)
    assert sum(len(g["params"]) for g in groups.values()) == trainable

    flat = net.param_groups(1.0, 0.05, no_decay_norm_bias=False, base_lr=1e-3)
    assert [g["name"] for g in flat] == ["backbone/decay", "classifier/decay"]
    torch.optim.AdamW(flat)  # the groups are valid optimiser input


def test_frozen_logit_scale_is_not_optimised():
    net = tiny_net(log_scale_trainable=False)
    names = [g["name"] for g in net.param_groups(1.0, 0.0, True, 1e-3)]
    assert "classifier/no_decay" not in names


# ----------------------------------------------------------------------------------------------- backbones

def test_normalisation_follows_the_backbone_name():
    assert normalisation_for(ModelConfig(backbone="CLIP-ViT-B")) == "clip"
    assert normalisation_for(ModelConfig(backbone="open_clip:RN50")) == "clip"
    assert normalisation_for(ModelConfig(backbone="ImageNet21k-ViT-B")) == "half"
    assert normalisation_for(ModelConfig(backbone="vit_tiny")) == "half"


def test_random_vit_outputs_cls_features_of_the_configured_width():
    backbone = build_backbone(ModelConfig(**TINY_VIT), image_size=32)
    assert backbone.width == 32 and backbone.family == "vit" and backbone.clip_proj is None
    assert backbone.body.pos_embed.shape == (1, 1 + 16, 32)
    assert backbone(torch.randn(2, 3, 32, 32)).shape == (2, 32)


def test_random_vit_weights_round_trip_through_a_file(tmp_path):
    saved = build_backbone(ModelConfig(**TINY_VIT), image_size=32)
    path = tmp_path / "vit_tiny.pth"
    torch.save(saved.body.state_dict(), path)
    loaded = build_backbone(ModelConfig(**TINY_VIT, weights=str(path)), image_size=32)
    for key, value in saved.body.state_dict().items():
        assert torch.equal(loaded.body.state_dict()[key], value), key


def test_timm_vit_loaded_by_path_equals_the_saved_weights(tmp_path):
    import timm

    model = timm.create_model("test_vit", num_classes=0, img_size=32)
    path = tmp_path / "test_vit.pth"
    torch.save(model.state_dict(), path)
    loaded = build_backbone(ModelConfig(backbone="test_vit", weights=str(path)), image_size=32)
    assert loaded.width == model.num_features
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.body.state_dict()[key], value), key
    model.eval(), loaded.eval()
    images = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(loaded(images), model(images))

    bigger = build_backbone(ModelConfig(backbone="test_vit", weights=str(path)), image_size=64)
    assert bigger.body.pos_embed.shape == (1, 1 + 16, model.num_features)  # 2x2 grid resampled to 4x4
    assert torch.equal(bigger.body.pos_embed[:, :1], model.pos_embed[:, :1])


def test_paper_aliases_resolve_to_library_names():
    assert _timm_name("ImageNet1k-ViT-B", 32) == "vit_base_patch32_224"
    assert _timm_name("ImageNet21k-ViT-B", 16) == "vit_base_patch16_224.augreg_in21k"
    assert _open_clip_arch("CLIP-ViT-B", 32) == "ViT-B-32" and _open_clip_arch("CLIP-ViT-L", 32) == "ViT-L-14"
    assert _open_clip_arch("CLIP-RN50x4", 32) == "RN50x4" and _open_clip_arch("open_clip:RN101", 32) == "RN101"
    assert _open_clip_arch("vit_base_patch32_224", 32) is None


def test_hub_weights_without_network_raise_config_error():
    with pytest.raises(ConfigError, match=r"'hub' for backbone 'test_vit'.*local path"):
        build_backbone(ModelConfig(backbone="test_vit", weights="hub"), image_size=32)
    with pytest.raises(ConfigError, match=r"weights 'hub' for open_clip 'ViT-B-32'"):
        build_backbone(ModelConfig(backbone="CLIP-ViT-B", patch_size=32, weights="hub"), image_size=64)


def test_bad_names_and_missing_files_raise_config_error(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'vit_base_patch32_224'"):
        build_backbone(ModelConfig(backbone="vit_base_patch32_244"), image_size=64)
    with pytest.raises(ConfigError, match="no such checkpoint file"):
        build_backbone(ModelConfig(**TINY_VIT, weights=str(tmp_path / "missing.pth")), image_size=32)
    with pytest.raises(ConfigError, match="no hub weights"):
        build_backbone(ModelConfig(**TINY_VIT, weights="hub"), image_size=32)
    with pytest.raises(ConfigError, match="not an open_clip architecture"):
        build_backbone(ModelConfig(backbone="CLIP-ViT-B", patch_size=8), image_size=64)
    with pytest.raises(ConfigError, match="multiple of"):
        build_backbone(ModelConfig(**TINY_VIT), image_size=36)


def test_open_clip_vit_loaded_by_path_gives_features_before_the_projection(tiny_open_clip_archs, tmp_path):
    import open_clip

    torch.manual_seed(0)
    clip = open_clip.create_model("RaysweepTest-ViT", pretrained=None).eval()
    path = tmp_path / "tiny_clip.pt"
    torch.save(clip.state_dict(), path)
    backbone = build_backbone(ModelConfig(backbone="open_clip:RaysweepTest-ViT", weights=str(path)), image_size=32)
    assert backbone.family == "clip" and backbone.width == 64
    assert torch.equal(backbone.clip_proj, clip.visual.proj.data)
    for key, value in clip.visual.state_dict().items():
        if key != "proj":
            assert torch.equal(backbone.body.visual.state_dict()[key], value), key
    images = torch.randn(2, 3, 32, 32)
    features = backbone.eval()(images)
    assert features.shape == (2, 64)
    # CLIP's image embedding is the feature times the kept projection
    torch.testing.assert_close(features @ backbone.clip_proj, clip.encode_image(images))


def test_open_clip_position_embeddings_are_interpolated_bicubically(tiny_open_clip_archs, tmp_path):
    import open_clip

    clip = open_clip.create_model("RaysweepTest-ViT", pretrained=None)
    path = tmp_path / "tiny_clip.pt"
    torch.save(clip.state_dict(), path)
    backbone = build_backbone(ModelConfig(backbone="open_clip:RaysweepTest-ViT", weights=str(path)), image_size=64)
    old = clip.visual.positional_embedding.data  # [1 + 4*4, 64]
    new = backbone.body.visual.positional_embedding.data
    assert new.shape == (1 + 8 * 8, 64)
    assert torch.equal(new[0], old[0])
    grid = old[1:].reshape(1, 4, 4, 64).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, size=(8, 8), mode="bicubic", align_corners=False).permute(0, 2, 3, 1)
    torch.testing.assert_close(new[1:], expected.reshape(64, 64))
    assert backbone(torch.randn(1, 3, 64, 64)).shape == (1, 64)
    assert torch.equal(interpolate_token_grid(old, 4), old)


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::torch.jit.TracerWarning")
def test_open_clip_torchscript_checkpoint_loads_by_path(tiny_open_clip_archs, tmp_path):
    """OpenAI's original CLIP files are TorchScript archives; DEFR loads `clip/ViT-B-32.pt` like this."""
    import open_clip

    clip = open_clip.create_model("RaysweepTest-ViT", pretrained=None, force_quick_gelu=True).eval()
    path = tmp_path / "tiny_clip_jit.pt"
    torch.jit.save(torch.jit.trace_module(clip, {"encode_image": (torch.ones(1, 3, 32, 32),)}), path)
    backbone = build_backbone(ModelConfig(backbone="open_clip:RaysweepTest-ViT", weights=str(path)), image_size=32)
    assert torch.equal(backbone.clip_proj, clip.visual.proj.data)
    images = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(backbone.eval()(images) @ backbone.clip_proj, clip.encode_image(images))


def test_open_clip_resnet_uses_attnpool_output_and_identity_projection(tiny_open_clip_archs):
    backbone = build_backbone(ModelConfig(backbone="open_clip:RaysweepTest-RN"), image_size=128)
    assert backbone.width == 32 and torch.equal(backbone.clip_proj, torch.eye(32))
    assert backbone.body.attnpool.positional_embedding.shape[0] == 1 + 4 * 4
    assert backbone(torch.randn(2, 3, 128, 128)).shape == (2, 32)


def test_build_defr_net_back_projects_clip_text_into_a_non_clip_backbone(tiny_open_clip_archs, tmp_path):
    """DEFR's im1k `clip` configs: CLIP text rows mapped into an ImageNet ViT's space by CLIP's visual projection."""
    import open_clip

    from raysweep.tasks.defr.config import DataConfig, DefrConfig
    from raysweep.tasks.defr.embeddings import text_embeddings
    from raysweep.tasks.defr.model import build_defr_net, class_text_embeddings
    from raysweep.tasks.defr.prompts import class_prompts

    clip = open_clip.create_model("RaysweepTest-ViT", pretrained=None).eval()
    path = tmp_path / "tiny_clip.pt"
    torch.save(clip.state_dict(), path)
    cfg = DefrConfig(data=DataConfig(image_size=32), model=ModelConfig(**{**TINY_VIT, "width": 64}),
                     classifier=ClassifierConfig(text_encoder="open_clip:RaysweepTest-ViT",
                                                 text_encoder_weights=str(path)))
    classes = [("ride", "bicycle"), ("no_interaction", "bicycle"), ("eat", "apple")]
    net = build_defr_net(cfg, len(classes), tmp_path, lambda: class_text_embeddings(cfg, classes, tmp_path))
    text = text_embeddings(class_prompts(classes, cfg.prompts), cfg.classifier.text_encoder, str(path), tmp_path)
    assert text.shape == (3, 32) and net.classifier.image_proj is None
    expected = (clip.visual.proj.detach().numpy() @ text.T).T
    np.testing.assert_allclose(net.classifier.weight.detach().numpy(), expected, rtol=1e-5, atol=1e-6)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 3)
