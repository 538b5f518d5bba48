"""The hqm task on V-COCO: targets with missing objects, post-processing into the official structure,
the DETR conversion with the extra "missing" row, and build / train / evaluate on the synthetic V-COCO."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from raysweep.data.vcoco import VERBS, load_vcoco
from raysweep.tasks.base import TaskState, evaluate_in_process
from raysweep.tasks.hqm.checkpoint import detr_to_qpic
from raysweep.tasks.hqm.config import HqmConfig
from raysweep.tasks.hqm.task import HqmTask
from raysweep.tasks.hqm.vcoco import (
    build_vcoco_pair_targets,
    extended_correct_mat,
    to_official_detections,
)

V = {name: i for i, name in enumerate(VERBS)}


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every test here runs torch on one thread (conftest.py)."""


def test_object_less_verbs_of_a_person_share_one_target():
    rec = {"file_name": "COCO_train2014_000000000001.jpg",
           "annotations": [{"category_id": 1, "bbox": [0, 0, 10, 20]}, {"category_id": 54, "bbox": [5, 5, 9, 9]}],
           "hoi_annotation": [{"subject_id": 0, "object_id": 1, "category_id": V["eat_obj"]},
                              {"subject_id": 0, "object_id": -1, "category_id": V["eat_instr"]},
                              {"subject_id": 0, "object_id": -1, "category_id": V["stand"]},
                              {"subject_id": 0, "object_id": -1, "category_id": V["smile"]}]}
    boxes = torch.tensor([[0.25, 0.5, 0.5, 1.0], [0.7, 0.35, 0.2, 0.2]])
    t = build_vcoco_pair_targets(rec, boxes, torch.tensor([0, 1]))
    assert t["obj_labels"].tolist() == [48, 80]  # sandwich (COCO 54) is QPIC object 48; 80 = missing
    assert torch.nonzero(t["verb_labels"][0]).flatten().tolist() == [V["eat_obj"]]
    assert torch.nonzero(t["verb_labels"][1]).flatten().tolist() == [V["stand"], V["eat_instr"], V["smile"]]
    assert t["obj_boxes"][1].tolist() == [0, 0, 0, 0] and t["sub_boxes"].shape == (2, 4)
    cropped = build_vcoco_pair_targets(rec, boxes[:1], torch.tensor([0]))  # the sandwich was cropped away
    assert cropped["obj_labels"].tolist() == [80]


def test_a_missing_object_query_becomes_nan_role_boxes_and_max_agent_scores():
    correct = np.ones((29, 80))
    verb_scores = np.zeros((1, 29))
    verb_scores[0, [V["sit_instr"], V["eat_obj"], V["eat_instr"]]] = (0.6, 0.3, 0.5)
    pred = {"boxes": np.array([[1, 2, 30, 40], [5, 5, 9, 9]], dtype=np.float32), "labels": np.array([0, 80]),
            "verb_scores": verb_scores, "sub_ids": np.array([0]), "obj_ids": np.array([1])}
    det = to_official_detections(42, pred, extended_correct_mat(correct))
    from raysweep.data.vcoco import ACTION_NAMES, ROLE_PAIR_NAMES

    a = {n: i for i, n in enumerate(ACTION_NAMES)}
    r = {n: i for i, n in enumerate(ROLE_PAIR_NAMES)}
    assert det.image_ids.tolist() == [42] and det.person_boxes[0].tolist() == [1, 2, 30, 40]
    assert np.isnan(det.role_boxes[r["sit_instr"], 0]).all() and det.role_scores[r["sit_instr"], 0] == pytest.approx(0.6)
    assert det.agent_scores[a["sit"], 0] == pytest.approx(0.6)
    assert det.agent_scores[a["eat"], 0] == pytest.approx(0.5)  # max of eat_obj and eat_instr
    assert np.isnan(det.role_boxes[r["eat_obj"], 0]).all() and det.role_scores[r["eat_obj"], 0] == pytest.approx(0.3)
    assert det.role_scores[r["eat_instr"], 0] == pytest.approx(0.5)
    assert det.agent_scores[a["stand"], 0] == 0.0  # agent-only verbs: their score, here 0
    # a real object label keeps its box, and the validity matrix masks verbs the object cannot take
    correct[V["sit_instr"], 3] = 0
    pred["labels"] = np.array([0, 3])
    det = to_official_detections(42, pred, extended_correct_mat(correct))
    assert det.role_boxes[r["eat_obj"], 0].tolist() == [5, 5, 9, 9] and det.role_scores[r["sit_instr"], 0] == 0.0


