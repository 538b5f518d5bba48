"""QPIC/HQM model: shapes, post-processing layout, DETR checkpoint conversion, state-dict names against the
reference models, and a tiny model overfitting one batch on CPU."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from raysweep.data.hicodet import VALID_COCO_IDS
from raysweep.errors import ConfigError
from raysweep.tasks.hqm.alternation import hard_branch
from raysweep.tasks.hqm.checkpoint import load_pretrained
from raysweep.tasks.hqm.config import HqmConfig
from raysweep.tasks.hqm.criterion import build_criterion
from raysweep.tasks.hqm.model import HEAD_NAMES, build_model
from raysweep.tasks.hqm.padded import PaddedBatch
from raysweep.tasks.hqm.postprocess import postprocess_hoi
from raysweep.tasks.hqm.task import param_groups

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every test here runs torch on one thread (conftest.py)."""


def _cfg(**sections) -> HqmConfig:
    base = {"model": {"num_queries": 8, "dropout": 0.0}}
    for k, v in sections.items():
        base[k] = {**base.get(k, {}), **v}
    return HqmConfig.model_validate(base)


def _batch():
    images = PaddedBatch.from_images([torch.randn(3, 64, 96), torch.randn(3, 80, 64)])

    def target(subs, objs, labels, verbs, size):
        v = torch.zeros(len(labels), 117)
        for i, vs in enumerate(verbs):
            v[i, vs] = 1
        return {"sub_boxes": torch.tensor(subs), "obj_boxes": torch.tensor(objs), "obj_labels": torch.tensor(labels),
                "verb_labels": v, "size": torch.tensor(size)}

    targets = [target([[0.3, 0.5, 0.3, 0.6], [0.7, 0.5, 0.3, 0.6]], [[0.5, 0.7, 0.2, 0.2], [0.8, 0.3, 0.2, 0.2]],
                      [3, 10], [[5, 8], [20]], [64, 96]),
               target([[0.5, 0.5, 0.4, 0.8]], [[0.4, 0.2, 0.3, 0.2]], [40], [[100]], [80, 64])]
    return images, targets


def test_padded_batch_mask():
    b = PaddedBatch.from_images([torch.ones(3, 4, 6), torch.ones(3, 5, 2)])
    assert b.tensors.shape == (2, 3, 5, 6)
    assert b.mask[0].sum() == 5 * 6 - 4 * 6 and b.mask[1].sum() == 5 * 6 - 5 * 2
    assert not b.mask[0, :4, :6].any() and b.tensors[1, :, :, 2:].abs().sum() == 0


def test_forward_shapes_for_every_branch():
    torch.manual_seed(0)
    model = build_model(_cfg(hqm={"gbs": True, "amm": True}, model={"dec_layers": 3}), 80, 117)
    images, targets = _batch()
    main_keys = {"pred_obj_logits": 81, "pred_verb_logits": 117, "pred_sub_boxes": 4, "pred_obj_boxes": 4}
    for branch in (None, "gbs", "amm"):
        out = model(images, targets, branch)
        assert len(out["aux_outputs"]) == 2
        for k, width in main_keys.items():
            assert out[k].shape == (2, 8, width)
            assert out["aux_outputs"][0][k].shape == (2, 8, width)
        if branch == "gbs":
            assert out["gbs"]["pred_obj_logits"].shape == (2, 2, 81)  # max pairs per image
            assert len(out["gbs"]["aux_outputs"]) == 2
        if branch == "amm":
            assert out["amm"]["pred_verb_logits"].shape == (2, 8, 117)
    boxes = out["pred_sub_boxes"]
    assert ((boxes > 0) & (boxes < 1)).all()


def test_amm_branch_can_use_the_final_norm():
    torch.manual_seed(0)
    cfg = _cfg(hqm={"amm": True, "amm_topk": 1000, "amm_fraction": 0.0})  # hides nothing
    model = build_model(cfg, 80, 117).eval()
    # post-norm layers end in a LayerNorm, so an identity-affine decoder.norm would change almost nothing
    model.transformer.decoder.norm.weight.data.fill_(2.0)
    images, targets = _batch()
    raw = model(images, targets, "amm")
    model.amm_skip_final_norm = False
    normed = model(images, targets, "amm")
    torch.testing.assert_close(normed["amm"]["pred_obj_logits"], normed["pred_obj_logits"])  # = main branch
    assert not torch.allclose(raw["amm"]["pred_obj_logits"], raw["pred_obj_logits"])


