"""Trials ASHA stops early reach Optuna as PRUNED (with their per-epoch values), finished ones as COMPLETE."""

from __future__ import annotations

from pathlib import Path

from optuna.trial import TrialState

from raysweep.spec import load_sweep
from raysweep.sweep.optuna_space import DefineByRun, make_sampler
from raysweep.sweep.searcher import EpochAwareOptunaSearch, outcome

REPO = Path(__file__).resolve().parents[1]


def make_searcher() -> EpochAwareOptunaSearch:
    sweep = load_sweep(REPO / "search_spaces" / "defr.yaml")
    return EpochAwareOptunaSearch(space=DefineByRun(sweep), metric="map", mode="max", sampler=make_sampler(sweep))


def test_outcome_rules() -> None:
    assert outcome({"map": 0.4, "epoch": 4, "epochs_total": 4}, "map", False) == (TrialState.COMPLETE, 0.4)
    assert outcome({"map": 0.4, "epoch": 2, "epochs_total": 4}, "map", False) == (TrialState.PRUNED, None)
    assert outcome({"map": 0.4, "epoch": 4, "epochs_total": 4}, "map", True) == (TrialState.FAIL, None)
    assert outcome({"map": float("nan"), "epoch": 4, "epochs_total": 4}, "map", False) == (TrialState.FAIL, None)
    assert outcome({"epoch": 1, "epochs_total": 4, "trial_failure": "loss became nan"}, "map", False)[0] == TrialState.FAIL
    assert outcome(None, "map", False) == (TrialState.FAIL, None)


def test_early_stopped_trial_is_pruned_with_epoch_keyed_values() -> None:
    searcher = make_searcher()
    config = searcher.suggest("a")
    assert "optim.lr" in config and "classifier.init" in config
    searcher.on_trial_result("a", {"map": 0.10, "epoch": 1, "training_iteration": 1, "evaluated": True})
    # After a resume Tune's training_iteration restarts at 1; the epoch does not.
    searcher.on_trial_result("a", {"map": 0.12, "epoch": 2, "training_iteration": 1, "evaluated": True})
    searcher.on_trial_complete("a", {"map": 0.12, "epoch": 2, "epochs_total": 4})
    searcher.suggest("b")
    for epoch in range(1, 5):
        searcher.on_trial_result("b", {"map": 0.1 * epoch, "epoch": epoch, "evaluated": True})
    searcher.on_trial_complete("b", {"map": 0.4, "epoch": 4, "epochs_total": 4})
    searcher.suggest("c")
    searcher.on_trial_complete("c", None, error=True)
    trials = searcher._ot_study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.PRUNED, TrialState.COMPLETE, TrialState.FAIL]
    assert trials[0].intermediate_values == {1: 0.10, 2: 0.12}
    assert trials[1].value == 0.4 and trials[1].intermediate_values == {1: 0.1, 2: 0.2, 3: 0.30000000000000004, 4: 0.4}


def test_seeded_sampler_repeats_suggestions() -> None:
    first = [make_searcher().suggest(str(i)) for i in range(1)]
    again = [make_searcher().suggest(str(i)) for i in range(1)]
    assert first == again


def test_the_result_that_stopped_a_trial_reaches_the_study() -> None:
    # Tune gives the result on which ASHA decided STOP (at a rung, or at max_t) only to on_trial_complete
    searcher = make_searcher()
    searcher.suggest("a")
    searcher.on_trial_result("a", {"map": 0.104, "epoch": 1, "evaluated": True})
    searcher.on_trial_complete("a", {"map": 0.111, "epoch": 2, "epochs_total": 8, "evaluated": True})
    searcher.suggest("b")
    for epoch in range(1, 8):
        searcher.on_trial_result("b", {"map": 0.1 + epoch / 100, "epoch": epoch, "evaluated": True})
    searcher.on_trial_complete("b", {"map": 0.3, "epoch": 8, "epochs_total": 8, "evaluated": True})
    a, b = searcher._ot_study.get_trials(deepcopy=False)
    assert a.state == TrialState.PRUNED and a.intermediate_values == {1: 0.104, 2: 0.111} and a.value == 0.111
    assert b.state == TrialState.COMPLETE and b.intermediate_values[8] == 0.3 and len(b.intermediate_values) == 8
    assert a.user_attrs["ray_trial_id"] == "a" and b.user_attrs["ray_trial_id"] == "b"


def test_a_redone_epoch_keeps_the_newest_value_and_carried_epochs_are_skipped() -> None:
    searcher = make_searcher()
    searcher.suggest("a")
    searcher.on_trial_result("a", {"map": 0.2, "epoch": 1, "evaluated": True})
    searcher.on_trial_result("a", {"map": 0.2, "epoch": 2, "evaluated": False})  # carried forward, not evaluated
    searcher.on_trial_result("a", {"map": 0.25, "epoch": 1, "evaluated": True})  # redone after a restart
    (trial,) = searcher._ot_study.get_trials(deepcopy=False)
    assert trial.intermediate_values == {1: 0.25}


def test_study_lives_in_a_journal_file_readable_while_the_sweep_runs(tmp_path) -> None:
    import optuna

    from raysweep.sweep.searcher import study_storage

    sweep = load_sweep(REPO / "search_spaces" / "defr.yaml")
    path = str(tmp_path / "optuna_study.journal")
    searcher = EpochAwareOptunaSearch(space=DefineByRun(sweep), metric="map", mode="max", sampler=make_sampler(sweep),
                                      study_name="exp", storage=study_storage(path))
    searcher.suggest("a")
    searcher.on_trial_result("a", {"map": 0.3, "epoch": 1, "evaluated": True})
    reader = optuna.load_study(study_name="exp", storage=study_storage(path))  # another process would do the same
    (trial,) = reader.trials
    assert trial.state == TrialState.RUNNING and trial.intermediate_values == {1: 0.3}
