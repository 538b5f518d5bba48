"""DEFR detection end to end without Ray: the synthetic detection views, predictions in raysweep's HICO-DET format,
the task's `detection:` block (prepare and final_metrics) and `raysweep detect hico-det`."""

from __future__ import annotations

import json
import pickle
import textwrap

import numpy as np
import pytest
import torch

from raysweep.data.hicodet import NUM_VERBS, coco_id_to_index, load_hicodet
from raysweep.errors import ConfigError
from raysweep.metrics.hicodet import evaluate_hicodet
from raysweep.tasks.defr.config import DefrConfig, SynthHicoConfig
from raysweep.tasks.defr.detection import (
    class_map_from_annotations,
    detect_hicodet,
    detection_metrics,
    image_predictions,
)
from raysweep.tasks.defr.detection_config import DetectionConfig, SynthDetectionsConfig
from raysweep.tasks.defr.detection_format import Detections, load_detections
from raysweep.tasks.defr.detection_mask import PairScorer, cls_marks
from raysweep.tasks.defr.detection_pairs import pair_scores
from tests.support import run_cli

SYNTH = SynthHicoConfig(num_train=40, num_test=12, image_size=64, seed=3)


@pytest.fixture(scope="module")
def detection_set(tmp_path_factory):
    from raysweep.data.synth.detections import ensure_synthetic_detection_set

    return ensure_synthetic_detection_set(tmp_path_factory.mktemp("cache"), SYNTH, SynthDetectionsConfig())


def _net(cfg: DefrConfig):
    from raysweep.tasks.defr.model import build_defr_net
    from raysweep.data.synth.vocabulary import HOI_CLASSES

    torch.manual_seed(0)
    return build_defr_net(cfg, len(HOI_CLASSES), None).eval()


TINY = {"classifier": {"init": "rand"}, "model": {"width": 32, "heads": 2, "depth": 2}}


def test_synthetic_views_match_the_ground_truth(detection_set):
    from raysweep.data.hico import load_hico

    annotations = load_hicodet(detection_set)
    hico = load_hico(detection_set)  # the recognition view of the same images
    assert hico.files_test.tolist() == [r["file_name"] for r in annotations.test]
    for rec, labels in zip(annotations.test, hico.labels_test):
        shown = sorted({h["hoi_category_id"] - 1 for h in rec["hoi_annotation"]})
        assert np.flatnonzero(labels == 1).tolist() == shown
    dets = load_detections(detection_set / "detections/test2015.json", [r["file_name"] for r in annotations.test])
    gt_boxes = sum(len(r["annotations"]) for r in annotations.test)
    assert sum(len(d.scores) for d in dets.values()) > 0.8 * gt_boxes  # a few misses, duplicates and false alarms
    assert all(((d.scores >= 0) & (d.scores <= 1)).all() for d in dets.values())


def test_exact_detections_become_the_ground_truth_boxes():
    """Continuous detection boxes are written as cache.py writes them (x2 - 1, y2 - 1): exact GT detections of a
    0-based inclusive GT box come back as that box."""
    cfg = DefrConfig.model_validate(TINY)
    scorer = PairScorer(_net(cfg), 1, "additive_one")
    from raysweep.tasks.defr.detection_pairs import HoiClassMap

    cup, person = coco_id_to_index(47), 0
    class_map = HoiClassMap.from_triplets(34, {14: (8, cup), 15: (36, cup), 17: (57, cup)})
    gt_h, gt_o = [2, 3, 20, 40], [30, 10, 41, 22]  # 0-based inclusive
    det = Detections(np.array([[2, 3, 21, 41], [30, 10, 42, 23]], dtype=float), np.array([person, cup]),
                     np.array([0.9, 0.5]))
    image = torch.randn(3, 64, 64)
    pred = image_predictions(scorer, image, 64, 64, det, class_map, DetectionConfig())
    assert pred["boxes"].tolist() == [gt_h, gt_o]
    assert pred["sub_ids"].tolist() == [0] and pred["obj_ids"].tolist() == [1]
    assert np.flatnonzero(pred["verb_scores"][0]).tolist() == [8, 36, 57]  # the verbs of the cup's classes
    with torch.no_grad():
        tokens = scorer.image_tokens(image[None])[0]
        logits = scorer.pair_logits(tokens, cls_marks(det.boxes[:1], det.boxes[1:], 64, 64, scorer.grid))
    sigma = torch.sigmoid(logits.double()).numpy()[:, [14, 15, 17]]
    expected = pair_scores(sigma, np.array([0.9]), np.array([0.5]), "cache")[0]
    np.testing.assert_allclose(pred["verb_scores"][0, [8, 36, 57]], expected, rtol=1e-6)


