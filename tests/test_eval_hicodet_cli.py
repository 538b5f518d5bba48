"""`evaluate_files` (the core of `raysweep eval hico-det`) on good and bad files."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from raysweep.data.hicodet import CORRECT_MAT_FILE, TEST_FILE, TRAIN_FILE, coco_id_to_index
from raysweep.errors import DataError
from raysweep.metrics.hicodet_eval_cli import evaluate_files

RIDE, MOTORCYCLE = 77, 4
SUB, OBJ = [10, 10, 109, 209], [60, 100, 259, 229]


def _record(name: str, with_hoi: bool = True) -> dict:
    if not with_hoi:
        return {"file_name": name, "annotations": [], "hoi_annotation": []}
    return {"file_name": name,
            "annotations": [{"bbox": SUB, "category_id": 1}, {"bbox": OBJ, "category_id": MOTORCYCLE}],
            "hoi_annotation": [{"subject_id": 0, "object_id": 1, "category_id": RIDE, "hoi_category_id": 155}]}


@pytest.fixture
def anno_dir(tmp_path) -> Path:
    root = tmp_path / "hico_20160224_det"
    (root / "annotations").mkdir(parents=True)
    (root / TRAIN_FILE).write_text(json.dumps([_record("train.jpg")]))  # one instance: the class is rare
    (root / TEST_FILE).write_text(json.dumps([_record("a.jpg"), _record("b.jpg", with_hoi=False)]))
    corre = np.zeros((117, 80))
    corre[RIDE - 1, coco_id_to_index(MOTORCYCLE)] = 1
    np.save(root / CORRECT_MAT_FILE, corre)
    return root


def _pred(sub: list, score: float) -> dict:
    scores = [[0.0] * 117]
    scores[0][RIDE - 1] = score
    return {"boxes": [sub, OBJ], "labels": [0, coco_id_to_index(MOTORCYCLE)], "verb_scores": scores,
            "sub_ids": [0], "obj_ids": [1]}


def _preds() -> list[dict]:
    # a.jpg: the TP at 0.5; b.jpg (no annotation): a confident FP at 0.9.
    return [_pred(SUB, 0.5), _pred(SUB, 0.9)]


def _write_json(path: Path, value) -> Path:
    path.write_text(json.dumps(value))
    return path


def test_json_output_has_both_settings_as_fractions(anno_dir, tmp_path):
    pred = _write_json(tmp_path / "preds.json", _preds())
    qpic = json.loads(evaluate_files(anno_dir, pred, "qpic", as_json=True))
    official = json.loads(evaluate_files(anno_dir / "annotations", pred, "official", as_json=True))
    assert set(qpic) == {"default", "known_object"} and set(qpic["default"]) == {"full", "rare", "non_rare"}
    ap_one = sum([1 / 11.0] * 11)  # 11 x (1/11), added in order: 1.0000000000000002
    half = 0.0
    for _ in range(11):
        half = half + 0.5 / 11.0
    # QPIC never counts the FP on the GT-less image; the official protocol does (KO drops it again).
    assert qpic == {"default": {"full": ap_one, "rare": ap_one, "non_rare": None},
                    "known_object": {"full": ap_one, "rare": ap_one, "non_rare": None}}
    assert official["default"] == {"full": half, "rare": half, "non_rare": None}
    assert official["known_object"]["full"] == ap_one


def test_table_output_in_percent(anno_dir, tmp_path):
    pred = _write_json(tmp_path / "preds.json", _preds())
    text = evaluate_files(anno_dir, pred, "official")
    lines = text.splitlines()
    assert "protocol official" in lines[0] and "2 test images, 1 classes (1 rare, 0 non-rare)" in lines[0]
    assert lines[2].split() == ["Default", "50.00", "50.00", "n/a", "100.00", "2"]
    assert lines[3].split() == ["Known-Object", "100.00", "100.00", "n/a", "100.00", "1"]
    assert "extension" in evaluate_files(anno_dir, pred, "qpic")


def test_pickle_runs_no_code_without_opt_in(anno_dir, tmp_path):
    """numpy predictions load with the restricted unpickler; anything else needs --allow-pickle."""
    import datetime

    path = tmp_path / "preds.pkl"
    preds = [{k: np.asarray(v) for k, v in p.items()} for p in _preds()]
    path.write_bytes(pickle.dumps(preds))
    assert json.loads(evaluate_files(anno_dir, path, "official", as_json=True))["default"]["full"] == pytest.approx(0.5)
    path.write_bytes(pickle.dumps([{**p, "when": datetime.date(2020, 1, 1)} for p in preds]))
    with pytest.raises(DataError, match="it names datetime.date.*pass --allow-pickle for a file you trust"):
        evaluate_files(anno_dir, path, "qpic")
    assert json.loads(evaluate_files(anno_dir, path, "official", as_json=True, allow_pickle=True))["default"]["full"] \
        == pytest.approx(0.5)


def _bad(case: str) -> list | str:
    preds = _preds()
    if case == "wrong_shape":
        preds[1]["verb_scores"] = [[0.1] * 116]
    elif case == "nan":
        return json.dumps(_preds()).replace("0.9", "NaN")
    elif case == "short":
        preds = preds[:1]
    elif case == "ids":
        preds[0]["obj_ids"] = [5]
    elif case == "ragged":
        preds[0]["boxes"] = [[1, 2, 3, 4], [1, 2]]
    elif case == "not_a_list":
        return json.dumps({"predictions": preds})
    return json.dumps(preds)


@pytest.mark.parametrize("case, message", [
    ("wrong_shape", r"image 1: 'verb_scores' has shape \(1, 116\); expected \[k, 117\]"),
    ("nan", r"image 1: 'verb_scores' holds a non-finite value \(nan at \(0, 76\)\)"),
    ("short", "1 predictions for 2 test images"),
    ("ids", r"image 0: 'obj_ids' holds 5, not an index into the image's 2 boxes"),
    ("ragged", r"image 0: 'boxes' is not a rectangular numeric array"),
    ("not_a_list", "expected a list of per-image prediction dicts, got dict"),
])
def test_bad_prediction_files_raise_one_line_data_errors(anno_dir, tmp_path, case, message):
    path = tmp_path / "preds.json"
    path.write_text(_bad(case))
    with pytest.raises(DataError, match=message) as err:
        evaluate_files(anno_dir, path, "qpic")
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_missing_and_unreadable_files(anno_dir, tmp_path):
    with pytest.raises(DataError, match="prediction file .* does not exist"):
        evaluate_files(anno_dir, tmp_path / "nope.json", "qpic")
    (tmp_path / "bad.json").write_text("[{")
    with pytest.raises(DataError, match="is not valid JSON"):
        evaluate_files(anno_dir, tmp_path / "bad.json", "qpic")
    (tmp_path / "preds.npy").write_bytes(b"")
    with pytest.raises(DataError, match="unsupported prediction file type '.npy'"):
        evaluate_files(anno_dir, tmp_path / "preds.npy", "qpic")
    pred = _write_json(tmp_path / "preds.json", _preds())
    with pytest.raises(DataError, match="missing file .*test_hico.json"):
        (anno_dir / TEST_FILE).unlink()
        evaluate_files(anno_dir, pred, "qpic")
    with pytest.raises(DataError, match="protocol 'matlab' is unknown"):
        evaluate_files(anno_dir, pred, "matlab")
