"""`classifier.text_encoder=clip` is the CLIP backbone's own text tower and projection; a mismatched CLIP text tower is
refused while the space file is validated. Real open_clip code on two tiny locally created CLIP models (patch 16 and
patch 32, random weights saved to local files; no hub)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from raysweep.cli import main
from raysweep.tasks.defr.config import ClassifierConfig, DefrConfig, ModelConfig
from raysweep.tasks.defr.embeddings import text_embeddings
from raysweep.tasks.defr.model import build_defr_net, class_text_embeddings
from raysweep.tasks.defr.prompts import class_prompts
from raysweep.tasks.defr.text_tower import resolve_text_encoder, text_tower_mismatch
from tests.support import write_space

NAMES = [("ride", "bicycle"), ("hold", "cup"), ("no_interaction", "dog")]


@pytest.fixture(scope="module")
def towers(tmp_path_factory):
    """{"P16": (arch, checkpoint path, model), "P32": ...}: two tiny CLIP models that differ like ViT-B/16 and /32."""
    import open_clip

    folder = tmp_path_factory.mktemp("tower_configs")
    text = {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 1, "layers": 1}
    out = {}
    for tag, patch in (("P16", 16), ("P32", 32)):
        arch = f"RaysweepTower-{tag}"
        (folder / f"{arch}.json").write_text(json.dumps({
            "embed_dim": 24, "vision_cfg": {"image_size": 64, "layers": 1, "width": 64, "patch_size": patch},
            "text_cfg": text}))
    open_clip.add_model_config(folder)
    for seed, tag in enumerate(("P16", "P32")):
        arch = f"RaysweepTower-{tag}"
        torch.manual_seed(seed)
        model = open_clip.create_model(arch, pretrained=None).eval()
        path = folder / f"{arch}.pt"
        torch.save(model.state_dict(), path)
        out[tag] = (arch, str(path), model)
    return out


def _config(backbone: str, weights: str, encoder: str = "clip", **classifier) -> DefrConfig:
    return DefrConfig.model_validate({
        "data": {"image_size": 64},
        "model": {"backbone": backbone, "weights": weights},
        "classifier": {"init": "language", "text_encoder": encoder, **classifier}})


def _encode(model, sentences: list[str], arch: str) -> np.ndarray:
    import open_clip

    with torch.no_grad():
        return model.encode_text(open_clip.get_tokenizer(arch)(sentences), normalize=True).numpy()


def test_clip_under_a_clip_backbone_is_that_models_text_tower_and_projection(towers, tmp_path) -> None:
    arch16, path16, model16 = towers["P16"]
    arch32, _, model32 = towers["P32"]
    cfg = _config(f"open_clip:{arch16}", path16)
    assert resolve_text_encoder(cfg.model, cfg.classifier) == (f"open_clip:{arch16}", path16)

    net = build_defr_net(cfg, len(NAMES), tmp_path, lambda: class_text_embeddings(cfg, NAMES, tmp_path))
    sentences = [s[0] for s in class_prompts(NAMES, cfg.prompts)]
    text16 = _encode(model16, sentences, arch16)
    # The classifier rows are the P16 text embeddings back-projected with P16's own visual.proj.
    proj16 = model16.visual.proj.detach().numpy()
    np.testing.assert_allclose(net.classifier.weight.detach().numpy(), (proj16 @ text16.T).T, atol=1e-5)
    np.testing.assert_array_equal(net.backbone.clip_proj.numpy(), proj16)
    # ... and not the other model's text tower, which the old fixed ViT-B/32 choice amounted to.
    assert not np.allclose(text16, _encode(model32, sentences, arch32), atol=1e-3)

    # An explicit tower of the backbone's architecture also becomes the backbone's model, weights included.
    explicit = _config(f"open_clip:{arch16}", path16, f"open_clip:{arch16}")
    assert resolve_text_encoder(explicit.model, explicit.classifier) == (f"open_clip:{arch16}", path16)
    prompts = class_prompts(NAMES, cfg.prompts)
    np.testing.assert_allclose(text_embeddings(prompts, *resolve_text_encoder(explicit.model, explicit.classifier),
                                               None), text16, atol=1e-5)


def test_paper_aliases_follow_the_patch_size_and_other_backbones_keep_vit_b32() -> None:
    b16 = ModelConfig(backbone="CLIP-ViT-B", patch_size=16, weights="hub")
    b32 = ModelConfig(backbone="CLIP-ViT-B", patch_size=32, weights="hub")
    clip = ClassifierConfig(init="language", text_encoder="clip")
    assert resolve_text_encoder(b16, clip) == ("clip:ViT-B-16", "hub")
    assert resolve_text_encoder(b32, clip) == ("clip:ViT-B-32", "hub")
    imagenet = ModelConfig(backbone="ImageNet1k-ViT-B", patch_size=32, weights="hub")
    assert resolve_text_encoder(imagenet, clip) == ("clip", None)  # OpenAI ViT-B/32 and its own projection
    random_clip = ModelConfig(backbone="CLIP-ViT-B", patch_size=16, weights="random")
    assert resolve_text_encoder(random_clip, clip) == ("clip:ViT-B-16", None)  # the hub release's text tower
    bert = ClassifierConfig(init="language", text_encoder="bert")
    assert resolve_text_encoder(b16, bert) == ("bert", None)


@pytest.mark.parametrize("model, classifier, named", [
    (dict(backbone="CLIP-ViT-B", patch_size=16, weights="hub"), dict(text_encoder="clip:ViT-B-32"),
     ("'clip:ViT-B-32'", "CLIP ViT-B-32 (OpenAI weights)", "'CLIP-ViT-B'", "CLIP ViT-B-16 (OpenAI weights)")),
    (dict(backbone="open_clip:ViT-B-16", weights="hub"), dict(text_encoder="open_clip:ViT-B-32"),
     ("'open_clip:ViT-B-32'", "CLIP ViT-B-32", "'open_clip:ViT-B-16'", "CLIP ViT-B-16")),
    (dict(backbone="CLIP-ViT-B", patch_size=32, weights="/ckpt/b32.pt"),
     dict(text_encoder="clip", text_encoder_weights="/ckpt/other.pt"),
     ("'clip' with classifier.text_encoder_weights '/ckpt/other.pt'", "weights /ckpt/other.pt", "weights /ckpt/b32.pt")),
])
def test_a_mismatched_text_tower_is_refused_with_one_line_naming_both(model, classifier, named) -> None:
    with pytest.raises(ValidationError) as info:
        DefrConfig.model_validate({"model": model, "classifier": {"init": "language", **classifier}})
    message = text_tower_mismatch(ModelConfig(**model), ClassifierConfig(init="language", **classifier))
    assert message is not None and "\n" not in message and message in str(info.value)
    for part in named:
        assert part in message
    # The explicit way to join another text tower: a trained map instead of the backbone's projection.
    DefrConfig.model_validate({"model": model, "classifier": {"init": "language", "project": "linear", **classifier}})
    DefrConfig.model_validate({"model": model, "classifier": {"init": "rand", **classifier}})  # text unused


def test_matching_choices_pass_validation() -> None:
    for model, classifier in [
        (dict(backbone="CLIP-ViT-B", patch_size=16, weights="hub"), dict(text_encoder="clip:ViT-B-16")),
        (dict(backbone="CLIP-ViT-B", patch_size=16, weights="hub"), dict(text_encoder="open_clip:ViT-B-16",
                                                                          text_encoder_weights="openai")),
        (dict(backbone="ImageNet1k-ViT-B", patch_size=32, weights="random"), dict(text_encoder="clip:ViT-B-16")),
        (dict(backbone="CLIP-ViT-B", patch_size=32, weights="/ckpt/b32.pt"), dict(text_encoder="clip:ViT-B-32")),
    ]:
        DefrConfig.model_validate({"model": model, "classifier": {"init": "language", **classifier}})


def test_validate_refuses_the_mismatch_before_ray_with_exit_2(tmp_path, capsys) -> None:
    path = write_space(tmp_path, """\
        task: defr
        config:
          model: {backbone: CLIP-ViT-B, patch_size: 16, weights: hub}
          classifier: {init: language, text_encoder: "clip:ViT-B-32"}
        """)
    for command in (["validate", str(path)], ["tune", str(path), "--storage", str(tmp_path / "store")]):
        with pytest.raises(SystemExit) as exit_info:
            main(command)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err
        assert "'clip:ViT-B-32'" in err and "CLIP ViT-B-16" in err and str(path) in err
    assert not (tmp_path / "store").exists()
