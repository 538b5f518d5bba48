"""`raysweep data synth vcoco`, the V-COCO loaders (QPIC layout and official files) and `raysweep eval vcoco`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from support import run_cli

from raysweep.data.synth.vcoco import (
    EMBEDDED,
    correct_matrix,
    generate_vcoco,
    official_paths,
)
from raysweep.data.vcoco import (
    ACTIONS,
    CORRECT_MAT_FILE,
    TEST_FILE,
    VERB_ACTION,
    VERBS,
    ground_truth_from_records,
    load_vcoco,
)
from raysweep.data.vcoco_official import load_official_ground_truth
from raysweep.errors import DataError
from raysweep.metrics.vcoco_predictions import AGENT_KEYS, ROLE_KEYS


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return generate_vcoco(tmp_path_factory.mktemp("vcoco") / "synth", seed=3, num_train=12, num_test=40,
                          image_size=64)


def oracle(records: list[dict], drop_missing: bool = True) -> list[dict]:
    """Perfect detections from QPIC records: one per person with hoi entries, role boxes = the GT objects, NaN
    boxes for missing objects (or, with drop_missing=False, the person's own box instead of NaN)."""
    from raysweep.data.vcoco import image_id_from_file_name

    dets = []
    for rec in records:
        by_person: dict[int, list[dict]] = {}
        for h in rec["hoi_annotation"]:
            by_person.setdefault(h["subject_id"], []).append(h)
        for s, hois in by_person.items():
            box = rec["annotations"][s]["bbox"]
            d = {"image_id": image_id_from_file_name(rec["file_name"]), "person_box": box}
            d.update({k: 0.01 for k in AGENT_KEYS})
            d.update({k: [math.nan] * 4 + [0.01] for k, _, _ in ROLE_KEYS})
            for h in hois:
                action, slot = VERB_ACTION[h["category_id"]]
                d[f"{ACTIONS[action][0]}_agent"] = 0.9
                if slot >= 0:
                    obj = rec["annotations"][h["object_id"]]["bbox"] if h["object_id"] >= 0 else (
                        [math.nan] * 4 if drop_missing else box)
                    d[VERBS[h["category_id"]]] = [*obj, 0.9]
            dets.append(d)
    return dets


def test_synthetic_layout_loads_and_holds_both_kinds_of_object_less_verbs(synth):
    ann = load_vcoco(synth, check_images=True)
    assert len(ann.train) == 12 and len(ann.test) == 40
    assert ann.correct_mat.shape == (29, 80) and ann.correct_mat.sum() == correct_matrix().sum()
    hois = [h for rec in ann.train + ann.test for h in rec["hoi_annotation"]]
    agent_only = [h for h in hois if VERB_ACTION[h["category_id"]][1] < 0]
    missing = [h for h in hois if VERB_ACTION[h["category_id"]][1] >= 0 and h["object_id"] == -1]
    assert agent_only and all(h["object_id"] == -1 for h in agent_only)
    assert missing  # role verbs whose object is missing


def test_official_files_and_qpic_layout_give_the_same_positives(synth):
    qpic = ground_truth_from_records(load_vcoco(synth).test)
    official = load_official_ground_truth(*official_paths(synth))
    assert qpic.image_ids.tolist() == official.image_ids.tolist()
    np.testing.assert_array_equal(qpic.npos, official.npos)
    np.testing.assert_allclose(qpic.person_boxes, official.person_boxes, atol=1e-9)
    # the official file knows annotated persons without action; QPIC's layout shows them as ignored
    assert ((official.actions == 0).all(axis=1)).sum() > 0
    assert ((qpic.actions == -1).all(axis=1)).sum() > ((official.actions == -1).all(axis=1)).sum()


def test_generation_is_deterministic_and_reused(synth, tmp_path):
    again = generate_vcoco(tmp_path / "again", seed=3, num_train=12, num_test=40, image_size=64)
    assert (again / TEST_FILE).read_bytes() == (synth / TEST_FILE).read_bytes()
    assert generate_vcoco(again, seed=3, num_train=12, num_test=40, image_size=64) == again
    with pytest.raises(DataError, match="other parameters"):
        generate_vcoco(again, seed=4, num_train=12, num_test=40, image_size=64)


def test_embedded_scene_draws_one_pair_per_image():
    assert EMBEDDED.pairs_per_image == (1.0, 0.0, 0.0) and EMBEDDED.missing_object > 0


@pytest.mark.parametrize("gt", ["qpic", "official"])
def test_eval_cli_gives_full_marks_to_the_ground_truth(synth, tmp_path, capsys, gt):
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(oracle(load_vcoco(synth).test)))
    anno = synth / "official" if gt == "official" else synth
    code, out, err = run_cli(["eval", "vcoco", "--anno-dir", str(anno), "--pred", str(pred), "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["ground_truth"].startswith("official" if gt == "official" else "qpic-layout")
    assert result["role_ap_s1"] == pytest.approx(1.0) and result["role_ap_s2"] == pytest.approx(1.0)
    assert result["agent_ap_nanmean"] == pytest.approx(1.0)


def test_scenario_1_punishes_a_box_where_the_object_is_missing_and_scenario_2_does_not(synth, tmp_path, capsys):
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(oracle(load_vcoco(synth).test, drop_missing=False)))
    code, out, err = run_cli(["eval", "vcoco", "--anno-dir", str(synth), "--pred", str(pred), "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["role_ap_s2"] == pytest.approx(1.0)
    assert result["role_ap_s1"] < 0.99


def test_eval_cli_table_names_the_ground_truth_and_both_scenarios(synth, tmp_path, capsys):
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(oracle(load_vcoco(synth).test)))
    code, out, _ = run_cli(["eval", "vcoco", "--anno-dir", str(synth), "--pred", str(pred), "--scenario", "1"],
                           capsys)
    assert code == 0
    assert "ground truth: qpic-layout" in out and "Scenario 1" in out and "Scenario 2" not in out


@pytest.mark.parametrize("args, message", [
    (["--scenario", "3"], "--scenario: '3' is not one of 1, 2, both"),
    (["--gt", "coco"], "--gt: 'coco' is not one of auto, qpic, official"),
    (["--numerics", "half"], "--numerics: 'half' is not one of float32, float64"),
])
def test_bad_options_are_one_line_exit_2(synth, tmp_path, capsys, args, message):
    pred = tmp_path / "pred.json"
    pred.write_text("[]")
    code, _, err = run_cli(["eval", "vcoco", "--anno-dir", str(synth), "--pred", str(pred), *args], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_bad_files_are_one_line_exit_2(synth, tmp_path, capsys):
    bad = tmp_path / "root"
    (bad / "annotations").mkdir(parents=True)
    records = json.loads((synth / TEST_FILE).read_text())
    records[2]["hoi_annotation"][0]["category_id"] = 29
    (bad / TEST_FILE).write_text(json.dumps(records))
    pred = tmp_path / "pred.json"
    pred.write_text("[]")
    code, _, err = run_cli(["eval", "vcoco", "--anno-dir", str(bad), "--pred", str(pred)], capsys)
    assert code == 2 and "record 2" in err and "hoi_annotation[0].category_id (verb) = 29" in err
    assert len(err.strip().splitlines()) == 1

    pred.write_text(json.dumps([{"image_id": 1}]))
    code, _, err = run_cli(["eval", "vcoco", "--anno-dir", str(synth), "--pred", str(pred)], capsys)
    assert code == 2 and "detection 0: missing key 'person_box'" in err

    code, _, err = run_cli(["eval", "vcoco", "--anno-dir", str(synth), "--pred", str(tmp_path / "p.pkl")], capsys)
    assert code == 2 and "does not exist" in err

    code, _, err = run_cli(["eval", "vcoco", "--anno-dir", str(synth / "official"), "--gt", "qpic", "--pred",
                            str(pred)], capsys)
    assert code == 2 and "neither QPIC's annotations/test_vcoco.json nor the official" in err


def test_correct_mat_must_not_be_a_pickle(tmp_path, synth):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(synth, root)
    np.save(root / CORRECT_MAT_FILE, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="corre_vcoco.npy"):
        load_vcoco(root)


def test_official_file_with_wrong_action_order_is_named(tmp_path, synth):
    import shutil

    folder = tmp_path / "official"
    shutil.copytree(synth / "official", folder)
    data = json.loads((folder / "vcoco_test.json").read_text())
    data[0], data[1] = data[1], data[0]
    (folder / "vcoco_test.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"record 0: action_name 'stand'; the official order has 'hold' here"):
        load_official_ground_truth(*[folder / p.name for p in official_paths(synth)])


def test_qpic_protocol_reads_post_processor_outputs(synth, tmp_path, capsys):
    from raysweep.data.hicodet import coco_id_to_index

    records = load_vcoco(synth).test
    preds = []
    for rec in records:  # one query per GT (subject, object) pair with its verbs
        pairs: dict = {}
        for h in rec["hoi_annotation"]:
            pairs.setdefault((h["subject_id"], h["object_id"]), []).append(h["category_id"])
        boxes, labels, scores = [], [], []
        for (s, o), verbs in pairs.items():
            boxes += [rec["annotations"][s]["bbox"], rec["annotations"][o]["bbox"] if o >= 0 else [0, 0, 1, 1]]
            labels += [0, coco_id_to_index(rec["annotations"][o]["category_id"]) if o >= 0 else 80]
            scores.append([0.9 if v in verbs else 0.0 for v in range(29)])
        preds.append({"boxes": boxes, "labels": labels, "verb_scores": scores,
                      "sub_ids": list(range(0, 2 * len(pairs), 2)), "obj_ids": list(range(1, 2 * len(pairs), 2))})
    pred = tmp_path / "qpic.json"
    pred.write_text(json.dumps(preds))
    code, out, err = run_cli(["eval", "vcoco", "--anno-dir", str(synth), "--pred", str(pred), "--protocol", "qpic",
                              "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["protocol"] == "qpic" and result["map_all"] == pytest.approx(1.0)
    pred.write_text(json.dumps(preds[:3]))
    code, _, err = run_cli(["eval", "vcoco", "--anno-dir", str(synth), "--pred", str(pred), "--protocol", "qpic"],
                           capsys)
    assert code == 2 and "expected a list of 40 per-image prediction dicts" in err


def test_data_synth_vcoco_command_writes_both_ground_truths(tmp_path, capsys):
    out = tmp_path / "v"
    code, stdout, err = run_cli(["data", "synth", "vcoco", "--out", str(out), "--num-train", "3", "--num-test", "4",
                                 "--image-size", "48"], capsys)
    assert code == 0, err
    assert "synthetic V-COCO written to" in stdout
    assert (out / TEST_FILE).is_file() and all(p.is_file() for p in official_paths(out))
    code, _, err = run_cli(["data", "synth", "vcoco", "--out", str(out), "--seed", "1"], capsys)
    assert code == 2 and "other parameters" in err and len(err.strip().splitlines()) == 1


def test_official_pickle_with_numpy_values_reads_safely_and_code_is_refused(synth, tmp_path, capsys):
    import os
    import pickle

    dets = [{k: (np.asarray(v, dtype=np.float32) if isinstance(v, list) else v) for k, v in d.items()}
            for d in oracle(load_vcoco(synth).test)]
    pred = tmp_path / "detections.pkl"
    with open(pred, "wb") as f:
        pickle.dump(dets, f, protocol=2)  # as QPIC's generate_vcoco_official.py writes it
    # numpy arrays and built-in types pass the restricted unpickler: no flag needed
    code, out, err = run_cli(["eval", "vcoco", "--anno-dir", str(synth), "--pred", str(pred), "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["role_ap_s1"] == pytest.approx(1.0)
    code, out, err = run_cli(["eval", "vcoco", "--anno-dir", str(synth), "--pred", str(pred), "--allow-pickle",
                              "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["role_ap_s1"] == pytest.approx(1.0)

    class Crafted:  # unpickling it would call os.system
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'ran'}",)

    crafted = tmp_path / "crafted.pkl"
    crafted.write_bytes(pickle.dumps([Crafted()]))
    code, _, err = run_cli(["eval", "vcoco", "--anno-dir", str(synth), "--pred", str(crafted)], capsys)
    assert code == 2 and "--allow-pickle" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "ran").exists()
