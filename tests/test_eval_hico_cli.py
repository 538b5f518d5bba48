"""Offline HICO evaluation from files: anno.pkl + a score matrix (+ optional Few@k lists)."""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest

from raysweep.errors import DataError
from raysweep.metrics.hico import evaluate_hico
from raysweep.metrics.hico_eval_cli import evaluate_files

# 6 test images x 4 classes (image-major here; anno.pkl stores the transpose)
TEST_LABELS = np.array([
    [1, -2, -1, 0],
    [0, 1, -1, 1],
    [-1, -1, -1, -2],
    [1, -1, -1, -1],
    [1, -1, -2, 1],
    [-2, -2, 1, -1],
])
TRAIN_LABELS = np.array([
    [1, 1, -1, 1],
    [-1, 1, -1, 1],
    [-1, -1, 1, 1],
    [-1, -1, 1, 1],
    [-1, -1, 1, 1],
    [-1, -1, 1, 1],
])  # positives per class: 1, 2, 4, 6
SCORES = np.array([
    [5.0, 3.0, 1.0, 0.2],
    [4.0, 2.0, 2.0, 0.9],
    [3.0, 1.0, 3.0, 0.1],
    [2.0, 0.0, 4.0, 0.4],
    [1.0, -1.0, 5.0, 0.8],
    [0.0, 0.5, 6.0, 0.3],
])


def write_anno(tmp_path, **overrides):
    anno = {
        "hoi_list": "any form; never read",
        "files_test": np.array([f"HICO_test2015_{i:08d}.jpg" for i in range(6)]),
        "anno_test": TEST_LABELS.T.astype(np.float64),
        "anno_train": TRAIN_LABELS.T.astype(np.float64),
    }
    anno.update(overrides)
    anno = {k: v for k, v in anno.items() if v is not None}
    path = tmp_path / "anno.pkl"
    path.write_bytes(pickle.dumps(anno))
    return path


def write_scores(tmp_path, scores=SCORES, name="scores.npy"):
    path = tmp_path / name
    if name.endswith(".npz"):
        np.savez(path, logits=scores)
    else:
        np.save(path, scores)
    return path


def test_json_output_equals_evaluate_hico(tmp_path):
    out = json.loads(evaluate_files(write_anno(tmp_path), write_scores(tmp_path), as_json=True))
    expected = evaluate_hico(SCORES, TEST_LABELS, TRAIN_LABELS)
    for key in ("full", "few@1", "few@5", "few@10", "known_object"):
        assert out[key] == pytest.approx(expected[key], abs=1e-15)
    assert out["per_class_ap"] == pytest.approx(expected["per_class_ap"], abs=1e-15)
    assert out["few_shot_sizes"] == {"few@1": 1, "few@5": 3, "few@10": 4}
    assert expected["per_class_ap"][0] == pytest.approx((4 + 7 * 0.75) / 11)  # worked edge case in class 0


def test_table_output_in_percent(tmp_path):
    text = evaluate_files(write_anno(tmp_path), write_scores(tmp_path))
    expected = evaluate_hico(SCORES, TEST_LABELS, TRAIN_LABELS)
    full_line = next(line for line in text.splitlines() if line.startswith("Full"))
    assert full_line.split()[1:] == [f"{100 * expected['full']:.2f}", "4"]
    assert any(line.split()[0] == "Known-Object" for line in text.splitlines())
    assert "6 test images, 4 classes" in text
    assert "anno_train" in text


def test_npz_and_few_shot_lists_file_without_anno_train(tmp_path):
    lists = tmp_path / "few.json"
    lists.write_text(json.dumps({"few_1": [1], "few_5": [1, 2]}))
    anno = write_anno(tmp_path, anno_train=None)
    out = json.loads(evaluate_files(anno, write_scores(tmp_path, name="s.npz"), lists, as_json=True))
    ap = evaluate_hico(SCORES, TEST_LABELS)["per_class_ap"]
    assert out["few@1"] == pytest.approx(ap[1])
    assert out["few@5"] == pytest.approx((ap[1] + ap[2]) / 2)
    assert out["few@10"] is None  # NaN -> null: no list given
    text = evaluate_files(anno, write_scores(tmp_path, name="s.npz"), lists)
    assert "n/a" in text and str(lists) in text


