"""One tiny real sweep (`raysweep tune` as a subprocess on a real local Ray) with W&B (offline) and MLflow (file store)
on: while it runs, the printed dashboard answers its Jobs / Actors / node-metrics API with the token the line names;
afterwards the console showed compact trial lines, and every tracker holds one run per trial with per-epoch values,
TensorBoard's event files included."""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from wandb_files import read_run

REPO = Path(__file__).resolve().parents[1]
SPACE = REPO / "search_spaces" / "defr.yaml"
pytestmark = pytest.mark.slow

TINY = ["data.synth.num_train=80", "data.synth.num_test=40", "data.synth.image_size=32", "data.image_size=32",
        "model.depth=1", "model.patch_size=8", "train.batch_size=16", "train.eval_batch_size=40",
        "scheduler.type=none", "trials.num_samples=2", "train.epochs=2"]
DASHBOARD_APIS = ("/api/jobs/", "/api/v0/actors", "/nodes?view=summary")  # Jobs, Actors, per-node metrics


def read_token(source: str) -> str:
    if source == "the RAY_AUTH_TOKEN variable":
        return os.environ["RAY_AUTH_TOKEN"]
    return Path(os.path.expanduser(source)).read_text().strip()


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> dict:
    """Run the sweep; meanwhile query the dashboard. Returns the console text, the answers and the experiment."""
    workdir = tmp_path_factory.mktemp("tracked")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "offline", "RAY_DEDUP_LOGS": "0",
           "RAYSWEEP_PROGRESS": "1"}  # notices and bars as on a terminal
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("WANDB_API_KEY", None)
    args = [sys.executable, "-m", "raysweep.cli", "tune", str(SPACE), *TINY, "tracking.wandb=true",
            "tracking.mlflow=true", f"storage.cache_dir={workdir / 'cache'}", "--storage", str(workdir / "store"),
            "--name", "tracked"]
    proc = subprocess.Popen(args, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    stderr: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    threading.Thread(target=lambda: stderr.append(proc.stderr.read()), daemon=True).start()
    answers: dict[str, tuple[int, int]] = {}
    started = time.time()
    try:
        while proc.poll() is None and time.time() - started < 240 and len(answers) < len(DASHBOARD_APIS):
            line = next((l for l in list(lines) if l.startswith("Ray dashboard: http://")), None)
            if line is None:
                time.sleep(0.5)
                continue
            url = re.match(r"Ray dashboard: (http://[\d.]+:\d+)", line).group(1)
            source = re.search(r"paste the token from (.+?), also printed", line)
            assert source, line  # a local Ray >= 2.59 turns token authentication on: the line must say how in
            token = read_token(source.group(1))
            for path in DASHBOARD_APIS:
                if path in answers:
                    continue
                try:
                    bare = requests.get(url + path, timeout=10).status_code
                    with_token = requests.get(url + path, headers={"Authorization": f"Bearer {token}"},
                                              timeout=30).status_code
                except requests.RequestException:
                    continue
                if with_token == 200:
                    answers[path] = (bare, with_token)
            time.sleep(1)
        proc.wait(timeout=420)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(timeout=10)
    assert proc.returncode == 0, "".join(lines)[-3000:] + "".join(stderr)[-3000:]
    return {"out": "".join(lines), "err": "".join(stderr), "answers": answers,
            "experiment": workdir / "store" / "tracked"}


def test_dashboard_api_answers_with_the_printed_way_in(sweep) -> None:
    assert sweep["answers"] == {path: (401, 200) for path in DASHBOARD_APIS}


def test_console_shows_preparation_then_compact_trial_lines(sweep) -> None:
    out, err = sweep["out"], sweep["err"]
    assert err.index("Checking ") < err.index("Preparing task 'defr'") < err.index("synthetic HICO train2015") \
        < err.index("  ready (") < err.index("Starting a local Ray instance")  # notices and bars on stderr
    assert "Ray dashboard: http://" in out
    tables = [block for block in out.split("\n\n") if block.startswith("== ")]
    assert len(tables) >= 3
    without_clock = [re.sub(r" · [\d:]+ elapsed", "", table) for table in tables]
    assert all(a != b for a, b in zip(without_clock, without_clock[1:]))  # printed again only when a line changed
    header = tables[-1].splitlines()[1].split()
    assert header == ["trial", "status", "epoch", "ETA", "val.map", "best", "classifier.init", "loss.name",
                      "prompts.template", "optim.lr"]
    final = [line.split() for line in tables[-1].splitlines()[2:]]
    assert len(final) == 2 and all(row[1:3] == ["COMPLETED", "2/2"] for row in final)
    assert tables[-1].startswith("== 2/2 trials done (2 completed, 0 pruned, 0 error), 0 running · best val.map ")
    assert any(re.search(r" RUNNING +\d/2 +\d+:\d\d ", block) for block in tables)  # an ETA while running


def test_mlflow_holds_one_run_per_trial_with_epochs(sweep) -> None:
    import mlflow
    import pandas as pd

    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    experiment = sweep["experiment"]
    mlflow.set_tracking_uri(f"file://{experiment}/_mlruns")
    runs = mlflow.search_runs(experiment_names=["tracked"]).set_index("tags.mlflow.runName")
    results = pd.read_parquet(experiment / "results.parquet").set_index("trial_id")
    assert sorted(runs.index) == sorted(results.index)
    for trial_id, run in runs.iterrows():
        assert run["status"] == "FINISHED" and float(run["params.optim.lr"]) == results.loc[trial_id, "config.optim.lr"]
        history = mlflow.MlflowClient().get_metric_history(run["run_id"], "val.map")
        assert [m.step for m in history] == [1, 2]
        assert history[-1].value == pytest.approx(results.loc[trial_id, "last.val.map"])


def test_wandb_offline_files_hold_each_trial(sweep) -> None:
    import pandas as pd

    experiment = sweep["experiment"]
    results = pd.read_parquet(experiment / "results.parquet").set_index("trial_id")
    files = glob.glob(str(experiment / "*" / "wandb" / "offline-run-*" / "run-*.wandb"))
    runs = {run["id"]: run for run in map(read_run, map(Path, files))}
    assert sorted(runs) == sorted(results.index)
    for trial_id, run in runs.items():
        assert run["name"] == trial_id and run["group"] == "tracked"
        assert run["config"]["optim.lr"] == pytest.approx(results.loc[trial_id, "config.optim.lr"])
        maps = [(row["_step"], row["val.map"]) for row in run["history"]]
        assert [step for step, _ in maps] == [1, 2]
        assert maps[-1][1] == pytest.approx(results.loc[trial_id, "last.val.map"])


def test_tensorboard_event_files_hold_the_objective(sweep) -> None:
    import pandas as pd
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    experiment = sweep["experiment"]
    results = pd.read_parquet(experiment / "results.parquet").set_index("trial_id")
    events = sorted(glob.glob(str(experiment / "*" / "events.out.tfevents.*")))
    assert len(events) == 2
    seen = {}
    for path in events:
        accumulator = EventAccumulator(path)
        accumulator.Reload()
        scalars = accumulator.Scalars("ray/tune/val.map")
        epochs = accumulator.Scalars("ray/tune/epoch")
        assert [e.value for e in epochs] == [1, 2]
        seen[scalars[-1].value] = path
    assert sorted(seen) == pytest.approx(sorted(results["last.val.map"]), abs=1e-6)
