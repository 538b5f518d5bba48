"""HICO classification metrics (DEFR protocol) on hand-computed cases."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from raysweep.errors import DataError
from raysweep.metrics.hico import (
    ELEVEN_POINT_THRESHOLDS,
    average_precision,
    evaluate_hico,
    few_shot_classes,
    hico_labels,
    load_few_shot_lists,
)

EPS = float(np.finfo(np.float64).eps)
REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


def ap_of(scores, labels, setting="default", interpolation="11point") -> float:
    """AP of one class given its score and HICO label columns."""
    labels = np.asarray(labels)[:, None]
    masks = hico_labels(labels)
    ignore = {
        "default": ~masks.certain,
        "known_object": ~(masks.known_obj & masks.certain),
        "none": np.zeros_like(masks.certain),
    }[setting]
    return float(average_precision(np.asarray(scores, float)[:, None], masks.positives, ignore, interpolation)[0])


def slow_reference_ap(scores, positives, ignore) -> np.ndarray:
    """Element-by-element transcription of the 11-point AP with the ignore mask, stable descending order."""
    n, c = scores.shape
    out = np.zeros(c)
    for j in range(c):
        ranked = sorted(range(n), key=lambda i: -scores[i, j])  # Python's sort is stable
        num_gt = int(positives[:, j].sum())
        tp = fp = 0.0
        points = []
        for k, i in enumerate(ranked):
            if not ignore[i, j]:
                tp += positives[i, j]
                fp += not positives[i, j]
            elif k == 0:
                fp = EPS
            points.append((tp / (num_gt if num_gt else 1e-8), tp / (tp + fp)))
        out[j] = sum(max([p for r, p in points if r >= t], default=0.0) for t in ELEVEN_POINT_THRESHOLDS) / 11
    return out


# ---- thresholds ---------------------------------------------------------------------------------------------


def test_thresholds_are_torch_float64_linspace():
    torch = pytest.importorskip("torch")
    assert ELEVEN_POINT_THRESHOLDS.tolist() == torch.linspace(0, 1, 11, dtype=torch.float64).tolist()
    assert ELEVEN_POINT_THRESHOLDS[3] == 0.30000000000000004
    assert ELEVEN_POINT_THRESHOLDS[6] == 0.6 and ELEVEN_POINT_THRESHOLDS[7] == 0.7


# ---- worked edge cases and others ----------------------------------------------------------------------------


def test_spec_case_ambiguous_entry_is_skipped():
    # ranks: pos, amb, neg, pos, pos -> prec 1, 1, .5, .667, .75 ; rec .333, .333, .333, .667, 1
    scores, labels = [5, 4, 3, 2, 1], [1, 0, -1, 1, 1]
    assert ap_of(scores, labels) == pytest.approx((4 + 7 * 0.75) / 11, abs=1e-15)


def test_spec_case_without_ignore_counts_ambiguous_as_false_positive():
    scores, labels = [5, 4, 3, 2, 1], [1, 0, -1, 1, 1]
    assert ap_of(scores, labels, "none") == pytest.approx((4 + 7 * 0.6) / 11, abs=1e-15)
    assert ap_of(scores, labels, "none") == pytest.approx(0.7454545454545454, abs=1e-15)


def test_ignored_first_entry_gets_eps_false_positive():
    # rank 1 ambiguous: fp = eps there, which stays in FP; prec at the TP is 1/(1+eps) < 1, not 1 and not NaN.
    ap = ap_of([3, 2, 1], [0, 1, -1])
    assert ap == pytest.approx(1.0, abs=1e-15)
    assert ap < 1.0


def test_eps_only_applies_at_rank_one():
    assert ap_of([3, 2, 1], [1, 0, 1]) == 1.0


def test_ties_rank_lower_index_first():
    # scores tie at the top: the lower image index ranks first (stable descending order).
    neg_first = ap_of([1.0, 1.0, 0.5], [-1, 1, 1])  # prec 0, .5, .667 ; rec 0, .5, 1
    pos_first = ap_of([1.0, 1.0, 0.5], [1, -1, 1])  # prec 1, .5, .667 ; rec .5, .5, 1
    assert neg_first == pytest.approx(2 / 3, abs=1e-15)
    assert pos_first == pytest.approx((6 * 1 + 5 * 2 / 3) / 11, abs=1e-15)


def test_untied_scores_are_order_invariant():
    rng = np.random.default_rng(3)
    scores = rng.standard_normal((40, 5))
    labels = rng.choice([1, 0, -1, -2], size=(40, 5))
    perm = rng.permutation(40)
    a = evaluate_hico(scores, labels)
    b = evaluate_hico(scores[perm], labels[perm])
    np.testing.assert_array_equal(a["per_class_ap"], b["per_class_ap"])
    assert a["known_object"] == b["known_object"]


def test_class_without_positives_has_ap_zero():
    assert ap_of([3, 2, 1], [-1, -2, -1]) == 0.0


def test_all_ambiguous_column_has_ap_zero():
    assert ap_of([3, 2, 1], [0, 0, 0]) == 0.0


def test_positive_among_ambiguous_only():
    assert ap_of([3, 2, 1], [0, 0, 1]) == pytest.approx(1.0, abs=1e-15)


def test_ignored_positive_still_counts_in_num_gt():
    # positives at ranks 1 and 2, the second ignored by the caller: recall tops out at 0.5.
    ap = float(average_precision(np.array([[2.0], [1.0]]), np.array([[True], [True]]), np.array([[False], [True]]))[0])
    assert ap == pytest.approx(6 / 11, abs=1e-15)


def test_known_object_skips_images_without_the_object():
    # a high-scoring image without the object (-2) is a FP in Default and skipped in Known-Object.
    scores, labels = [3, 2, 1], [-2, 1, -1]
    assert ap_of(scores, labels, "default") == 0.5  # prec 0, .5, .333 ; rec 0, 1, 1
    assert ap_of(scores, labels, "known_object") == pytest.approx(1.0, abs=1e-15)


def test_recall_exactly_point_three_fails_its_threshold():
    # 10 positives: 3 at the top, then 7 negatives, then 7 positives. t = 0.30000000000000004 > 0.3.
    labels = [1] * 3 + [-1] * 7 + [1] * 7
    scores = list(range(len(labels), 0, -1))
    assert ap_of(scores, labels) == pytest.approx((3 * 1 + 8 * 10 / 17) / 11, abs=1e-15)


def test_recall_exactly_point_six_and_seven_pass():
    six = [1] * 6 + [-1] * 4 + [1] * 4
    seven = [1] * 7 + [-1] * 3 + [1] * 3
    assert ap_of(range(len(six), 0, -1), six) == pytest.approx((7 + 4 * 10 / 14) / 11, abs=1e-15)
    assert ap_of(range(len(seven), 0, -1), seven) == pytest.approx((8 + 3 * 10 / 13) / 11, abs=1e-15)


def test_all_point_interpolation():
    # TPs at ranks 1, 3, 5 with prec 1, 2/3, 3/5: envelope 1, 2/3, 3/5.
    assert ap_of([5, 4, 3, 2, 1], [1, -1, 1, -1, 1], "none", "all_point") == pytest.approx((1 + 2 / 3 + 0.6) / 3)
    # spec case: TPs at ranks 1, 4, 5 with prec 1, 2/3, 3/4 -> envelope 1, 3/4, 3/4.
    assert ap_of([5, 4, 3, 2, 1], [1, 0, -1, 1, 1], "default", "all_point") == pytest.approx(2.5 / 3)


def test_all_point_unrecalled_positive_adds_no_area():
    ap = average_precision(np.array([[2.0], [1.0]]), np.array([[True], [True]]), np.array([[False], [True]]),
                           "all_point")
    assert float(ap[0]) == pytest.approx(0.5)


def test_unknown_interpolation_is_rejected():
    with pytest.raises(ValueError, match="interpolation"):
        average_precision(np.zeros((2, 1)), np.zeros((2, 1), bool), interpolation="voc")


def test_nan_scores_are_rejected():
    with pytest.raises(ValueError, match="NaN"):
        average_precision(np.array([[np.nan], [1.0]]), np.array([[True], [False]]))


def test_matches_slow_reference_on_random_data():
    rng = np.random.default_rng(0)
    for trial in range(4):
        n, c = 50, 7
        labels = rng.choice([1, 0, -1, -2], size=(n, c), p=[0.2, 0.15, 0.3, 0.35])
        scores = rng.integers(0, 6, size=(n, c)).astype(float) if trial % 2 else rng.standard_normal((n, c))
        masks = hico_labels(labels)
        for ignore in (~masks.certain, ~(masks.known_obj & masks.certain)):
            fast = average_precision(scores, masks.positives, ignore)
            np.testing.assert_allclose(fast, slow_reference_ap(scores, masks.positives, ignore), rtol=0, atol=1e-12)


# ---- labels and few-shot lists ----------------------------------------------------------------------------


def test_hico_labels_masks_and_nan():
    masks = hico_labels(np.array([[1, 0, -1, -2, np.nan]]))
    assert masks.positives.tolist() == [[True, False, False, False, False]]
    assert masks.known_obj.tolist() == [[True, False, True, False, False]]
    assert masks.certain.tolist() == [[True, False, True, True, True]]


def test_hico_labels_rejects_other_values():
    with pytest.raises(ValueError, match=r"\[2, 3\]"):
        hico_labels(np.array([[1, 2, 3]]))
    with pytest.raises(ValueError, match="0.5"):
        hico_labels(np.array([[0.5]]))


def test_few_shot_classes_counts_positive_training_images():
    train = np.array([
        # class: 0 (no positive), 1 (1 pos), 2 (3 pos; ambiguous does not count), 3 (6 pos)
        [-1, 1, 1, 1],
        [0, -2, 1, 1],
        [-2, 0, 1, 1],
        [-1, -1, 0, 1],
        [-1, -1, 0, 1],
        [-1, -1, -1, 1],
    ])
    assert few_shot_classes(train, 1).tolist() == [1]
    assert few_shot_classes(train, 2).tolist() == [1]
    assert few_shot_classes(train, 3).tolist() == [1, 2]
    assert few_shot_classes(train, 10).tolist() == [1, 2, 3]


def test_evaluate_hico_settings_and_few_shot():
    # class 0: D.4 case; class 1: KO case; class 2: no positives.
    scores = np.array([[5, 3, 1], [4, 2, 2], [3, 1, 3], [2, 0, 4], [1, -1, 5]], dtype=float)
    labels = np.array([[1, -2, -1], [0, 1, -1], [-1, -1, -1], [1, -1, -1], [1, -1, -2]])
    train = np.array([[1, 1, -1], [-1, 1, -1], [-1, -1, -1]])  # class 0 has 1 positive, class 1 has 2
    result = evaluate_hico(scores, labels, train)
    default = [(4 + 7 * 0.75) / 11, 0.5, 0.0]
    np.testing.assert_allclose(result["per_class_ap"], default, rtol=0, atol=1e-15)
    assert result["full"] == pytest.approx(sum(default) / 3)
    assert result["few@1"] == pytest.approx(default[0])
    assert result["few@5"] == pytest.approx((default[0] + default[1]) / 2)
    assert result["few_shot_sizes"] == {"few@1": 1, "few@5": 2, "few@10": 2}
    # Known-Object: class 0 loses no negatives of note, class 1 drops its -2 top entry.
    assert result["known_object"] == pytest.approx((default[0] + 1.0 + 0.0) / 3)

    explicit = evaluate_hico(scores, labels, train, few_shot_lists={"few@1": [1], "few@5": [], "few@10": [0, 1, 2]})
    assert explicit["few@1"] == pytest.approx(0.5)
    assert math.isnan(explicit["few@5"])
    assert explicit["few@10"] == pytest.approx(result["full"])
    assert explicit["few_shot_sizes"] == {"few@1": 1, "few@5": 0, "few@10": 3}

    bare = evaluate_hico(scores, labels)
    assert all(math.isnan(bare[key]) for key in ("few@1", "few@5", "few@10"))


def test_evaluate_hico_rejects_bad_few_shot_index():
    with pytest.raises(ValueError, match="few@1"):
        evaluate_hico(np.zeros((2, 2)), np.ones((2, 2), int), few_shot_lists={"few@1": [2]})


def test_load_few_shot_lists_key_spellings(tmp_path):
    path = tmp_path / "few.json"
    path.write_text(json.dumps({"few1": [3], "few_5": [3, 4], "10": [3, 4, 5]}))
    assert load_few_shot_lists(path) == {"few@1": [3], "few@5": [3, 4], "few@10": [3, 4, 5]}


@pytest.mark.parametrize(
    "content, message",
    [
        ("not json", "JSON"),
        ("[1, 2]", "JSON object"),
        ('{"few@2": [1]}', "unknown key 'few@2'"),
        ('{"few@1": [1, -1]}', r"few@1 has class indices below 0: \[-1\]"),
        ('{"few@1": [1.5]}', "'few@1' must hold integer class indices, found 1.5"),
        ('{"few@1": "1, 2"}', "'few@1' must be a list of integer class indices, got str"),
        ('{"few@1": [true]}', "must hold integer class indices, found True"),
        ('{"few@5": [3, 4, 3]}', r"few@5 lists class indices more than once: \[3\]"),
        ('{"few@1": [1], "few1": [2]}', "twice"),
    ],
)
def test_load_few_shot_lists_rejects_bad_content(tmp_path, content, message):
    path = tmp_path / "few.json"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as info:
        load_few_shot_lists(path)
    assert str(path) in str(info.value)


def test_load_few_shot_lists_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_few_shot_lists(tmp_path / "absent.json")


def test_reads_defr_hard_coded_lists():
    path = REFERENCE / "defr_few_idx.json"
    if not path.is_file():
        pytest.skip("shared reference defr_few_idx.json not available")
    lists = load_few_shot_lists(path)
    assert {k: len(v) for k, v in lists.items()} == {"few@1": 49, "few@5": 125, "few@10": 162}
    assert set(lists["few@1"]) <= set(lists["few@5"]) <= set(lists["few@10"])
    assert lists["few@1"][:3] == [22, 63, 66]
