"""The live console: one compact line per trial (status, epoch k/N, ETA, objective now and best, searched parameters
only), printed again only when a line changed; the dashboard line says how to get past token authentication."""

from __future__ import annotations

import io

import pytest
from ray.tune.experiment import Trial

from raysweep.sweep.console import TrialTable, clock, dashboard_line, eta_seconds, trial_status

PARAMS = ["classifier.init", "optim.lr"]


def make_trial(trial_id: str, lr: float) -> Trial:
    return Trial("raysweep_trial", config={"classifier.init": "language", "optim.lr": lr, "unsearched": 1}, stub=True,
                 trial_id=trial_id)


def report(trial: Trial, epoch: int, value: float, seconds: float = 10.0) -> None:
    trial.update_last_result({"epoch": epoch, "epochs_total": 4, "map": value, "loss": 1.0,
                              "time_since_restore": seconds * epoch, "iterations_since_restore": epoch})


def test_status_words() -> None:
    trial = make_trial("a_00000", 1e-3)
    assert trial_status(trial) == "PENDING"
    trial.set_status(Trial.RUNNING)
    report(trial, 2, 0.3)
    assert trial_status(trial) == "RUNNING"
    trial.set_status(Trial.TERMINATED)
    assert trial_status(trial) == "PRUNED at epoch 2"
    report(trial, 4, 0.5)
    assert trial_status(trial) == "COMPLETED"
    trial.set_status(Trial.ERROR)
    assert trial_status(trial) == "ERROR"


def test_eta_is_mean_epoch_time_times_epochs_left() -> None:
    assert eta_seconds({"epoch": 1, "epochs_total": 4, "time_since_restore": 12.0, "iterations_since_restore": 1}) == 36
    # resumed at epoch 3: one epoch since the restart took 5 s, one epoch left
    assert eta_seconds({"epoch": 3, "epochs_total": 4, "time_since_restore": 5.0, "iterations_since_restore": 1}) == 5
    assert eta_seconds({"epoch": 1}) is None
    assert (clock(36), clock(3725), clock(None)) == ("0:36", "1:02:05", "-")


def test_table_lines_and_redraw_only_on_change() -> None:
    out = io.StringIO()
    table = TrialTable("map", "max", PARAMS, max_epochs=4, out=out)
    table.setup(total_samples=3)
    first, second = make_trial("a_00000", 0.00123), make_trial("a_00001", 0.0005)
    trials = [first, second]
    first.set_status(Trial.RUNNING)
    report(first, 1, 0.25)
    assert table.should_report(trials)
    table.report(trials, False)
    assert not table.should_report(trials)  # nothing changed: nothing printed
    report(first, 2, 0.2)  # the objective dropped: "now" moves, "best" stays
    second.set_status(Trial.RUNNING)
    assert table.should_report(trials)
    table.report(trials, False)
    first.set_status(Trial.TERMINATED)
    second.set_status(Trial.ERROR)
    assert table.should_report(trials, done=True)
    table.report(trials, True)
    blocks = out.getvalue().strip().split("\n\n")
    assert len(blocks) == 3
    lines = blocks[1].splitlines()
    assert lines[0].startswith("== 0/3 trials done (0 completed, 0 pruned, 0 error), 2 running · best map 0.2500 "
                               "(a_00000) · ") and lines[0].endswith(" elapsed")
    assert lines[1].split() == ["trial", "status", "epoch", "ETA", "map", "best", "classifier.init", "optim.lr"]
    assert lines[2].split() == ["a_00000", "RUNNING", "2/4", "0:20", "0.2000", "0.2500", "language", "0.00123"]
    assert lines[3].split() == ["a_00001", "RUNNING", "0/4", "-", "-", "-", "language", "0.0005"]
    assert "unsearched" not in out.getvalue()
    final = blocks[2].splitlines()
    assert final[0].startswith("== 2/3 trials done (0 completed, 1 pruned, 1 error), 0 running")
    assert final[2].split()[:4] == ["a_00000", "PRUNED", "at", "epoch"] and final[3].split()[1] == "ERROR"


def test_dashboard_line_says_how_to_get_in(monkeypatch) -> None:
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    line = dashboard_line("127.0.0.1:8265")
    assert line.startswith("Ray dashboard: http://127.0.0.1:8265 (token authentication: paste the token from "
                           "~/.ray/auth_token")
    assert "'Authorization: Bearer <token>'" in line
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert dashboard_line("127.0.0.1:8265") == "Ray dashboard: http://127.0.0.1:8265"
    assert dashboard_line(None) is None  # ray.dashboard: false


@pytest.mark.parametrize("value,text", [(0.43124, "0.4312"), (3e-5, "3e-05"), (7, "7"), (None, "-"), ("bce", "bce")])
def test_number_format(value, text) -> None:
    from raysweep.sweep.console import number

    assert number(value) == text
