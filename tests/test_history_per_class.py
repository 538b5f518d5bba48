"""history.parquet rows, per-class files and the Optuna study rebuilt for plots, on hand-written report histories."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from optuna.trial import TrialState

from raysweep.experiment import per_class
from raysweep.experiment.layout import beside
from raysweep.results.history import history_frame, trial_history
from raysweep.spec.load import load_sweep
from raysweep.results.study_view import common_rung, rebuilt_study, study_at_epoch

from support import write_space


def report(epoch, t, **metrics):
    """A Tune result.json row: our numbers plus Tune's bookkeeping, which history must drop."""
    return {"epoch": epoch, "epochs_total": 3, "time_total_s": t, "training_iteration": epoch, "timestamp": 1e9,
            "pid": 42, "done": False, "evaluated": True, "trial_id": "t1", "config": {"optim.lr": 0.001}, **metrics}


def test_history_is_tidy_and_drops_tune_bookkeeping() -> None:
    rows = trial_history("t1", [report(1, 10.0, loss=2.0, map=0.1), report(2, 20.0, loss=1.5, map=0.2)])
    frame = pd.DataFrame(rows)
    assert sorted(frame["metric"].unique()) == ["loss", "map"]
    assert frame.set_index(["epoch", "metric"])["value"].to_dict() == {
        (1, "loss"): 2.0, (1, "map"): 0.1, (2, "loss"): 1.5, (2, "map"): 0.2}
    assert frame.groupby("epoch")["wall_time_s"].first().to_dict() == {1: 10.0, 2: 20.0}


def test_history_after_a_resume_keeps_the_redone_epoch_once_and_sums_wall_time() -> None:
    # epochs 1, 2 at 10 s and 20 s; the sweep is killed; the resumed segment's clock restarts: epoch 2 redone at 8 s
    # (its last report wins), epoch 3 at 16 s. Wall time = 20 s of the first segment + the second segment's clock.
    history = [report(1, 10.0, map=0.1), report(2, 20.0, map=0.2), report(2, 8.0, map=0.25), report(3, 16.0, map=0.3)]
    frame = pd.DataFrame(trial_history("t1", history))
    assert frame["epoch"].tolist() == [1, 2, 3]
    assert frame["value"].tolist() == [0.1, 0.25, 0.3]
    assert frame["wall_time_s"].tolist() == [10.0, 28.0, 36.0]


def test_history_frame_has_a_stable_schema_even_when_empty() -> None:
    meta = {"name": "exp", "task": "defr"}
    empty = history_frame([], meta)
    full = history_frame([{"trial_id": "a", "history": [report(1, 1.0, map=0.5)]},
                          {"trial_id": "b", "history": []}], meta)
    assert list(empty.columns) == list(full.columns) == ["experiment", "task", "trial_id", "epoch", "evaluated",
                                                          "wall_time_s", "metric", "value"]
    assert dict(empty.dtypes.astype(str)) == dict(full.dtypes.astype(str))
    assert full[["experiment", "task", "trial_id", "epoch", "metric", "value"]].values.tolist() == [
        ["exp", "defr", "a", 1, "map", 0.5]]


def test_companion_files_sit_beside_the_results_file() -> None:
    assert beside("/x/exp/results.parquet", "history.parquet") == "/x/exp/history.parquet"
    assert beside("/x/runs/a.parquet", "history.parquet") == "/x/runs/a.history.parquet"
    assert beside("s3://b/p/results.parquet", "per_class.parquet") == "s3://b/p/per_class.parquet"


def test_per_class_file_replaces_a_re_evaluated_epoch_and_keeps_its_types(tmp_path: Path) -> None:
    path = per_class.trial_file(str(tmp_path), "t1")
    assert path == str(tmp_path / "_train" / "t1" / "per_class.parquet")
    columns = {"class_index": [0, 1, 2], "class_name": ["ride horse", "eat apple", "hold cup"], "ap": [0.5, 0.0, 1.0],
               "n_train": [1, 40, 7], "n_test": [2, 3, 4], "few_shot_k": [1, None, 10]}
    per_class.append_evaluation(path, "t1", 1, columns)
    per_class.append_evaluation(path, "t1", 2, columns)
    frame = per_class.append_evaluation(path, "t1", 2, {**columns, "ap": [0.6, 0.1, 0.9]})  # epoch 2 again (resume)
    assert frame.groupby("epoch").size().to_dict() == {1: 3, 2: 3}
    assert frame[frame["epoch"] == 2]["ap"].tolist() == [0.6, 0.1, 0.9]
    schema = pq.read_schema(path)
    assert str(schema.field("few_shot_k").type) == "int64" and str(schema.field("epoch").type) == "int64"
    assert str(schema.field("split").type) == "string"
    gathered = per_class.gather(str(tmp_path), ["t1", "no-file-yet"])
    assert len(gathered) == 6 and set(gathered["trial_id"]) == {"t1"} and set(gathered["split"]) == {"test"}


def test_per_class_columns_must_have_one_length(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="differ in length"):
        per_class.append_evaluation(str(tmp_path / "p.parquet"), "t1", 1, {"class_index": [0, 1], "ap": [0.5]})