def test_detr_checkpoint_gets_a_fresh_missing_row_before_no_object():
    sd = {"class_embed.weight": torch.arange(92 * 3, dtype=torch.float32).view(92, 3),
          "class_embed.bias": torch.arange(92, dtype=torch.float32)}
    out, made = detr_to_qpic(sd, num_obj_classes=81)
    assert out["obj_class_embed.weight"].shape == (82, 3) and out["obj_class_embed.bias"].shape == (82,)
    assert out["obj_class_embed.bias"][0] == 1 and out["obj_class_embed.bias"][81] == 91  # person, no-object
    assert "obj_class_embed.weight" in made


def _config(**data) -> HqmConfig:
    return HqmConfig.model_validate({
        "data": {"dataset": "vcoco", "synth": {"num_train": 16, "num_test": 12, "image_size": 64}, "train_scales": [64],
                 "crop_resize_scales": [64], "crop_min": 64, "crop_max": 64, "test_size": 64, **data},
        "model": {"num_queries": 4, "d_model": 32, "nhead": 2, "tiny_width": 8, "dim_feedforward": 32,
                  "enc_layers": 1, "dec_layers": 1},
        "hqm": {"gbs": True, "amm": True}})


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> tuple[HqmTask, Path]:
    cache = tmp_path_factory.mktemp("cache")
    cfg = _config()
    updates = HqmTask.prepare(cfg, cache)
    root = Path(updates["data.root"])
    assert (root / "annotations" / "test_vcoco.json").is_file() and (root / "official" / "vcoco_test.ids").is_file()
    assert HqmTask.prepare(cfg, cache) == updates
    return HqmTask(cfg.model_copy(update={"data": cfg.data.model_copy(update={"root": str(root)})}), cache), root


def test_vcoco_heads_are_sized_as_qpic_trains_them(prepared):
    task, _ = prepared
    assert task.head_sizes == (81, 29)
    model = task.build(torch.device("cpu")).model
    assert model.obj_class_embed.out_features == 82 and model.verb_class_embed.out_features == 29


def test_train_steps_and_evaluation_on_the_synthetic_vcoco(prepared):
    torch.manual_seed(0)
    task, _ = prepared
    parts = task.build(torch.device("cpu"))
    loader = DataLoader(parts.train_set, batch_size=4, collate_fn=parts.collate_fn)
    missing = 0
    for it, batch in enumerate(loader):
        missing += sum(int((t["obj_labels"] == 80).sum()) for t in batch[1])
        loss, _ = task.train_step(parts.model, batch, 0, it, parts.state)
        assert math.isfinite(loss.item())
        parts.optimizer.zero_grad()
        loss.backward()
        parts.optimizer.step()
    assert missing > 0  # object-less targets were trained on
    metrics = evaluate_in_process(task, parts)
    assert set(metrics) == {"map", "role_ap_s1", "role_ap_s2", "agent_ap"}
    assert metrics["map"] == metrics["role_ap_s1"] and all(0.0 <= v <= 1.0 for v in metrics.values())


def _perfect(records: list[dict]) -> dict[int, dict]:
    """Post-processor-shaped outputs with one query per GT (subject, object) pair and confident right verbs."""
    from raysweep.data.hicodet import coco_id_to_index

    out = {}
    for i, rec in enumerate(records):
        pairs: dict[tuple[int, int], list[int]] = {}
        for h in rec["hoi_annotation"]:
            pairs.setdefault((h["subject_id"], h["object_id"]), []).append(h["category_id"])
        boxes, labels, scores = [], [], []
        for (s, o), verbs in pairs.items():
            boxes += [rec["annotations"][s]["bbox"], rec["annotations"][o]["bbox"] if o >= 0 else [0, 0, 1, 1]]
            labels += [0, coco_id_to_index(rec["annotations"][o]["category_id"]) if o >= 0 else 80]
            row = np.zeros(29, dtype=np.float32)
            row[verbs] = 0.9
            scores.append(row)
        q = len(pairs)
        out[i] = {"boxes": np.array(boxes, dtype=np.float32).reshape(-1, 4), "labels": np.array(labels),
                  "verb_scores": np.array(scores).reshape(q, 29), "sub_ids": np.arange(0, 2 * q, 2),
                  "obj_ids": np.arange(1, 2 * q, 2)}
    return out


