"""The paper's definitions in HICO evaluation: DEFR's shipped Few@k lists (the default on 600-class data) and the
tie rules of the ranking (index order, pessimistic / optimistic bounds), pinned on hand-computed cases."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from raysweep.errors import DataError
from raysweep.metrics.hico import (
    FEW_SHOT_DEFR,
    FEW_SHOT_DERIVED,
    average_precision,
    defr_few_shot_lists,
    evaluate_hico,
    few_shot_source,
    hico_labels,
    load_few_shot_lists,
)
from raysweep.metrics.hico_eval_cli import evaluate_files
from tests.support import run_cli

EPS = float(np.finfo(np.float64).eps)
# sha256 of json.dumps([few@1, few@5, few@10]) of DEFR's Few@k lists: any edit of the shipped data shows here.
DEFR_LISTS_SHA256 = "6492ac69b2248373371340135e0291e522ebe8761d5a982c13a5b29b965c85a8"


# ---- Few@k lists --------------------------------------------------------------------------------------------------

def test_defr_lists_ship_with_the_package_with_their_lengths_and_checksum() -> None:
    lists = defr_few_shot_lists()
    assert {k: len(v) for k, v in lists.items()} == {"few@1": 49, "few@5": 125, "few@10": 162}
    ordered = [lists["few@1"], lists["few@5"], lists["few@10"]]
    assert hashlib.sha256(json.dumps(ordered).encode()).hexdigest() == DEFR_LISTS_SHA256
    assert set(lists["few@1"]) <= set(lists["few@5"]) <= set(lists["few@10"])  # nested, as DEFR's
    assert all(v == sorted(set(v)) and 0 <= v[0] and v[-1] < 600 for v in ordered)
    assert lists["few@1"][:3] == [22, 63, 66] and lists["few@10"][-1] == 599
    lists["few@1"].append(0)  # callers get copies
    assert len(defr_few_shot_lists()["few@1"]) == 49


def test_shipped_file_reads_as_a_user_lists_file_too() -> None:
    from importlib import resources

    path = resources.files("raysweep.data").joinpath("defr_few_shot_classes.json")
    assert load_few_shot_lists(str(path), num_classes=600) == defr_few_shot_lists()


def _random_case(num_classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.choice([1, 0, -1, -2], size=(40, num_classes), p=[0.2, 0.05, 0.5, 0.25])
    train = rng.choice([1, -1], size=(30, num_classes), p=[0.1, 0.9])
    return rng.normal(size=(40, num_classes)), labels, train


def test_600_class_data_defaults_to_defr_lists_and_other_data_to_derived_lists() -> None:
    scores, labels, train = _random_case(600)
    result = evaluate_hico(scores, labels, train)
    ap = np.asarray(result["per_class_ap"])
    lists = defr_few_shot_lists()
    for key in ("few@1", "few@5", "few@10"):
        assert result[key] == pytest.approx(ap[lists[key]].mean(), abs=1e-15)
    assert result["few_shot_sizes"] == {"few@1": 49, "few@5": 125, "few@10": 162}
    assert result["few_shot_source"] == FEW_SHOT_DEFR == "defr-lists"
    # The derived rule is still there when asked for: classes with 1..k positive training images.
    derived = evaluate_hico(scores, labels, train, few_shot_lists="derived")
    counts = hico_labels(train).positives.sum(axis=0)
    few1 = np.flatnonzero(counts == 1)
    assert derived["few@1"] == pytest.approx(ap[few1].mean(), abs=1e-15)
    assert derived["few_shot_source"] == FEW_SHOT_DERIVED == "derived (<=k training images)"

    scores, labels, train = _random_case(34)  # the synthetic data's class count
    small = evaluate_hico(scores, labels, train)
    assert small["few_shot_source"] == FEW_SHOT_DERIVED
    counts = hico_labels(train).positives.sum(axis=0)
    assert small["few_shot_sizes"]["few@10"] == int(((counts >= 1) & (counts <= 10)).sum())
    with pytest.raises(ValueError, match="600 HICO classes; the scores have 34"):
        evaluate_hico(scores, labels, train, few_shot_lists="defr")
    given = evaluate_hico(scores, labels, train, few_shot_lists={"few@1": [3]}, few_shot_name="file f.json")
    assert given["few_shot_source"] == "file f.json" and given["few@1"] == pytest.approx(given["per_class_ap"][3])


def test_few_shot_source_names() -> None:
    assert few_shot_source(600) == few_shot_source(None) == few_shot_source(34, "defr") == "defr-lists"
    assert few_shot_source(34) == few_shot_source(600, "derived") == "derived (<=k training images)"
    assert few_shot_source(600, "/x/few.json") == "file /x/few.json"


@pytest.mark.parametrize("content, message", [
    ('{"few@1": [0, 600]}', r"few@1 has class indices outside \[0, 600\): \[600\]"),
    ('{"few@5": [1, 2, 1]}', r"few@5 lists class indices more than once: \[1\]"),
    ('{"few@1": ["3"]}', "'few@1' must hold integer class indices, found '3'"),
])
def test_bad_user_lists_file_is_one_line_naming_file_key_and_option(tmp_path, content, message) -> None:
    path = tmp_path / "few.json"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as info:
        load_few_shot_lists(path, num_classes=600, origin="data.few_shot_lists")
    text = str(info.value)
    assert text.startswith(f"{path}: ") and text.endswith("(data.few_shot_lists)") and "\n" not in text


# ---- tie rules ----------------------------------------------------------------------------------------------------

# Class 0: scores 3 > 2 = 2 = 2 > 1; positives at images 3 and 4 (num_gt 2), the rest negatives.
# Class 1: every score equal; image 0 ambiguous (ignored), images 1 and 3 positive, images 2 and 4 negative.
TIE_SCORES = np.array([[3, 1], [2, 1], [2, 1], [2, 1], [1, 1]], dtype=float)
TIE_LABELS = np.array([[-1, 0], [-1, 1], [-1, -1], [1, 1], [1, -1]])


def _ap(ties: str) -> np.ndarray:
    masks = hico_labels(TIE_LABELS)
    return average_precision(TIE_SCORES, masks.positives, ~masks.certain, "11point", ties)


def test_tie_rules_on_a_hand_computed_case() -> None:
    # Class 0, index order 0,1,2,3,4: positives at ranks 4, 5 -> precision 1/4, 2/5; every threshold sees 0.4.
    # Pessimistic is the same order (the tied positive, image 3, already ranks last in its tie).
    # Optimistic 0,3,1,2,4: precision 1/2 at recall 0.5, 2/5 at recall 1 -> (6 * 0.5 + 5 * 0.4) / 11 = 5/11.
    # Class 1, index order 0(ign),1,2,3,4: rank-1 ignored gives fp eps; precision 1/(1+eps) at recall 0.5, then
    # 2/(3+eps) at recall 1 -> (6/(1+eps) + 5 * 2/(3+eps)) / 11. Pessimistic 2,4,0,1,3: precision 1/3, 1/2 -> 1/2.
    # Optimistic 1,3,0,2,4: precision 1, 1 -> 1.
    index, pessimistic, optimistic = _ap("index"), _ap("pessimistic"), _ap("optimistic")
    np.testing.assert_allclose(index, [0.4, (6 / (1 + EPS) + 5 * 2 / (3 + EPS)) / 11], rtol=0, atol=1e-15)
    np.testing.assert_allclose(pessimistic, [0.4, 0.5], rtol=0, atol=1e-15)
    np.testing.assert_allclose(optimistic, [5 / 11, 1.0], rtol=0, atol=1e-15)


def test_every_tie_order_lies_between_the_bounds() -> None:
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 4, size=(30, 12)).astype(float)  # heavy ties
    labels = rng.choice([1, 0, -1, -2], size=(30, 12), p=[0.3, 0.1, 0.4, 0.2])
    low = evaluate_hico(scores, labels, ties="pessimistic")
    high = evaluate_hico(scores, labels, ties="optimistic")
    assert low["ties"] == "pessimistic" and high["ties"] == "optimistic"
    assert np.all(np.asarray(low["per_class_ap"]) < np.asarray(high["per_class_ap"]) + 1e-12)
    assert low["full"] < high["full"]
    for _ in range(20):  # index order of a shuffled image set = a random tie order
        perm = rng.permutation(30)
        shuffled = evaluate_hico(scores[perm], labels[perm])
        for key in ("full", "known_object"):
            assert low[key] - 1e-12 <= shuffled[key] <= high[key] + 1e-12
        per_class = np.asarray(shuffled["per_class_ap"])
        assert np.all(per_class >= np.asarray(low["per_class_ap"]) - 1e-12)
        assert np.all(per_class <= np.asarray(high["per_class_ap"]) + 1e-12)


def test_without_ties_the_rules_agree() -> None:
    scores, labels, train = _random_case(20, seed=5)
    results = [evaluate_hico(scores, labels, train, ties=t) for t in ("index", "pessimistic", "optimistic")]
    for key in ("full", "few@1", "known_object"):
        assert results[0][key] == results[1][key] == results[2][key]


def test_unknown_tie_rule_is_refused() -> None:
    with pytest.raises(ValueError, match="ties must be one of"):
        evaluate_hico(TIE_SCORES, TIE_LABELS, ties="random")


# ---- eval hico ----------------------------------------------------------------------------------------------------

def _write(tmp_path, test_labels, train_labels, scores):
    import pickle

    anno = {"files_test": np.array([f"t{i}.jpg" for i in range(len(test_labels))]),
            "anno_test": np.asarray(test_labels).T.astype(float), "anno_train": np.asarray(train_labels).T.astype(float)}
    (tmp_path / "anno.pkl").write_bytes(pickle.dumps(anno))
    np.save(tmp_path / "s.npy", scores)
    return tmp_path / "anno.pkl", tmp_path / "s.npy"


def test_eval_hico_defaults_to_defr_lists_on_600_classes_and_names_the_source(tmp_path) -> None:
    scores, labels, train = _random_case(600, seed=1)
    anno, path = _write(tmp_path, labels, train, scores)
    out = json.loads(evaluate_files(anno, path, as_json=True))
    assert out["few_shot_source"] == "defr-lists" and out["few_shot_sizes"]["few@1"] == 49
    assert out["few@5"] == pytest.approx(evaluate_hico(scores, labels, train)["few@5"])
    assert "Class lists for Few@k: defr-lists" in evaluate_files(anno, path)
    derived = json.loads(evaluate_files(anno, path, "derived", as_json=True))
    assert derived["few_shot_source"] == "derived (<=k training images)"
    text = evaluate_files(anno, path, ties="pessimistic")
    assert "Score ties: pessimistic" in text


def test_eval_hico_cli_ties_option_and_bad_lists_exit_2(tmp_path, capsys) -> None:
    scores = np.array([[1.0, 2.0], [1.0, 2.0], [0.0, 2.0]])
    labels = np.array([[-1, 1], [1, -1], [1, 1]])
    anno, path = _write(tmp_path, labels, labels, scores)
    code, out, err = run_cli(["eval", "hico", "--anno", str(anno), "--scores", str(path), "--json",
                              "--ties", "optimistic"], capsys)
    assert code == 0, err
    result = json.loads(out)
    # Optimistic: class 0 ranks image 1 (positive) before image 0 (negative), then image 2 -> precision 1, 2/3.
    assert result["ties"] == "optimistic" and result["per_class_ap"][1] == pytest.approx(1.0)
    assert result["per_class_ap"][0] == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)
    code, _, err = run_cli(["eval", "hico", "--anno", str(anno), "--scores", str(path), "--ties", "random"], capsys)
    assert code == 2 and err.strip().count("\n") == 0 and "--ties 'random'" in err
    bad = tmp_path / "few.json"
    bad.write_text('{"few@1": [1, 1]}')
    code, _, err = run_cli(["eval", "hico", "--anno", str(anno), "--scores", str(path),
                            "--few-shot-lists", str(bad)], capsys)
    assert code == 2 and err.strip().count("\n") == 0
    assert f"{bad}: few@1 lists class indices more than once: [1] (--few-shot-lists)" in err
    bad.write_text('{"few@1": [2]}')
    code, _, err = run_cli(["eval", "hico", "--anno", str(anno), "--scores", str(path),
                            "--few-shot-lists", str(bad)], capsys)
    assert code == 2 and f"{bad}: few@1 has class indices outside [0, 2): [2] (--few-shot-lists)" in err
    code, _, err = run_cli(["eval", "hico", "--anno", str(anno), "--scores", str(path),
                            "--few-shot-lists", "defr"], capsys)
    assert code == 2 and "600 HICO classes" in err and err.strip().count("\n") == 0


# ---- DEFR task: data.few_shot_lists ---------------------------------------------------------------------------------

def test_defr_few_shot_setting_resolves_per_class_count_and_names_its_source(tmp_path) -> None:
    from raysweep.tasks.defr.few_shot import few_shot_lists_for, few_shot_source_of_config

    assert few_shot_lists_for(None, 600) == ("defr", "defr-lists")
    assert few_shot_lists_for(None, 34) == ("derived", "derived (<=k training images)")
    assert few_shot_lists_for("derived", 600) == ("derived", "derived (<=k training images)")
    with pytest.raises(DataError, match=r"^data.few_shot_lists 'defr': DEFR's lists index the 600 HICO classes, "
                                        r"but the data has 34"):
        few_shot_lists_for("defr", 34)
    path = tmp_path / "few.json"
    path.write_text('{"few@1": [1, 40]}')
    with pytest.raises(DataError, match=r"few@1 has class indices outside \[0, 34\): \[40\] \(data.few_shot_lists\)"):
        few_shot_lists_for(str(path), 34)
    assert few_shot_lists_for(str(path), 600) == ({"few@1": [1, 40]}, f"file {path}")
    # From a results table's flat config: the embedded data (data.root null) is derived, a data.root is real HICO.
    assert few_shot_source_of_config({"config.data.root": None}) == "derived (<=k training images)"
    assert few_shot_source_of_config({"data.root": "/data/hico_20150920"}) == "defr-lists"
    assert few_shot_source_of_config({"data.root": "/d", "data.few_shot_lists": "derived"}) == FEW_SHOT_DERIVED
    assert few_shot_source_of_config({"data.root": "/d"}, num_classes=3) == FEW_SHOT_DERIVED
    assert few_shot_source_of_config({"config.data.root": "/d", "config.data.few_shot_lists": "f.json"}) == "file f.json"
