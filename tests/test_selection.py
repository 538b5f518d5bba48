"""Model selection on validation data: the split, the space file's `selection`, the best-epoch columns, the tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raysweep.errors import ConfigError
from raysweep.results.collect import best_epoch_columns
from raysweep.results.tables import render_table, summarise
from raysweep.results.trials_table import override_line
from raysweep.spec.load import load_sweep
from raysweep.tasks.common.splits import stratified_holdout
from support import run_cli, write_space

REPO = Path(__file__).resolve().parents[1]


# ---- the split ---------------------------------------------------------------------------------------------------
def test_holdout_is_deterministic_disjoint_and_covering() -> None:
    rng = np.random.default_rng(3)
    labels = [list(rng.choice(12, size=rng.integers(0, 3), replace=False)) for _ in range(200)]
    train, val = stratified_holdout(labels, 12, 0.2, seed=5)
    again = stratified_holdout(labels, 12, 0.2, seed=5)
    assert np.array_equal(train, again[0]) and np.array_equal(val, again[1])
    assert not set(train) & set(val) and sorted([*train, *val]) == list(range(200))
    assert 30 <= len(val) <= 50
    other = stratified_holdout(labels, 12, 0.2, seed=6)[1]
    assert not np.array_equal(val, other)


def test_rare_classes_keep_positives_on_both_sides() -> None:
    # class 0: one image (stays in training); class 1: two images (one each side); class 2: ten images (2 in val)
    labels = [[0], [1], [1], *([[2]] * 10), *([[]] * 8)]
    train, val = stratified_holdout(labels, 3, 0.2, seed=0)
    in_val = [c for i in val for c in labels[i]]
    in_train = [c for i in train for c in labels[i]]
    assert in_val.count(0) == 0 and in_train.count(0) == 1
    assert in_val.count(1) == 1 and in_train.count(1) == 1
    assert in_val.count(2) == 2 and in_train.count(2) == 8
    assert sum(1 for i in val if not labels[i]) == 2  # unlabelled images split by the fraction: round(0.2 * 8)


def test_holdout_never_takes_a_class_s_last_training_positive() -> None:
    # image 0 holds classes 0 and 1; class 0 has two images, class 1 only this one: image 0 must stay in training
    labels = [[0, 1], [0]]
    train, val = stratified_holdout(labels, 2, 0.5, seed=0)
    assert list(train) == [0] and list(val) == [1]


def test_defr_task_builds_validation_from_training_images(tmp_path: Path) -> None:
    from raysweep.tasks.base import evaluate_in_process
    from raysweep.tasks.defr.config import DefrConfig
    from raysweep.tasks.defr.task import DefrTask

    config = DefrConfig.model_validate({
        "data": {"synth": {"num_train": 60, "num_test": 20, "image_size": 32}, "image_size": 32,
                 "validation": True, "val_fraction": 0.25},
        "model": {"depth": 1, "patch_size": 8, "width": 32, "heads": 2}, "classifier": {"init": "rand"}})
    updates = DefrTask.prepare(config, tmp_path)
    config = DefrConfig.model_validate({**config.model_dump(mode="json"),
                                        "data": {**config.data.model_dump(mode="json"), **{"root": updates["data.root"]}}})
    task = DefrTask(config, cache_dir=tmp_path)
    parts = task.build(__import__("torch").device("cpu"))
    assert parts.val_set is not None
    assert len(parts.train_set.files) + len(parts.val_set) == 60 and len(parts.eval_set) == 20
    assert not set(parts.val_set.files) & set(parts.train_set.files)
    val = evaluate_in_process(task, parts, "val")
    test = evaluate_in_process(task, parts, "test")
    assert set(val) == set(test) == set(DefrTask.metric_names)


# ---- the space file ----------------------------------------------------------------------------------------------
def test_searched_sweep_selects_on_validation_by_default() -> None:
    sweep = load_sweep(REPO / "search_spaces" / "defr.yaml")
    assert sweep.spec.selection == "val" and sweep.metric == "val.map" and sweep.task_metric == "map"
    assert sweep.base_config["data"]["validation"] is True


@pytest.mark.parametrize("space", ["defr_paper.yaml", "hqm_paper.yaml", "defr_ablation.yaml"])
def test_paper_grids_train_on_the_full_training_set(space: str) -> None:
    sweep = load_sweep(REPO / "search_spaces" / space)
    assert sweep.spec.selection == "none" and sweep.metric.startswith("test.")
    assert sweep.base_config["data"]["validation"] is False


@pytest.mark.parametrize("overrides, message", [
    (["objective.metric=test.map"], "would select hyper-parameters on the test set"),
    (["selection=none"], "selection: none runs a fixed grid"),
    (["selection=val", "data.validation=false"], "contradicts selection: val"),
    (["selection=test", "objective.metric=val.map"], "needs a validation split"),
    (["selection=best"], "selection"),
])
def test_selection_mistakes_are_one_line_errors(overrides, message) -> None:
    with pytest.raises(ConfigError, match=message):
        load_sweep(REPO / "search_spaces" / "defr.yaml", overrides)


def test_test_selection_is_allowed_when_the_file_says_so() -> None:
    sweep = load_sweep(REPO / "search_spaces" / "defr.yaml", ["selection=test"])
    assert sweep.metric == "test.map" and sweep.base_config["data"]["validation"] is False


def test_cli_refuses_a_test_objective_before_anything_starts(tmp_path: Path, capsys) -> None:
    space = write_space(tmp_path, """
        task: defr
        objective: {metric: test.map}
        search:
          optim.lr: {distribution: loguniform, low: 1.0e-4, high: 1.0e-3}
        storage: {path: %s}
        """ % (tmp_path / "store"))
    code, out, err = run_cli(["tune", str(space)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "test set" in err
    assert not (tmp_path / "store").exists()


# ---- best-epoch columns ------------------------------------------------------------------------------------------
HISTORY = [
    {"epoch": 1, "evaluated": True, "test_evaluated": True, "val.map": 0.30, "test.map": 0.20, "loss": 2.0},
    {"epoch": 2, "evaluated": True, "test_evaluated": True, "val.map": 0.50, "test.map": 0.25, "loss": 1.5},
    {"epoch": 3, "evaluated": False, "test_evaluated": False, "val.map": 0.50, "loss": 1.2},  # carried forward
    {"epoch": 4, "evaluated": True, "test_evaluated": True, "val.map": 0.45, "test.map": 0.35, "loss": 1.0},
]


def test_best_val_takes_the_test_numbers_of_the_best_validation_epoch() -> None:
    columns = best_epoch_columns(HISTORY, "val.map", "max")
    assert columns["best_val.epoch"] == 2 and columns["best_val.val.map"] == 0.50
    assert columns["best_val.test.map"] == 0.25  # not the best test number (0.35): the one validation chose
    assert columns["best_test.epoch"] == 4 and columns["best_test.test.map"] == 0.35


def test_best_epoch_ties_go_to_the_earliest_and_min_mode_minimises() -> None:
    tied = [{**HISTORY[1], "epoch": 2}, {**HISTORY[1], "epoch": 5, "test.map": 0.9}]
    assert best_epoch_columns(tied, "val.map", "max")["best_val.epoch"] == 2
    assert best_epoch_columns(HISTORY, "val.map", "min")["best_val.epoch"] == 1


# ---- tables ------------------------------------------------------------------------------------------------------
def _frame(trials: list[dict]) -> pd.DataFrame:
    records = []
    for i, t in enumerate(trials):
        records.append({
            "task": "defr", "trial_id": f"t{i}", "status": "TERMINATED", "outcome": t.get("outcome", "completed"),
            "selection": "val", "objective": "val.map", "objective_mode": "max",
            "searched": json.dumps(["optim.lr", "train.seed"]), "epochs_done": 4, "epochs_total": 4,
            "config.model.backbone": "vit_tiny", "config.model.weights": "random", "config.classifier.init": "rand",
            "config.classifier.text_encoder": "minilm", "config.classifier.head": "cosine",
            "config.loss.name": "bce", "config.optim.lr": t["lr"], "config.train.seed": t["seed"],
            "last.val.map": t["val"], "last.test.map": t["test"], "last.test.map_few1": t["test"] / 2,
            "last.test.map_few5": t["test"] / 2, "last.test.map_few10": t["test"] / 2, "last.test.map_ko": t["test"]})
    return pd.DataFrame(records)


def test_seeds_of_one_configuration_pool_into_one_row() -> None:
    frame = _frame([{"lr": 1e-3, "seed": s, "val": 0.4, "test": 0.30 + s / 100} for s in range(3)])
    summary, _ = summarise(frame)
    assert len(summary) == 1 and summary["n"].iloc[0] == 3 and summary["selected"].iloc[0] == ""
    assert summary["Full mean"].iloc[0] == pytest.approx(0.31)


def test_different_sampled_values_are_never_averaged_but_selected_on_validation() -> None:
    frame = _frame([{"lr": 1e-3, "seed": 0, "val": 0.40, "test": 0.10}, {"lr": 1e-3, "seed": 1, "val": 0.42, "test": 0.12},
                    {"lr": 2e-3, "seed": 0, "val": 0.50, "test": 0.05}])
    summary, _ = summarise(frame)
    assert len(summary) == 1
    row = summary.iloc[0]
    assert row["selected"] == "best of 2 by val" and row["n"] == 1
    assert row["Full mean"] == pytest.approx(0.05) and row["val mean"] == pytest.approx(0.50)
    text = render_table(frame, layout="results")
    header = [cell.strip() for cell in text.splitlines()[0].split("|")]
    assert "best of 2 by val" in text and "val" in header and "mean validation objective" in text


def test_without_validation_each_configuration_is_its_own_row() -> None:
    frame = _frame([{"lr": 1e-3, "seed": 0, "val": 0.4, "test": 0.10}, {"lr": 2e-3, "seed": 0, "val": 0.5, "test": 0.2}])
    frame = frame.drop(columns=["last.val.map"])
    summary, _ = summarise(frame)
    assert len(summary) == 2 and set(summary["optim.lr"]) == {1e-3, 2e-3}
    assert "Rows differing in optim.lr are separate" in render_table(frame, layout="results")


def test_pruned_trials_are_left_out_and_counted_in_the_footer() -> None:
    frame = _frame([{"lr": 1e-3, "seed": 0, "val": 0.4, "test": 0.3},
                    {"lr": 1e-3, "seed": 1, "val": 0.1, "test": 0.01, "outcome": "pruned"}])
    summary, _ = summarise(frame)
    assert summary["n"].iloc[0] == 1 and summary["Full mean"].iloc[0] == pytest.approx(0.3)
    assert "Left out: 1 pruned trial" in render_table(frame, layout="results")
    both, _ = summarise(frame, ("completed", "pruned"))
    assert len(both) == 2 and set(both["outcome"]) == {"completed", "pruned"}  # side by side, not averaged


def test_trials_layout_sorts_by_validation_and_prints_the_override_line() -> None:
    frame = _frame([{"lr": 1e-3, "seed": 0, "val": 0.40, "test": 0.10}, {"lr": 2e-3, "seed": 1, "val": 0.50, "test": 0.05}])
    text = render_table(frame, layout="trials")
    lines = text.splitlines()
    assert "optim.lr" in lines[0] and "val.map" in lines[0] and "outcome" in lines[0]
    assert lines[2].startswith("| t1 ") and lines[3].startswith("| t0 ")
    assert "(mAP in %)" in text
    assert "optim.lr=0.002 train.seed=1" in text
    assert override_line({"config.a": True, "config.b": 0.5}, ["a", "b"]) == "a=true b=0.5"


def test_latex_escapes_every_special_character() -> None:
    frame = _frame([{"lr": 1e-3, "seed": 0, "val": 0.4, "test": 0.3}])
    frame["config.loss.name"] = "a_b&c%"
    text = render_table(frame, "latex", layout="results")
    assert r"\_" in text and r"$\pm$" not in text.split(r"\midrule")[0]


def test_footer_names_the_few_shot_classes() -> None:
    frame = _frame([{"lr": 1e-3, "seed": 0, "val": 0.4, "test": 0.3}])
    assert "Few@k classes: derived" in render_table(frame, layout="results")
    frame["config.data.root"] = "/data/hico_20150920"  # real HICO: DEFR's published lists
    assert "Few@k classes: defr-lists" in render_table(frame, layout="results")