def test_predictions_are_aligned_valid_and_evaluable(detection_set):
    cfg = DefrConfig.model_validate(TINY)
    annotations = load_hicodet(detection_set)
    dets = load_detections(detection_set / "detections/test2015.json", [r["file_name"] for r in annotations.test])
    preds = detect_hicodet(_net(cfg), annotations, dets, cfg.detection, 64, ((0.5,) * 3, (0.5,) * 3))
    assert len(preds) == len(annotations.test)
    for pred in preds:
        assert pred["verb_scores"].shape == (len(pred["sub_ids"]), NUM_VERBS)
        assert (pred["labels"][pred["sub_ids"]] == 0).all()  # subjects are humans
        assert (pred["labels"][pred["obj_ids"]] != 0).all()  # the vocabulary has no person-object class
    metrics = detection_metrics(evaluate_hicodet(annotations, preds, "official"))
    assert set(metrics) == {"det.map", "det.map_rare", "det.map_non_rare", "det.map_ko", "det.map_ko_rare",
                            "det.map_ko_non_rare"}
    assert 0.0 <= metrics["det.map"] <= 1.0


def test_class_map_reads_hoi_ids_from_the_records(detection_set):
    from raysweep.data.synth.vocabulary import HOI_CLASSES

    class_map = class_map_from_annotations(load_hicodet(detection_set), 34)
    c = HOI_CLASSES.index(("ride", "bicycle"))
    assert class_map.verbs[c] == 76 and class_map.objects[c] == coco_id_to_index(2)


# ---- the detection: block of a DEFR task --------------------------------------------------------------------------
def test_prepare_points_data_root_and_anno_dir_at_the_embedded_set(tmp_path):
    from raysweep.tasks.defr.task import DefrTask

    cfg = DefrConfig.model_validate({**TINY, "data": {"synth": SYNTH.model_dump()}, "detection": {"enabled": True}})
    updates = DefrTask.prepare(cfg, tmp_path)
    assert updates["data.root"] == updates["detection.anno_dir"]
    assert (tmp_path / "synth_hicodet_defr").is_dir() and not (tmp_path / "synth_hico").exists()


def test_prepare_refuses_a_data_root_without_anno_dir(tmp_path):
    from raysweep.tasks.defr.task import DefrTask

    cfg = DefrConfig.model_validate({"data": {"root": str(tmp_path)}, "detection": {"enabled": True}})
    with pytest.raises(ConfigError, match="detection.anno_dir is null"):
        DefrTask.prepare(cfg, tmp_path)


def test_detection_block_is_off_by_default_and_strict():
    assert DefrConfig().detection.enabled is False
    with pytest.raises(ValueError, match="mask_mode"):
        DefrConfig.model_validate({"detection": {"mask_mode": "soft"}})


def test_final_metrics_of_a_built_task(detection_set, tmp_path):
    from raysweep.tasks.defr.task import DefrTask

    cfg = DefrConfig.model_validate({**TINY, "data": {"root": str(detection_set)},
                                     "detection": {"enabled": True, "anno_dir": str(detection_set)}})
    task = DefrTask(cfg, tmp_path)
    parts = task.build(torch.device("cpu"))
    metrics = task.final_metrics(parts.model, parts.state)
    assert set(metrics) >= {"det.map", "det.map_ko"} and 0.0 <= metrics["det.map"] <= 1.0
    off = DefrTask(DefrConfig.model_validate({**TINY, "data": {"root": str(detection_set)}}), tmp_path)
    assert off.final_metrics(parts.model, parts.state) == {}


# ---- raysweep detect hico-det -------------------------------------------------------------------------------------
def _experiment(tmp_path, detection_set):
    """A DEFR experiment folder as a sweep leaves it (meta, space copy, a Tune trial folder, a Train checkpoint)."""
    exp = tmp_path / "exp"
    (exp / "raysweep_trial_t1_00000").mkdir(parents=True)
    (exp / "raysweep_meta.json").write_text(json.dumps({"name": "exp", "task": "defr", "overrides": []}))
    (exp / "raysweep_space.yaml").write_text(textwrap.dedent(f"""\
        task: defr
        config:
          data: {{root: {detection_set}}}
          model: {{width: 32, heads: 2, depth: 2}}
        search:
          classifier.init: {{distribution: choice, values: [rand, language]}}
        """))
    (exp / "raysweep_trial_t1_00000" / "params.json").write_text(json.dumps({"classifier.init": "rand"}))
    (exp / "raysweep_trial_t1_00000" / "result.json").write_text(json.dumps({"trial_id": "t1_00000"}) + "\n")
    cfg = DefrConfig.model_validate({**TINY, "data": {"root": str(detection_set)}})
    for step in (0, 1):
        folder = exp / "_train" / "t1_00000" / f"checkpoint_00000{step}"
        folder.mkdir(parents=True)
        torch.save({"model": _net(cfg).state_dict(), "epoch": step}, folder / "state.pt")
    return exp