def test_all_null_columns_get_their_type_not_null(tmp_path: Path) -> None:
    path = str(tmp_path / "p.parquet")
    per_class.append_evaluation(path, "t1", 1, {"class_index": [0], "ap": [0.5], "n_train": [0], "rare": [None]})
    assert str(pq.read_schema(path).field("rare").type) == "bool"


SPACE = """
    task: defr
    search:
      optim.lr: {distribution: loguniform, low: 1.0e-4, high: 1.0e-2}
      loss.name: {distribution: choice, values: [lse_sign, bce]}
    objective: {metric: map, mode: max}
"""


def trial(trial_id, status, maps, total=3, lr=1e-3, loss="bce"):
    """A trial's record as collect reads it; the objective is reported as `val.map` (selection on validation)."""
    history = [{"epoch": e + 1, "epochs_total": total, "val.map": m, "evaluated": True} for e, m in enumerate(maps)]
    return {"trial_id": trial_id, "status": status, "sampled": {"optim.lr": lr, "loss.name": loss}, "history": history}


def test_rebuilt_study_tells_what_the_searcher_told(tmp_path: Path) -> None:
    sweep = load_sweep(write_space(tmp_path, SPACE))
    assert sweep.metric == "val.map"
    study = rebuilt_study(sweep, [trial("d", "TERMINATED", [0.1, 0.2, 0.3]), trial("b", "TERMINATED", [0.05]),
                                  trial("c", "ERROR", [0.2]), trial("a", "RUNNING", [0.1, 0.15], lr=5e-3)])
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING]
    assert study.trials[0].value == 0.3 and study.trials[0].intermediate_values == {1: 0.1, 2: 0.2, 3: 0.3}
    assert study.trials[1].value == 0.05  # a pruned trial keeps its last intermediate value, as Optuna's pruners do
    assert study.trials[0].params == {"optim.lr": 1e-3, "loss.name": "bce"}
    assert [t.user_attrs["ray_trial_id"] for t in study.trials] == ["d", "b", "c", "a"]  # Tune's creation order
    assert study.best_value == 0.3


def test_equal_budget_study_compares_every_trial_at_the_first_rung(tmp_path: Path) -> None:
    sweep = load_sweep(write_space(tmp_path, SPACE))
    study = rebuilt_study(sweep, [trial("a", "TERMINATED", [0.1, 0.2, 0.3]), trial("b", "TERMINATED", [0.05]),
                                  trial("c", "TERMINATED", [0.15, 0.25])])
    assert common_rung(study) == 1
    at = study_at_epoch(study, 1)
    assert [t.value for t in at.trials] == [0.1, 0.05, 0.15]
    assert all(t.state == TrialState.COMPLETE for t in at.trials)
    assert common_rung(rebuilt_study(sweep, [trial("a", "TERMINATED", [0.1, 0.2, 0.3])])) is None
    assert math.isclose(at.best_value, 0.15)


def test_defr_per_class_columns_count_training_positives_and_few_shot_membership() -> None:
    import numpy as np

    from raysweep.tasks.defr.task import DefrTask

    task = DefrTask.__new__(DefrTask)  # only the labels matter here
    # classes: 0 has 1 positive training image, 1 has 3, 2 none (only ambiguous/negative), 3 has 12
    train = np.full((12, 4), -1)
    train[0, 0] = 1
    train[:3, 1] = 1
    train[0, 2] = 0
    train[:, 3] = 1
    evaluated = np.array([[1, 1, -2, 1], [0, -1, 1, 1]])
    task.__dict__["annotations"] = type("A", (), {"class_names": [("ride", "horse"), ("eat", "apple"),
                                                                  ("hold", "cup"), ("walk", "dog")]})()
    columns = task._per_class_columns([0.5, 0.25, 0.0, 1.0], None, evaluated, train)
    assert columns["n_train"] == [1, 3, 0, 12]
    assert columns["n_test"] == [1, 1, 1, 2]
    assert columns["few_shot_k"] == [1, 5, None, None]  # derived lists: 1..k positives; a class without any is out
    assert columns["class_name"] == ["ride horse", "eat apple", "hold cup", "walk dog"]
    published = task._per_class_columns([0.5, 0.25, 0.0, 1.0], {"few@1": [2], "few@5": [2, 3], "few@10": [0, 2, 3]},
                                        evaluated, train)
    assert published["few_shot_k"] == [10, None, 1, 5]


def test_hqm_per_class_columns_follow_the_evaluator_records() -> None:
    from raysweep.tasks.hqm.task import _per_class_columns

    records = [{"verb_id": 2, "object_coco_id": 1, "object_index": 0, "hoi_id": None, "n_test": 3, "n_train": 4,
                "rare": True, "ap_default": 0.5, "ap_known_object": 0.75},
               {"verb_id": 9, "object_coco_id": 3, "object_index": 2, "hoi_id": 17, "n_test": 1, "n_train": 0,
                "rare": None, "ap_default": 0.0, "ap_known_object": 0.0}]
    columns = _per_class_columns(records)
    assert columns["ap"] == [0.5, 0.0] and columns["ap_known_object"] == [0.75, 0.0]
    assert columns["rare"] == [True, None] and columns["n_train"] == [4, 0] and columns["hoi_id"] == [-1, 17]
