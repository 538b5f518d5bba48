"""HqmTask end to end on a hand-made mini HICO-DET: build, train steps per ablation, predict, evaluate."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from pydantic import ValidationError
from torch.utils.data import DataLoader

from raysweep.tasks.base import LRSchedule, evaluate_in_process
from raysweep.tasks.hqm.config import HqmConfig
from raysweep.tasks.hqm.task import HqmTask

# (verb id, object COCO id, hoi id) classes used by the mini dataset
CLASSES = [(73, 4, 153), (77, 4, 155), (58, 18, 400)]


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every test here runs torch on one thread (conftest.py)."""


def _record(name: str, i: int, rng: np.random.Generator, folder: Path) -> dict:
    w, h = int(rng.integers(60, 90)), int(rng.integers(50, 80))
    img = Image.new("RGB", (w, h), (200, 200, 200))
    draw = ImageDraw.Draw(img)
    verb, obj, hoi = CLASSES[i % len(CLASSES)]
    person = [2, 2, w // 2, h - 3]
    thing = [w // 2 - 4, h // 3, w - 3, h - 10]
    draw.rectangle(person, fill=(200, 30, 30))
    draw.rectangle(thing, fill=(30, 30, 200) if obj == 4 else (30, 200, 30))
    img.save(folder / name)
    return {"file_name": name, "img_id": i,
            "annotations": [{"bbox": person, "category_id": 1}, {"bbox": thing, "category_id": obj}],
            "hoi_annotation": [{"subject_id": 0, "object_id": 1, "category_id": verb, "hoi_category_id": hoi}]}


@pytest.fixture(scope="module")
def mini_hicodet(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hicodet")
    (root / "annotations").mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train2015", 12), ("test2015", 6)):
        (root / "images" / split).mkdir(parents=True)
        records = [_record(f"{split}_{i:03d}.png", i, rng, root / "images" / split) for i in range(n)]
        name = "trainval_hico.json" if split == "train2015" else "test_hico.json"
        (root / "annotations" / name).write_text(json.dumps(records))
    from raysweep.data.hicodet import coco_id_to_index

    corre = np.zeros((117, 80))
    for verb, obj, _ in CLASSES:
        corre[verb - 1, coco_id_to_index(obj)] = 1
    np.save(root / "annotations" / "corre_hico.npy", corre)
    return root


def _task(root: Path, **sections) -> HqmTask:
    tree = {"data": {"root": str(root), "train_scales": [48, 56], "max_size": 96, "crop_resize_scales": [40, 48],
                     "crop_min": 32, "crop_max": 48, "test_size": 56, "test_max_size": 96},
            "model": {"num_queries": 6, "d_model": 32, "nhead": 2, "dim_feedforward": 64, "tiny_width": 8},
            "train": {"batch_size": 3, "eval_batch_size": 4}}
    for k, v in sections.items():
        tree[k] = {**tree.get(k, {}), **v}
    return HqmTask(HqmConfig.model_validate(tree))


def test_config_defaults_and_validation():
    cfg = HqmConfig()
    assert (cfg.matcher.cost_bbox, cfg.matcher.cost_giou, cfg.loss.eos_coef) == (2.5, 1.0, 0.1)
    assert (cfg.optim.lr, cfg.optim.lr_backbone, cfg.optim.clip_max_norm) == (1e-4, 1e-5, 0.1)
    assert (cfg.hqm.gbs, cfg.hqm.amm, cfg.hqm.hard_weight, cfg.hqm.amm_skip_final_norm) == (False, False, 0.8, True)
    with pytest.raises(ValidationError, match="hqm.gbs_band"):
        HqmConfig.model_validate({"hqm": {"gbs_band": [0.6, 0.4]}})
    with pytest.raises(ValidationError, match="crop_min"):
        HqmConfig.model_validate({"data": {"crop_min": 200}})
    with pytest.raises(ValidationError, match="divisible"):
        HqmConfig.model_validate({"model": {"d_model": 30, "nhead": 4}})
    with pytest.raises(ValidationError):
        HqmConfig.model_validate({"hqm": {"gbs": True, "shift": 1}})  # unknown key


@pytest.mark.parametrize("gbs, amm", [(False, False), (True, False), (False, True), (True, True)])
def test_build_and_train_steps_for_each_ablation(mini_hicodet, gbs, amm):
    torch.manual_seed(0)
    task = _task(mini_hicodet, hqm={"gbs": gbs, "amm": amm})
    parts = task.build(torch.device("cpu"))
    assert parts.find_unused_parameters == (gbs or amm)
    assert parts.grad_clip_norm == 0.1 and isinstance(parts.schedule, LRSchedule)
    assert len(parts.train_set) == 12 and len(parts.eval_set) == 6
    loader = DataLoader(parts.train_set, batch_size=3, collate_fn=parts.collate_fn)
    task.on_epoch_start(0)
    for it, batch in enumerate(loader):
        if it == 2:
            break
        loss, logs = task.train_step(parts.model, batch, 0, it, parts.state)
        assert loss.requires_grad and math.isfinite(loss.item())
        assert set(logs) == {"loss_obj_ce", "loss_verb_ce", "loss_sub_bbox", "loss_obj_bbox", "loss_sub_giou",
                             "loss_obj_giou", "obj_cardinality_error", "loss_hard"}
        assert (logs["loss_hard"] > 0) == (gbs or amm)  # one hard branch runs in every iteration
        parts.optimizer.zero_grad()
        loss.backward()
        parts.optimizer.step()
    assert task.num_samples(batch) == 3


@pytest.mark.parametrize("gbs, amm", [(False, False), (True, False), (False, True)])
def test_bf16_forward_with_fp32_losses_stays_close_to_fp32(mini_hicodet, gbs, amm):
    """`train.amp: bf16` autocasts the network on GPU trials; the matcher and the losses get its outputs in fp32.
    The same path under CPU autocast (the state enables it on CUDA only): every loss term within bf16's precision of
    the fp32 step on a fixed batch, and finite gradients."""
    from raysweep.tasks.hqm.task import as_float

    task = _task(mini_hicodet, hqm={"gbs": gbs, "amm": amm}, train={"amp": "bf16"})
    torch.manual_seed(0)
    parts = task.build(torch.device("cpu"))
    with parts.state.autocast():
        assert not torch.is_autocast_enabled("cpu")  # a CPU trial ignores train.amp
    parts.model.eval()  # no dropout: both passes compute the same function
    batch = next(iter(DataLoader(parts.train_set, batch_size=3, collate_fn=parts.collate_fn)))
    samples, targets = batch[0], batch[1]
    branch = "gbs" if gbs else "amm" if amm else None
    fp32 = parts.state.criterion(parts.model(samples, targets, branch), targets)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        raw = parts.model(samples, targets, branch)
    assert raw["pred_verb_logits"].dtype == torch.bfloat16
    outputs = as_float(raw)
    assert outputs["pred_verb_logits"].dtype == torch.float32
    assert all(a["pred_obj_boxes"].dtype == torch.float32 for a in outputs["aux_outputs"])
    bf16 = parts.state.criterion(outputs, targets)
    assert set(bf16) == set(fp32)
    for key, value in fp32.items():
        assert bf16[key].item() == pytest.approx(value.item(), rel=5e-2, abs=2e-2), key
    total = parts.state.criterion.weighted_total(bf16)
    total.backward()
    grads = [p.grad for p in parts.model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_step_lr_drops_per_epoch(mini_hicodet):
    task = _task(mini_hicodet, optim={"lr_drop": 2})
    parts = task.build(torch.device("cpu"))
    lrs = []
    parts.optimizer.step()  # no gradients: a no-op that keeps torch's order-of-calls check quiet
    for epoch in range(4):
        lrs.append([g["lr"] for g in parts.optimizer.param_groups])
        parts.schedule.step_epoch(epoch, None)
    assert lrs[0] == pytest.approx([1e-4, 1e-5]) and lrs[2] == pytest.approx([1e-5, 1e-6])
    assert lrs[1] == lrs[0] and lrs[3] == lrs[2]


def test_predict_and_evaluate(mini_hicodet):
    torch.manual_seed(0)
    task = _task(mini_hicodet)
    parts = task.build(torch.device("cpu"))
    parts.model.eval()
    outputs = {}
    for batch in DataLoader(parts.eval_set, batch_size=4, collate_fn=parts.collate_fn):
        indices, preds = task.predict(parts.model, batch, parts.state)
        outputs.update(zip(indices, preds))
    assert sorted(outputs) == list(range(6))
    first = outputs[0]
    assert first["boxes"].shape == (12, 4) and first["verb_scores"].shape == (6, 117)
    record = task.annotations.test[0]
    width = Image.open(mini_hicodet / "images" / "test2015" / record["file_name"]).width
    assert first["boxes"][:, 2].max() <= width + 1e-3  # original-image pixels
    metrics = task.evaluate(outputs, "test", parts.state)
    assert set(metrics) == set(HqmTask.metric_names[:6])  # the HICO-DET metrics (the last three are V-COCO's)
    assert all(0.0 <= v <= 1.0 for k, v in metrics.items() if not math.isnan(v))
    in_process = evaluate_in_process(task, parts)  # the same, as benchmarks and notebooks call it
    assert in_process.keys() == metrics.keys()
    assert all(math.isnan(v) if math.isnan(metrics[k]) else v == pytest.approx(metrics[k]) for k, v in in_process.items())
    # perfect predictions: the GT boxes with a confident right class and verb give mAP 1
    perfect = {}
    for i, rec in enumerate(task.annotations.test):
        verb, obj, _ = next(c for c in CLASSES if c[2] == rec["hoi_annotation"][0]["hoi_category_id"])
        from raysweep.data.hicodet import coco_id_to_index

        scores = np.zeros((1, 117), dtype=np.float32)
        scores[0, verb - 1] = 0.9
        perfect[i] = {"boxes": np.array([a["bbox"] for a in rec["annotations"]], dtype=np.float32),
                      "labels": np.array([0, coco_id_to_index(obj)]), "verb_scores": scores,
                      "sub_ids": np.array([0]), "obj_ids": np.array([1])}
    assert task.evaluate(perfect, "test", parts.state)["map"] == pytest.approx(1.0)
    with pytest.raises(RuntimeError, match="missing"):
        task.evaluate({0: first}, "test", parts.state)


def test_pretrained_checkpoint_is_loaded_at_build(mini_hicodet, tmp_path):
    torch.manual_seed(0)
    source = _task(mini_hicodet).build(torch.device("cpu")).model
    torch.save({"model": source.state_dict()}, tmp_path / "qpic.pth")
    task = _task(mini_hicodet, model={"pretrained": str(tmp_path / "qpic.pth"), "layout": "hqm"})
    model = task.build(torch.device("cpu")).model
    assert task.load_report.source_layout == "qpic" and task.load_report.fresh == []
    torch.testing.assert_close(model.state_dict()["transformer.decoder.verb_class_embed.weight"],
                               source.state_dict()["verb_class_embed.weight"])


def test_prepare_generates_the_embedded_synthetic_hicodet(tmp_path):
    cfg = HqmConfig.model_validate({"data": {"synth": {"num_train": 10, "num_test": 10, "image_size": 64}},
                                    "model": {"num_queries": 6, "d_model": 32, "nhead": 2, "tiny_width": 8}})
    updates = HqmTask.prepare(cfg, tmp_path)
    root = Path(updates["data.root"])
    assert root.is_relative_to(tmp_path) and (root / "annotations" / "trainval_hico.json").is_file()
    assert HqmTask.prepare(cfg, tmp_path) == updates  # idempotent: a cache hit
    task = HqmTask(cfg.model_copy(update={"data": cfg.data.model_copy(update={"root": str(root)})}), tmp_path)
    parts = task.build(torch.device("cpu"))
    batch = next(iter(DataLoader(parts.train_set, batch_size=2, collate_fn=parts.collate_fn)))
    loss, _ = task.train_step(parts.model, batch, 0, 0, parts.state)
    assert math.isfinite(loss.item())