@pytest.mark.parametrize("ground_truth", ["qpic", "official"])
def test_perfect_predictions_score_one_in_both_scenarios(prepared, ground_truth):
    task, root = prepared
    cfg = task.config.model_copy(update={"eval": task.config.eval.model_copy(
        update={"vcoco_ground_truth": ground_truth})})
    task = HqmTask(cfg, task.cache_dir)
    metrics = task.evaluate(_perfect(load_vcoco(root).test), "test", TaskState(torch.device("cpu")))
    assert metrics["role_ap_s1"] == pytest.approx(1.0) and metrics["role_ap_s2"] == pytest.approx(1.0)
    assert task.vcoco_ground_truth.source.startswith(ground_truth if ground_truth == "official" else "qpic")


# ---- raysweep report -----------------------------------------------------------------------------------------------
def _frame(rows: list[tuple[str, bool, bool, float]]):
    import pandas as pd

    records = []
    for i, (dataset, gbs, amm, value) in enumerate(rows):
        record = {"task": "hqm", "trial_id": f"t{i}", "status": "TERMINATED", "outcome": "completed",
                  "config.data.dataset": dataset, "config.hqm.gbs": gbs, "config.hqm.amm": amm,
                  "config.model.backbone": "resnet50", "config.hqm.alternation": "ajl", "config.eval.protocol": "qpic"}
        metrics = ("role_ap_s1", "role_ap_s2", "agent_ap") if dataset == "vcoco" else HqmTask.metric_names[:6]
        record.update({f"last.{m}": value + k / 100 for k, m in enumerate(metrics)})
        records.append(record)
    return pd.DataFrame(records)


def test_report_lays_vcoco_results_out_as_scenario_1_and_2():
    from raysweep.results.tables import render_table
    from raysweep.tasks.hqm.paper import VCOCO_TABLE

    text = render_table(_frame([("vcoco", False, False, 0.5), ("vcoco", False, False, 0.6)]))
    lines = text.splitlines()
    assert "Scenario 1" in lines[0] and "Scenario 2" in lines[0] and "Full" not in lines[0]
    assert lines[2].startswith("| QPIC ") and "55.00 ± 7.07" in lines[2] and "56.00 ± 7.07" in lines[2]
    assert "R101" in lines[3] and "–" in lines[3] and "QPIC + HQM" in lines[4]
    assert VCOCO_TABLE.published[0] == {"Scenario 1": 58.8, "Scenario 2": 61.0}
    assert VCOCO_TABLE.published[2] == {"Scenario 1": 63.6, "Scenario 2": None}  # not published
    assert "Test role AP in %" in text


def test_report_of_a_sweep_over_both_datasets_has_a_dataset_column():
    from raysweep.results.tables import render_table

    text = render_table(_frame([("hicodet", False, False, 0.3), ("vcoco", True, True, 0.6)]))
    header, _, *rows = text.splitlines()
    assert header.startswith("| dataset") and "Full" in header and "Scenario 1" in header
    hico = next(r for r in rows if r.startswith("| HICO-DET") and "| QPIC " in r)
    vcoco = next(r for r in rows if r.startswith("| V-COCO") and "QPIC + HQM" in r)
    assert "30.00" in hico and "60.00" in vcoco


def test_trials_layout_of_a_vcoco_sweep_shows_the_scenario_columns():
    from raysweep.results.tables import render_table

    frame = _frame([("vcoco", False, False, 0.5), ("vcoco", True, True, 0.6)])
    for metric in ("role_ap_s1", "role_ap_s2"):
        frame[f"last.test.{metric}"] = frame.pop(f"last.{metric}")
    frame["last.val.role_ap_s1"] = [0.7, 0.4]
    frame["objective"] = "val.role_ap_s1"
    lines = render_table(frame, layout="trials").splitlines()
    header = [c.strip() for c in lines[0].split("|")[1:-1]]
    assert header[-3:] == ["val.role_ap_s1", "Scenario 1", "Scenario 2"] and "Full" not in header
    first = [c.strip() for c in lines[2].split("|")[1:-1]]
    assert first[0] == "t0" and first[-3:] == ["70.00", "50.00", "51.00"]
    assert "(role AP in %)" in lines[-3]
