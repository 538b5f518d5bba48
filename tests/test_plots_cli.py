"""`raysweep plots` and `report --html`: bad input is one line and exit code 2 with nothing written; the per-class
view's class groups."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from support import run_cli


def test_plots_unknown_format_is_one_line_and_writes_nothing(tmp_path: Path, capsys) -> None:
    experiment = tmp_path / "exp"
    experiment.mkdir()
    (experiment / "raysweep_meta.json").write_text(json.dumps({"name": "exp", "task": "defr"}))
    code, _, err = run_cli(["plots", str(experiment), "--format", "svg", "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and err.count("\n") == 1 and "'svg' is not one of html, png" in err
    assert not (tmp_path / "out").exists()


def test_plots_of_a_missing_experiment(tmp_path: Path, capsys) -> None:
    code, _, err = run_cli(["plots", str(tmp_path / "nope")], capsys)
    assert code == 2 and "no such experiment folder" in err and "Traceback" not in err
    assert not (tmp_path / "nope").exists()


def test_report_html_needs_the_experiment_behind_a_parquet(tmp_path: Path, capsys) -> None:
    parquet = tmp_path / "loose.parquet"
    pd.DataFrame({"task": ["defr"], "outcome": ["completed"], "status": ["TERMINATED"]}).to_parquet(parquet)
    code, out, err = run_cli(["report", str(parquet), "--html", str(tmp_path / "r.html")], capsys)
    assert code == 2 and "not inside an experiment folder" in err and out == ""
    assert not (tmp_path / "r.html").exists()


def test_per_class_groups_follow_rare_flags_or_few_shot_lists() -> None:
    from raysweep.results.plots import _class_groups

    detection = pd.DataFrame({"rare": pd.array([True, False, None, True], dtype="boolean"), "ap": [0.1, 0.2, 0.3, 0.4]})
    groups = {name: members["ap"].tolist() for (name, _), members in _class_groups(detection)}
    assert groups == {"rare": [0.1, 0.4], "non-rare": [0.2], "no training instance": [0.3]}
    hico = pd.DataFrame({"few_shot_k": [1.0, None, 5.0, 1.0], "ap": [0.1, 0.2, 0.3, 0.4]})
    groups = {name: members["ap"].tolist() for (name, _), members in _class_groups(hico)}
    assert groups == {"Few@1": [0.1, 0.4], "Few@5": [0.3], "not few-shot": [0.2]}


def test_the_plots_folder_is_not_taken_for_a_trial(tmp_path: Path) -> None:
    from raysweep.results.collect import trial_rows

    experiment = tmp_path / "exp"
    (experiment / "plots").mkdir(parents=True)
    (experiment / "plots" / "index.html").write_text("<html></html>")
    (experiment / "raysweep_meta.json").write_text(json.dumps({"name": "exp", "task": "defr"}))
    (experiment / "raysweep_trial_ab12_1_x").mkdir()
    (experiment / "raysweep_trial_ab12_1_x" / "params.json").write_text(json.dumps({"optim.lr": 0.001}))
    rows, _ = trial_rows(str(experiment))
    assert [r["dir"] for r in rows] == ["raysweep_trial_ab12_1_x"]


def test_trials_are_numbered_in_the_order_tune_created_them() -> None:
    from raysweep.results.plots import _creation_index

    trials = [{"trial_id": "3a87", "dir": "raysweep_trial_3a87_4_lr=0.001_2026-12-01"},
              {"trial_id": "27f6", "dir": "raysweep_trial_27f6_3_lr=0.002_2026-12-01"},
              {"trial_id": "ed9a", "dir": "raysweep_trial_ed9a_1_lr=0.003_2026-12-01"}, {"trial_id": "zz", "dir": None}]
    assert [t["trial_id"] for t in sorted(trials, key=_creation_index)] == ["ed9a", "27f6", "3a87", "zz"]