def test_postprocess_layout_and_values():
    out = {"pred_obj_logits": torch.tensor([[[math.log(3.0), 0.0, 0.0], [0.0, math.log(2.0), math.log(5.0)]]]),
           "pred_verb_logits": torch.tensor([[[0.0, math.log(3.0), -50.0], [0.0, 0.0, 0.0]]]),
           "pred_sub_boxes": torch.tensor([[[0.5, 0.5, 0.5, 0.5], [0.25, 0.25, 0.5, 0.5]]]),
           "pred_obj_boxes": torch.tensor([[[0.5, 0.5, 1.0, 1.0], [0.75, 0.75, 0.5, 0.5]]])}
    (res,) = postprocess_hoi(out, torch.tensor([[100, 200]]))  # h = 100, w = 200
    np.testing.assert_allclose(res["boxes"], [[50, 25, 150, 75], [0, 0, 100, 50],  # subjects
                                              [0, 0, 200, 100], [100, 50, 200, 100]])  # objects
    assert res["labels"].tolist() == [0, 0, 0, 1]  # subjects 0; q1's argmax skips the no-object column
    # q0: object score 3/5, q1: 2/8 (no-object stays in the softmax)
    np.testing.assert_allclose(res["verb_scores"], [[0.3, 0.45, 0.6 / (1 + math.exp(50))], [0.125, 0.125, 0.125]],
                               rtol=1e-6)
    assert res["sub_ids"].tolist() == [0, 1] and res["obj_ids"].tolist() == [2, 3]
    assert res["boxes"].dtype == np.float32 and res["verb_scores"].dtype == np.float32


def _detr_state_dict(model) -> dict:
    """A DETR-layout checkpoint built from a QPIC-layout model: its heads replaced by DETR's class/bbox heads."""
    sd = {k: v.clone() for k, v in model.state_dict().items() if k.split(".")[0] not in HEAD_NAMES
          and not k.startswith("query_embed_sp")}
    d = model.transformer.d_model
    g = torch.Generator().manual_seed(3)
    sd["class_embed.weight"] = torch.randn(92, d, generator=g)
    sd["class_embed.bias"] = torch.randn(92, generator=g)
    for i, (o, n) in enumerate([(d, d), (d, d), (4, d)]):
        sd[f"bbox_embed.layers.{i}.weight"] = torch.randn(o, n, generator=g)
        sd[f"bbox_embed.layers.{i}.bias"] = torch.randn(o, generator=g)
    return sd


@pytest.mark.parametrize("layout", ["qpic", "hqm"])
def test_detr_checkpoint_conversion_and_report(tmp_path, layout):
    torch.manual_seed(0)
    source = build_model(_cfg(), 80, 117)
    detr = _detr_state_dict(source)
    path = tmp_path / "detr.pth"
    torch.save({"model": detr, "args": argparse.Namespace(lr=1e-4)}, path)  # DETR pickles its args too

    torch.manual_seed(1)
    model = build_model(_cfg(model={"layout": layout}, hqm={"gbs": True}), 80, 117)
    report = load_pretrained(model, path)
    sd = model.state_dict()
    pre = "transformer.decoder." if layout == "hqm" else ""
    idx = torch.tensor(list(VALID_COCO_IDS) + [91])
    assert torch.equal(sd[pre + "obj_class_embed.weight"], detr["class_embed.weight"][idx])
    assert torch.equal(sd[pre + "obj_class_embed.bias"][:2], detr["class_embed.bias"][[1, 2]])  # person, bicycle
    assert torch.equal(sd[pre + "obj_class_embed.bias"][80], detr["class_embed.bias"][91])  # no-object row
    for head in ("sub_bbox_embed", "obj_bbox_embed"):
        for i in range(3):
            assert torch.equal(sd[f"{pre}{head}.layers.{i}.weight"], detr[f"bbox_embed.layers.{i}.weight"])
    key = "transformer.encoder.layers.0.linear1.weight"
    assert torch.equal(sd[key], detr[key])
    assert torch.equal(sd["backbone.0.body.layer1.0.bn1.running_var"], detr["backbone.0.body.layer1.0.bn1.running_var"])

    assert report.source_layout == "detr"
    assert report.fresh == [pre + "verb_class_embed.weight", pre + "verb_class_embed.bias",
                            "query_embed_sp.layers.0.weight", "query_embed_sp.layers.0.bias",
                            "query_embed_sp.layers.1.weight", "query_embed_sp.layers.1.bias"]
    assert set(report.converted) == {pre + "obj_class_embed.weight", pre + "obj_class_embed.bias"} | {
        f"{pre}{h}.layers.{i}.{p}" for h in ("sub_bbox_embed", "obj_bbox_embed") for i in range(3)
        for p in ("weight", "bias")}
    assert set(report.ignored) == {k for k in detr if k.startswith(("class_embed.", "bbox_embed."))}
    assert len(report.loaded) + len(report.converted) + len(report.fresh) == len(sd)
    assert "transformer.decoder.norm.weight" in report.loaded and "query_embed.weight" in report.loaded