def test_detect_cli_writes_predictions_that_eval_reads(tmp_path, detection_set, capsys):
    exp = _experiment(tmp_path, detection_set)
    out = tmp_path / "preds.json"
    code, stdout, err = run_cli(["detect", "hico-det", "--checkpoint", str(exp / "_train" / "t1_00000"),
                                 "--anno-dir", str(detection_set), "--out", str(out), "--mask-mode", "hard",
                                 "--eval"], capsys)
    assert code == 0, err
    assert "mask hard" in stdout and "Default" in stdout
    code, stdout, err = run_cli(["eval", "hico-det", "--anno-dir", str(detection_set), "--pred", str(out),
                                 "--protocol", "official", "--json"], capsys)
    assert code == 0, err
    assert 0.0 <= json.loads(stdout)["default"]["full"] <= 1.0
    for checkpoint in (exp / "raysweep_trial_t1_00000", exp / "_train/t1_00000/checkpoint_000000/state.pt"):
        code, _, err = run_cli(["detect", "hico-det", "--checkpoint", str(checkpoint), "--anno-dir",
                                str(detection_set), "--out", str(tmp_path / "p2.json")], capsys)
        assert code == 0, err


@pytest.mark.parametrize("change, message", [
    ("checkpoint_missing", "no such file or folder"),
    ("checkpoint_garbage", "cannot be read"),
    ("experiment", "is a whole experiment"),
    ("detections_bad", "not valid JSON"),
    ("anno_missing", "not a directory"),
    ("mask_mode", "--mask-mode"),
    ("out_folder", "does not exist"),
    ("device", "--device"),
])
def test_detect_cli_bad_input_is_one_line_and_exit_2(tmp_path, detection_set, capsys, change, message):
    exp = _experiment(tmp_path, detection_set)
    args = {"--checkpoint": str(exp / "_train" / "t1_00000"), "--anno-dir": str(detection_set),
            "--out": str(tmp_path / "preds.json")}
    extra: list[str] = []
    if change == "checkpoint_missing":
        args["--checkpoint"] = str(tmp_path / "nope")
    elif change == "checkpoint_garbage":
        state = exp / "_train/t1_00000/checkpoint_000001/state.pt"
        state.write_bytes(b"not a checkpoint")
    elif change == "experiment":
        args["--checkpoint"] = str(exp)
    elif change == "detections_bad":
        (tmp_path / "d.json").write_text("{")
        extra = ["--detections", str(tmp_path / "d.json")]
    elif change == "anno_missing":
        args["--anno-dir"] = str(tmp_path / "nothing")
    elif change == "mask_mode":
        extra = ["--mask-mode", "soft"]
    elif change == "device":
        extra = ["--device", "cuda:7" if torch.cuda.is_available() else "cuda"]
    elif change == "out_folder":
        args["--out"] = str(tmp_path / "no" / "preds.json")
    argv = ["detect", "hico-det"] + [x for kv in args.items() for x in kv] + extra
    code, _, err = run_cli(argv, capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "preds.json").exists()


def test_synth_hicodet_detections_flag(tmp_path, capsys):
    code, stdout, err = run_cli(["data", "synth", "hicodet", "--out", str(tmp_path / "d"), "--num-train", "8",
                                 "--num-test", "4", "--image-size", "64", "--detections"], capsys)
    assert code == 0, err
    assert "detections/test2015.json" in stdout
    assert (tmp_path / "d" / "detections" / "test2015.json").is_file()
    with open(tmp_path / "d" / "anno.pkl", "rb") as f:
        assert np.asarray(pickle.load(f)["anno_test"]).shape == (34, 4)


def test_detection_task_code_never_imports_ray_or_optuna():
    import subprocess
    import sys

    code = ("import sys, raysweep.tasks.defr.detection, raysweep.tasks.defr.detection_model, "
            "raysweep.data.synth.detections\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'optuna'))\n"
            "assert not bad, bad\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
