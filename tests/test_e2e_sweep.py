"""End to end on a real local Ray: `raysweep tune` → parquet → report; collect; 2 workers; --resume after a kill."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from support import run_cli_process

REPO = Path(__file__).resolve().parents[1]
SPACE = REPO / "search_spaces" / "defr.yaml"
pytestmark = pytest.mark.slow

# Tiny images, tiny model, few epochs: the real code path at toy scale.
TINY = ["data.synth.num_train=80", "data.synth.num_test=40", "data.synth.image_size=32", "data.image_size=32",
        "model.depth=1", "model.patch_size=8", "train.batch_size=16", "train.eval_batch_size=40",
        "scheduler.grace_period=1"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="module")
def finished(workdir: Path) -> tuple[Path, subprocess.CompletedProcess]:
    """One finished 3-trial sweep shared by the tests below."""
    proc = run_cli_process(["tune", str(SPACE), *TINY, "trials.num_samples=3", "train.epochs=2",
                    f"storage.cache_dir={workdir / 'cache'}", "--storage", str(workdir / "store"), "--name", "exp"],
                   cwd=workdir)
    return workdir / "store" / "exp", proc


def test_sweep_writes_parquet_table_and_dashboard_url(finished) -> None:
    experiment, proc = finished
    out = proc.stdout
    assert "Ray dashboard: http://127.0.0.1:" in out
    assert "| backbone init" in out and "| loss" in out and "Full" in out and "Few@1" in out
    parquet = experiment / "results.parquet"
    assert f"Results: {parquet}" in out
    frame = pd.read_parquet(parquet)
    assert len(frame) == 3 and frame["trial_id"].is_unique
    assert set(frame["status"]) == {"TERMINATED"}
    for column in ("experiment", "config.optim.lr", "config.classifier.init", "config.model.backbone", "last.val.map",
                   "last.test.map", "best_val.val.map", "best_val.test.map", "last.test.map_few1", "last.loss", "last.images_per_s", "epochs_done", "wall_time_s",
                   "resources.num_workers", "seed", "version.ray", "version.torch", "version.raysweep", "outcome"):
        assert column in frame.columns, column
    assert frame["experiment"].eq("exp").all()
    assert frame["config.data.image_size"].eq(32).all()
    assert frame["config.optim.lr"].between(3e-4, 3e-3).all()
    assert (frame["best_val.val.map"] >= frame["last.val.map"] - 1e-12).all()
    assert frame["last.test.map"].between(0, 1).all() and frame["last.val.map"].between(0, 1).all()
    assert (frame["selection"] == "val").all() and (frame["objective"] == "val.map").all()
    completed = frame[frame["outcome"] == "completed"]
    assert len(completed) >= 1 and completed["epochs_done"].eq(2).all()
    # Every trial's Train run lives under the experiment, named after the trial id.
    for trial_id in frame["trial_id"]:
        assert (experiment / "_train" / trial_id).is_dir()


def test_new_experiment_never_overwrites(finished, workdir: Path) -> None:
    experiment, _ = finished
    before = (experiment / "results.parquet").read_bytes()
    proc = run_cli_process(["tune", str(SPACE), *TINY, "--storage", str(workdir / "store"), "--name", "exp"], cwd=workdir,
                   check=False)
    assert proc.returncode == 2
    assert "already exists" in proc.stderr and "--resume" in proc.stderr and "Traceback" not in proc.stderr
    assert (experiment / "results.parquet").read_bytes() == before


def test_collect_is_idempotent_and_report_renders(finished, workdir: Path) -> None:
    experiment, _ = finished
    target = workdir / "again.parquet"
    first = run_cli_process(["collect", str(experiment), "-o", str(target)], cwd=workdir)
    assert "3 trials" in first.stdout
    a = pd.read_parquet(target)
    run_cli_process(["collect", str(experiment), "-o", str(target)], cwd=workdir)
    b = pd.read_parquet(target)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(a, pd.read_parquet(experiment / "results.parquet"))
    for fmt, marker in (("markdown", "| backbone init"), ("latex", r"\begin{tabular}"), ("csv", "Full mean")):
        out = run_cli_process(["report", str(target), "--format", fmt, "--outcome", "all"], cwd=workdir).stdout
        assert marker in out
    bad = run_cli_process(["report", str(target), "--format", "html"], cwd=workdir, check=False)
    assert bad.returncode == 2 and "html" in bad.stderr


def test_two_workers_ddp(workdir: Path) -> None:
    proc = run_cli_process(["tune", str(SPACE), *TINY, "trials.num_samples=1", "train.epochs=2", "resources.num_workers=2",
                    "scheduler.type=none", f"storage.cache_dir={workdir / 'cache'}", "--storage", str(workdir / "store"),
                    "--name", "ddp"], cwd=workdir)
    frame = pd.read_parquet(workdir / "store" / "ddp" / "results.parquet")
    assert len(frame) == 1
    row = frame.iloc[0]
    assert row["status"] == "TERMINATED" and row["epochs_done"] == 2 and row["resources.num_workers"] == 2
    assert 0 <= row["last.test.map"] <= 1 and 0 <= row["last.val.map"] <= 1
    assert "2 worker(s) each" in proc.stdout


def _results_with_epoch(experiment: Path) -> int:
    count = 0
    for result in experiment.glob("*/result.json"):
        lines = [json.loads(x) for x in result.read_text().splitlines() if x.strip()]
        count += sum(1 for x in lines if x.get("epoch"))
    return count


def test_per_trial_time_limit_stops_a_long_trial(workdir: Path) -> None:
    # also: a local instance without the dashboard process (ray installed without its [default] extra)
    proc = run_cli_process(["tune", str(SPACE), *TINY, "trials.num_samples=1", "train.epochs=200", "trials.time_limit_s=8",
                    "scheduler.type=none", "ray.dashboard=false", f"storage.cache_dir={workdir / 'cache'}",
                    "--storage", str(workdir / "store"), "--name", "limited"], cwd=workdir)
    row = pd.read_parquet(workdir / "store" / "limited" / "results.parquet").iloc[0]
    assert row["status"] == "TERMINATED" and row["outcome"] == "pruned"
    assert 1 <= row["epochs_done"] < 200
    assert "Ray dashboard" not in proc.stdout


def test_collect_and_report_read_a_storage_uri(finished, workdir: Path) -> None:
    experiment, _ = finished
    uri = f"file://{experiment}"
    target = f"file://{workdir / 'via-uri.parquet'}"
    out = run_cli_process(["collect", uri, "-o", target], cwd=workdir).stdout
    assert "3 trials" in out
    pd.testing.assert_frame_equal(pd.read_parquet(workdir / "via-uri.parquet"),
                                  pd.read_parquet(experiment / "results.parquet"))
    assert "| backbone init" in run_cli_process(["report", uri, "--outcome", "all"], cwd=workdir).stdout
