"""The experiment layer's names and paths, for local folders and URIs, and the saved sweep of an experiment."""

from __future__ import annotations

from pathlib import Path

import pytest

from raysweep.errors import UserError
from raysweep.experiment import layout
from raysweep.experiment.layout import ExperimentLayout, beside
from raysweep.experiment.meta import check_meta_matches, load_saved_sweep, parse_meta, versions


def test_local_layout_paths(tmp_path: Path) -> None:
    exp = ExperimentLayout.of(str(tmp_path / "store" / "."), "exp")
    root = tmp_path / "store" / "exp"
    assert exp.root == str(root)
    assert exp.meta == str(root / "raysweep_meta.json")
    assert exp.space_copy == str(root / "raysweep_space.yaml")
    assert exp.lock == str(root / "raysweep.lock")
    assert exp.study == str(root / "optuna_study.journal")
    assert exp.results == str(root / "results.parquet")
    assert exp.history == str(root / "history.parquet")
    assert exp.plots_dir == str(root / "plots")
    assert exp.train_run("t1") == str(root / "_train" / "t1")
    assert exp.trial_per_class("t1") == str(root / "_train" / "t1" / "per_class.parquet")


def test_uri_layout_paths_keep_the_uri() -> None:
    exp = ExperimentLayout.of("s3://bucket/prefix/", "exp")
    assert exp.root == "s3://bucket/prefix/exp"
    assert exp.meta == "s3://bucket/prefix/exp/raysweep_meta.json"
    assert exp.train_run("ab12") == "s3://bucket/prefix/exp/_train/ab12"


def test_companion_files_of_a_results_parquet() -> None:
    assert beside("/x/exp/results.parquet", layout.HISTORY_PARQUET) == "/x/exp/history.parquet"
    assert beside("runs/a.parquet", layout.PER_CLASS_FILE) == "runs/a.per_class.parquet"
    assert beside("runs/a.csv", layout.HISTORY_PARQUET) == "runs/a.csv.history.parquet"


def test_session_files_match_their_pattern() -> None:
    assert layout.SESSION_PATTERN.match(layout.session_file(3)).group(1) == "3"
    assert not layout.SESSION_PATTERN.match(layout.RESULT_FILE)


def test_meta_types_are_checked_and_name_the_file() -> None:
    assert parse_meta({"name": "e", "overrides": ["a=1"], "versions": {"ray": "2.60.0"}}, "m.json")["name"] == "e"
    with pytest.raises(UserError, match=r"^m.json: 'overrides'\[1\] is 2, expected str$"):
        parse_meta({"overrides": ["a=1", 2]}, "m.json")
    with pytest.raises(UserError, match="m.json: 'task' is 'hqm' but the experiment's raysweep_space.yaml is for task"):
        check_meta_matches({"task": "hqm"}, "defr", "m.json")
    assert set(versions()) == {"raysweep", "torch", "ray", "optuna", "git_commit", "python"}
    import torch  # read from torch's version.py without importing it: the same string, build included

    assert versions()["torch"] == torch.__version__


def test_saved_sweep_errors_name_the_experiment_copy(tmp_path: Path) -> None:
    exp = ExperimentLayout(str(tmp_path / "exp"))
    (tmp_path / "exp").mkdir()
    Path(exp.space_copy).write_text("task: defr\ntrials: {num_samples: 3}\n")
    assert load_saved_sweep(exp, ["trials.num_samples=2"]).num_trials == 2
    Path(exp.space_copy).write_text("task: defr\ntrials: {num_samples: zero}\n")
    with pytest.raises(UserError) as err:
        load_saved_sweep(exp, [])
    assert str(err.value).startswith(exp.space_copy + ": trials.num_samples"), err.value
