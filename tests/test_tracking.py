"""Trackers by config, driven through the Tune callback interface with real Tune trials and the real libraries:
W&B in offline mode and MLflow's local file store, each read back. No Ray instance (the callbacks run in the sweep's
own process); the end-to-end sweep with trackers on is in test_e2e_console_tracking.py."""

from __future__ import annotations

import glob
from pathlib import Path

import pytest
from ray.tune.experiment import Trial

from raysweep.errors import UserError
from raysweep.spec.load import load_sweep
from raysweep.sweep.tracking import check_tracking, measurements, mlflow_uri, tracking_callbacks
from wandb_files import read_run

REPO = Path(__file__).resolve().parents[1]
SPACE = REPO / "search_spaces" / "defr.yaml"


class FolderTrial(Trial):
    """A real Tune trial whose folder is given (Tune derives it from its storage context)."""

    folder = ""
    local_path = property(lambda self: self.folder)


def trial_in(folder: Path, trial_id: str) -> Trial:
    trial = FolderTrial("raysweep_trial", config={"optim.lr": 0.0015, "classifier.init": "rand"}, stub=True,
                        trial_id=trial_id)
    folder.mkdir(parents=True, exist_ok=True)
    trial.folder = str(folder)
    return trial


def epochs(callback, trial: Trial, values: list[float]) -> None:
    callback.on_trial_start(iteration=0, trials=[trial], trial=trial)
    for epoch, value in enumerate(values, start=1):
        callback.on_trial_result(iteration=epoch, trials=[trial], trial=trial, result={
            "epoch": epoch, "epochs_total": len(values), "map": value, "loss": 1.0 / epoch, "training_iteration": epoch,
            "time_total_s": 3.0 * epoch, "timestamp": 1_700_000_000 + epoch, "pid": 123, "done": False,
            "config": {"optim.lr": 0.0015}})
    callback.on_trial_complete(iteration=len(values), trials=[trial], trial=trial)


def test_measurements_drop_tune_bookkeeping() -> None:
    assert measurements({"epoch": 2, "map": 0.5, "timestamp": 1, "pid": 3, "done": True, "config": {}, "x": "text",
                         "evaluated": True}) == {"epoch": 2.0, "map": 0.5}


def test_mlflow_file_store_run_per_trial(tmp_path: Path, monkeypatch) -> None:
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    sweep = load_sweep(SPACE, ["tracking.mlflow=true", "tracking.tensorboard=true"])
    experiment = tmp_path / "store" / "exp"
    (callback,) = tracking_callbacks(sweep, str(experiment), "exp")
    callback.setup()
    epochs(callback, trial_in(experiment / "t1", "abc12_00000"), [0.2, 0.3, 0.25])
    epochs(callback, trial_in(experiment / "t2", "abc12_00001"), [0.1])
    mlflow.set_tracking_uri(mlflow_uri(sweep, str(experiment)))
    assert mlflow_uri(sweep, str(experiment)) == f"file://{experiment}/_mlruns"
    runs = mlflow.search_runs(experiment_names=["exp"]).set_index("tags.mlflow.runName")
    assert sorted(runs.index) == ["abc12_00000", "abc12_00001"]
    first = runs.loc["abc12_00000"]
    assert first["status"] == "FINISHED" and first["tags.raysweep.trial_id"] == "abc12_00000"
    assert first["params.optim.lr"] == "0.0015" and first["params.classifier.init"] == "rand"
    assert first["params.train.epochs"] == "8"  # the whole config, not only the sampled keys
    assert first["metrics.map"] == pytest.approx(0.25) and "metrics.timestamp" not in runs.columns
    history = mlflow.MlflowClient().get_metric_history(first["run_id"], "map")
    assert [(m.step, m.value) for m in history] == [(1, 0.2), (2, 0.3), (3, 0.25)]