def test_layouts_load_into_each_other(tmp_path):
    torch.manual_seed(0)
    hqm = build_model(_cfg(model={"layout": "hqm"}), 80, 117)
    assert "transformer.decoder.verb_class_embed.weight" in hqm.state_dict()
    torch.save(hqm.state_dict(), tmp_path / "hqm.pth")
    torch.manual_seed(1)
    qpic = build_model(_cfg(), 80, 117)
    report = load_pretrained(qpic, tmp_path / "hqm.pth")
    assert report.source_layout == "hqm" and report.fresh == [] and report.ignored == []
    assert len(report.converted) == 16  # the four heads' tensors, renamed
    images, _ = _batch()
    hqm.eval(), qpic.eval()
    torch.testing.assert_close(qpic(images)["pred_verb_logits"], hqm(images)["pred_verb_logits"])


def test_checkpoint_shape_mismatch_is_a_config_error(tmp_path):
    torch.save({"model": build_model(_cfg(), 80, 117).state_dict()}, tmp_path / "q8.pth")
    with pytest.raises(ConfigError, match="query_embed.weight"):
        load_pretrained(build_model(_cfg(model={"num_queries": 4}), 80, 117), tmp_path / "q8.pth")
    torch.save({"model": {"foo.weight": torch.zeros(1)}}, tmp_path / "other.pth")
    with pytest.raises(ConfigError, match="none of its"):
        load_pretrained(build_model(_cfg(), 80, 117), tmp_path / "other.pth")


def _reference_rows(name: str) -> list[tuple[str, ...]]:
    path = REFERENCE / name
    if not path.is_file():
        pytest.skip(f"reference file {path} not available")
    return [tuple(line.rstrip("\n").split("\t")) for line in path.read_text().splitlines()[1:]]


def _rows(model) -> list[tuple[str, ...]]:
    params = dict(model.named_parameters())
    return [(k, "x".join(map(str, v.shape)), "param" if k in params else "buffer",
             str(params[k].requires_grad) if k in params else "-") for k, v in model.state_dict().items()]


@pytest.mark.parametrize("layout, gbs, reference", [("qpic", False, "qpic_r50_state_dict.tsv"),
                                                    ("hqm", True, "hqm_r50_state_dict.tsv")])
def test_r50_state_dict_matches_the_reference_models(layout, gbs, reference):
    expected = _reference_rows(reference)
    paper = {"backbone": "resnet50", "d_model": 256, "nhead": 8, "enc_layers": 6, "dec_layers": 6,
             "dim_feedforward": 2048, "num_queries": 100, "layout": layout}
    model = build_model(HqmConfig.model_validate({"model": paper, "hqm": {"gbs": gbs}}), 80, 117)
    assert _rows(model) == expected  # names, shapes, param/buffer, requires_grad, and order


def test_detr_reference_names_convert_onto_qpic():
    """Converting DETR's real key list gives QPIC's real key list (all but the fresh verb head)."""
    detr = _reference_rows("detr_r50_state_dict.tsv")
    qpic = _reference_rows("qpic_r50_state_dict.tsv")
    from raysweep.tasks.hqm.checkpoint import detr_to_qpic

    fake = {r[0]: torch.empty([int(s) for s in r[1].split("x")]) for r in detr}
    converted, _ = detr_to_qpic(fake)
    assert {k: "x".join(map(str, v.shape)) for k, v in converted.items()} == {r[0]: r[1] for r in qpic
                                                                              if not r[0].startswith("verb_class")}


def test_optimizer_groups_follow_detr():
    model = build_model(_cfg(), 80, 117)
    groups = param_groups(model, 1e-5)
    names = {id(p): n for n, p in model.named_parameters()}
    backbone = [names[id(p)] for p in groups[1]["params"]]
    assert groups[1]["lr"] == 1e-5 and backbone and all(n.startswith("backbone.0.body.layer") for n in backbone)
    assert not any(n.startswith(("backbone.0.body.conv1", "backbone.0.body.layer1")) for n in backbone)
    frozen = build_model(_cfg(optim={"lr_backbone": 0.0}), 80, 117)
    assert len(param_groups(frozen, 0.0)) == 1


@pytest.mark.parametrize("gbs, amm", [(False, False), (True, True)])
def test_tiny_model_overfits_one_batch(gbs, amm):
    torch.manual_seed(0)
    cfg = _cfg(hqm={"gbs": gbs, "amm": amm}, optim={"lr": 1e-3, "lr_backbone": 1e-4})
    model, criterion = build_model(cfg, 80, 117), build_criterion(cfg, 80)
    opt = torch.optim.AdamW(param_groups(model, cfg.optim.lr_backbone), lr=cfg.optim.lr, weight_decay=1e-4)
    images, targets = _batch()
    first = last = None
    for it in range(80):
        losses = criterion(model(images, targets, hard_branch(gbs, amm, "ajl", it)), targets)
        main = sum(criterion.weight_of(k) * v for k, v in losses.items()
                   if k.startswith("loss_") and not k.startswith(("loss_gt_", "loss_occ_")))
        total = criterion.weighted_total(losses)
        opt.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        opt.step()
        first = main.item() if first is None else first
        last = main.item()
    assert last < 0.05 * first, (first, last)