def test_nan_label_is_read_as_unknown(tmp_path):
    labels = TEST_LABELS.T.astype(np.float64)
    labels[labels == -2] = np.nan
    out = json.loads(evaluate_files(write_anno(tmp_path, anno_test=labels), write_scores(tmp_path), as_json=True))
    assert out["known_object"] == pytest.approx(evaluate_hico(SCORES, TEST_LABELS)["known_object"])


def test_wrong_shape_is_named(tmp_path):
    path = write_scores(tmp_path, SCORES.T)
    with pytest.raises(DataError, match="transposed") as info:
        evaluate_files(write_anno(tmp_path), path)
    assert "scores.npy" in str(info.value) and "(6, 4)" in str(info.value)


def test_nan_scores_are_named(tmp_path):
    scores = SCORES.copy()
    scores[2, 1] = np.nan
    with pytest.raises(DataError, match="image 2, class 1") as info:
        evaluate_files(write_anno(tmp_path), write_scores(tmp_path, scores))
    assert "scores.npy" in str(info.value)


def test_missing_key_is_named(tmp_path):
    with pytest.raises(DataError, match=r"lacks key\(s\) \['anno_test'\]") as info:
        evaluate_files(write_anno(tmp_path, anno_test=None), write_scores(tmp_path))
    assert "anno.pkl" in str(info.value)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(DataError, match="absent.pkl.*not found"):
        evaluate_files(tmp_path / "absent.pkl", write_scores(tmp_path))
    with pytest.raises(DataError, match="absent.npy.*not found"):
        evaluate_files(write_anno(tmp_path), tmp_path / "absent.npy")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(b"definitely not a pickle"), "is not a readable pickle"),
        (lambda p: p.write_bytes(pickle.dumps([1, 2])), "must hold a dict"),
    ],
)
def test_unreadable_anno_is_named(tmp_path, make, message):
    path = tmp_path / "anno.pkl"
    make(path)
    with pytest.raises(DataError, match=message) as info:
        evaluate_files(path, write_scores(tmp_path))
    assert str(path) in str(info.value)


def test_bad_label_values_and_mismatched_files_test(tmp_path):
    bad = TEST_LABELS.T.copy()
    bad[0, 0] = 7
    with pytest.raises(DataError, match=r"anno_test.*\[7\.0\]"):
        evaluate_files(write_anno(tmp_path, anno_test=bad), write_scores(tmp_path))
    with pytest.raises(DataError, match=r"anno_test.*\(4, 6\).*there are 5 file names"):
        evaluate_files(write_anno(tmp_path, files_test=np.array(["a"] * 5)), write_scores(tmp_path))


def test_unsupported_or_corrupt_scores_file(tmp_path):
    with pytest.raises(DataError, match="'.pt'"):
        evaluate_files(write_anno(tmp_path), tmp_path / "scores.pt")
    corrupt = tmp_path / "broken.npy"
    corrupt.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataError, match="broken.npy.*cannot read"):
        evaluate_files(write_anno(tmp_path), corrupt)
    two = tmp_path / "two.npz"
    np.savez(two, a=SCORES, b=SCORES)
    with pytest.raises(DataError, match="exactly one array"):
        evaluate_files(write_anno(tmp_path), two)


def test_few_shot_index_beyond_classes_is_named(tmp_path):
    lists = tmp_path / "few.json"
    lists.write_text(json.dumps({"few@1": [4]}))
    with pytest.raises(DataError, match=r"few.json: few@1 has class indices outside \[0, 4\)"):
        evaluate_files(write_anno(tmp_path), write_scores(tmp_path), lists)


def test_table_shows_nan_few_shot_as_na(tmp_path):
    # a training set without positives gives empty Few@k lists, shown as n/a.
    anno = write_anno(tmp_path, anno_train=-np.ones((4, 3)))
    text = evaluate_files(anno, write_scores(tmp_path))
    few_lines = [line for line in text.splitlines() if line.startswith("Few@")]
    assert len(few_lines) == 3 and all(line.split()[1:] == ["n/a", "0"] for line in few_lines)
    assert not math.isnan(json.loads(evaluate_files(anno, write_scores(tmp_path), as_json=True))["full"])
