"""End to end on a real local Ray + Optuna: what the searcher was told equals what the trials reported, epoch by
epoch, and the sweep selects on validation data with test numbers reported beside it. Also across a --resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest

from raysweep.results.collect import trial_rows
from raysweep.sweep.searcher import TRIAL_ID_ATTR, study_storage
from support import run_cli_process

REPO = Path(__file__).resolve().parents[1]
SPACE = REPO / "search_spaces" / "defr.yaml"
pytestmark = pytest.mark.slow

TINY = ["data.synth.num_train=96", "data.synth.num_test=40", "data.synth.image_size=32", "data.image_size=32",
        "model.depth=1", "model.patch_size=8", "train.batch_size=16", "train.eval_batch_size=40",
        "data.val_fraction=0.25"]
# ASHA with rungs at epochs 1 and 2 of 4: some trials are stopped at a rung, the others at max_t. Tune hands both
# stopping results to the searcher only through on_trial_complete.
ASHA = ["scheduler.grace_period=1", "scheduler.reduction_factor=2", "train.epochs=4", "optuna.n_startup_trials=2"]
STATE_OF_OUTCOME = {"completed": "COMPLETE", "pruned": "PRUNED", "error": "FAIL"}


def _study(experiment: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=study_storage(str(experiment / "optuna_study.journal")))


def _assert_study_matches_history(experiment: Path, name: str) -> pd.DataFrame:
    """Every trial: the study's intermediate values == the (epoch, val.map) pairs it reported, and its state matches
    the parquet's outcome."""
    frame = pd.read_parquet(experiment / "results.parquet")
    study = _study(experiment, name)
    by_id = {t.user_attrs.get(TRIAL_ID_ATTR): t for t in study.trials}
    rows, _ = trial_rows(str(experiment))
    histories = {row["trial_id"]: row["history"] for row in rows}
    assert set(frame["trial_id"]) <= set(by_id), (sorted(frame["trial_id"]), sorted(by_id))
    for record in frame.to_dict("records"):
        trial = by_id[record["trial_id"]]
        reported: dict[int, float] = {}
        for row in histories[record["trial_id"]]:
            if row.get("evaluated") and "val.map" in row:
                reported[int(row["epoch"])] = float(row["val.map"])  # a redone epoch: the newest value wins
        assert trial.intermediate_values == pytest.approx(reported), (record["trial_id"], record["outcome"])
        assert max(reported) == record["epochs_done"]  # the epoch that made ASHA stop the trial is there too
        assert trial.state.name == STATE_OF_OUTCOME[record["outcome"]], record["trial_id"]
        if record["outcome"] == "completed":
            assert trial.value == pytest.approx(record["last.val.map"])
        elif record["outcome"] == "pruned":  # Optuna keeps the last intermediate value of a pruned trial
            assert trial.value == pytest.approx(reported[max(reported)])
    return frame


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("selection")


def test_study_holds_every_reported_epoch_and_selection_is_on_validation(workdir: Path) -> None:
    proc = run_cli_process(["tune", str(SPACE), *TINY, *ASHA, "trials.num_samples=5", "trials.max_concurrent=2",
                            f"storage.cache_dir={workdir / 'cache'}", "--storage", str(workdir / "store"),
                            "--name", "asha"], cwd=workdir)
    experiment = workdir / "store" / "asha"
    frame = _assert_study_matches_history(experiment, "asha")
    assert set(frame["outcome"]) >= {"completed"}
    assert (frame["selection"] == "val").all() and (frame["objective"] == "val.map").all()
    for column in ("last.val.map", "last.test.map", "last.test.map_few1", "best_val.epoch", "best_val.val.map",
                   "best_val.test.map", "best_test.test.map"):
        assert column in frame.columns, column
    completed = frame[frame["outcome"] == "completed"]
    # the best-val epoch's validation number is the best validation number the trial reported
    assert (completed["best_val.val.map"] >= completed["last.val.map"] - 1e-12).all()
    # validation and test differ: they are different images
    assert not (frame["last.val.map"] == frame["last.test.map"]).all()
    # the printed table shows the validation objective and the test columns, and says what it is
    header = next(line for line in proc.stdout.splitlines() if line.startswith("| backbone init"))
    assert {"val", "Full"} <= {c.strip() for c in header.split("|")} and "Test mAP in %" in proc.stdout
    report = run_cli_process(["report", str(experiment), "--layout", "trials"], cwd=workdir).stdout
    assert "val.map" in report and "Best trial" in report and "optim.lr=" in report


def _results_with_epoch(experiment: Path) -> int:
    count = 0
    for result in experiment.glob("*/result.json"):
        count += sum(1 for line in result.read_text().splitlines() if '"epoch"' in line)
    return count


def test_study_matches_history_after_kill_and_resume(workdir: Path) -> None:
    store, name = workdir / "store", "resumed"
    args = ["tune", str(SPACE), *TINY, *ASHA, "trials.num_samples=3", "trials.max_concurrent=1",
            f"storage.cache_dir={workdir / 'cache'}", "--storage", str(store), "--name", name]
    log = (workdir / "resumed.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "raysweep.cli", *args], cwd=workdir,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    experiment = store / name
    deadline = time.time() + 400
    try:
        while time.time() < deadline and _results_with_epoch(experiment) < 3:
            assert proc.poll() is None, (workdir / "resumed.log").read_text()[-3000:]
            time.sleep(0.5)
        assert _results_with_epoch(experiment) >= 3, "no progress before the kill"
        time.sleep(2)
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # the raysweep process this test started, nothing else
        proc.wait(timeout=60)
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the Ray processes of its session
        except ProcessLookupError:
            pass
        time.sleep(2)
    # killed before the end: no parquet yet (certainly no half-written one), and collect works on the crashed folder
    assert not (experiment / "results.parquet").exists()
    assert "trials" in run_cli_process(["collect", str(experiment)], cwd=workdir).stdout
    (experiment / "results.parquet").unlink()
    run_cli_process(["tune", str(SPACE), *TINY, *ASHA, "--storage", str(store), "--name", name, "--resume"],
                    cwd=workdir)
    frame = _assert_study_matches_history(experiment, name)
    assert len(frame) == 3 and frame["trial_id"].is_unique
    # No trial restarted from scratch: an interrupted one continues from its checkpoint, redoing at most the epoch in
    # flight (Train commits a checkpoint one report late).
    for record in frame.to_dict("records"):
        history = [json.loads(line) for folder in experiment.glob(f"*{record['trial_id']}*")  # every session's file
                   for file in sorted(folder.glob("result*.json")) for line in file.read_text().splitlines()
                   if line.strip()]
        epochs = [row["epoch"] for row in history if "epoch" in row]
        assert set(epochs) == set(range(1, record["epochs_done"] + 1)), epochs
        assert len(epochs) - len(set(epochs)) <= 1, epochs