def test_mlflow_resumed_trial_continues_its_run(tmp_path: Path, monkeypatch) -> None:
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    sweep = load_sweep(SPACE, ["tracking.mlflow=true"])
    experiment = tmp_path / "exp"
    for values in ([0.2], [0.2, 0.4]):  # a second sweep process (--resume) reports the same trial again
        (callback,) = tracking_callbacks(sweep, str(experiment), "exp")
        callback.setup()
        epochs(callback, trial_in(experiment / "t1", "abc12_00000"), values)
    mlflow.set_tracking_uri(mlflow_uri(sweep, str(experiment)))
    runs = mlflow.search_runs(experiment_names=["exp"])
    assert len(runs) == 1 and runs.loc[0, "metrics.map"] == pytest.approx(0.4)


def test_wandb_offline_run_per_trial(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    sweep = load_sweep(SPACE, ["tracking.wandb=true", "tracking.wandb_project=hoi"])
    check_tracking(sweep, str(tmp_path / "exp"))  # offline needs no key
    (callback,) = tracking_callbacks(sweep, str(tmp_path / "exp"), "exp")
    folder = tmp_path / "exp" / "trial_folder"
    epochs(callback, trial_in(folder, "abc12_00000"), [0.2, 0.3])
    (path,) = glob.glob(str(folder / "wandb" / "offline-run-*" / "run-abc12_00000.wandb"))
    run = read_run(Path(path))
    assert (run["id"], run["name"], run["project"], run["group"]) == ("abc12_00000", "abc12_00000", "hoi", "exp")
    assert run["config"]["optim.lr"] == 0.0015 and run["config"]["train.epochs"] == 8
    logged = [(row["_step"], row["map"], row["epoch"]) for row in run["history"]]
    assert logged == [(1, 0.2, 1), (2, 0.3, 2)]
    assert all("timestamp" not in row and "pid" not in row for row in run["history"])


def test_wandb_online_without_key_is_refused_before_ray(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(UserError, match="tracking.wandb: no W&B API key; export WANDB_API_KEY"):
        check_tracking(load_sweep(SPACE, ["tracking.wandb=true"]), str(tmp_path / "exp"))


def test_mlflow_on_object_storage_needs_a_server(monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(UserError, match="set tracking.mlflow_uri"):
        check_tracking(load_sweep(SPACE, ["tracking.mlflow=true"]), "s3://bucket/sweeps/exp")


def test_no_tracker_no_callback() -> None:
    assert tracking_callbacks(load_sweep(SPACE), "/tmp/x", "x") == []


def test_callbacks_pickle_for_resume(tmp_path: Path, monkeypatch) -> None:
    import pickle

    monkeypatch.setenv("WANDB_MODE", "offline")
    sweep = load_sweep(SPACE, ["tracking.wandb=true", "tracking.mlflow=true"])
    callbacks = tracking_callbacks(sweep, str(tmp_path / "exp"), "exp")
    assert [type(c).__name__ for c in pickle.loads(pickle.dumps(callbacks))] == ["TrialWandbCallback",
                                                                                 "TrialMLflowCallback"]


def test_tensorboard_off_keeps_the_json_results_collect_reads(monkeypatch) -> None:
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
    from ray.tune.utils.callback import _create_default_callbacks
    from ray.tune.logger import TBXLoggerCallback

    monkeypatch.delenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", raising=False)
    on = _create_default_callbacks(tracking_callbacks(load_sweep(SPACE), "/tmp/x", "x"), metric="map")
    assert any(isinstance(c, TBXLoggerCallback) for c in on)  # Ray writes the event files by default
    off = _create_default_callbacks(tracking_callbacks(load_sweep(SPACE, ["tracking.tensorboard=false"]), "/tmp/x",
                                                       "x"), metric="map")
    kinds = [type(c) for c in off]
    assert JsonLoggerCallback in kinds and CSVLoggerCallback in kinds
    assert not any(isinstance(c, TBXLoggerCallback) for c in off)
