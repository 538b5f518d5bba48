"""Failures on a real local Ray: a killed training worker, a NaN loss, an unwritable storage path."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from raysweep.errors import UserError
from raysweep.spec import load_sweep
from raysweep.sweep.runner import run_sweep

REPO = Path(__file__).resolve().parents[1]
SPACE = REPO / "search_spaces" / "defr.yaml"
pytestmark = pytest.mark.slow

FIXED = ["data.synth.num_train=80", "data.synth.num_test=40", "data.synth.image_size=32", "data.image_size=32",
         "model.depth=1", "model.patch_size=8", "train.batch_size=16", "train.eval_batch_size=40",
         "classifier.init=language", "loss.name=lse_sign", "prompts.template=default", "optim.lr=0.001",
         "trials.num_samples=1", "scheduler.type=none", "train.epochs=4"]


def sweep_with(cache: Path, *extra: str):
    return load_sweep(SPACE, [*FIXED, f"storage.cache_dir={cache}", *extra])


def _train_worker_pids() -> list[int]:
    """PIDs of the live Train workers, from the GCS actor table (no dashboard round trip)."""
    return [a["Pid"] for a in _live_train_workers() if a["Pid"]]


def _live_train_workers() -> list[dict]:
    import ray
    from ray._private.state import actors

    if not ray.is_initialized():
        return []
    try:
        table = actors()
    except Exception:  # noqa: BLE001 - the cluster may be between shutdown and start
        return []
    return [a for a in table.values() if a["ActorClassName"] == "RayTrainWorker" and a["State"] == "ALIVE"]


def _checkpoints_committed(experiment: Path) -> bool:
    """Train has registered a checkpoint of the run (Tune's result.json is flushed too lazily to tell)."""
    return any(run.joinpath("checkpoint_manager_snapshot.json").is_file() and any(run.glob("checkpoint_*"))
               for run in experiment.glob("_train/*"))


def test_killed_worker_resumes_from_checkpoint_and_matches_an_unbroken_run(tmp_path: Path) -> None:
    cache, store = tmp_path / "cache", tmp_path / "store"
    t0 = time.time()
    run_sweep(sweep_with(cache, "train.epochs=30"), name="unbroken", storage_path=str(store))
    unbroken_s = time.time() - t0
    reference = pd.read_parquet(store / "unbroken" / "results.parquet").iloc[0]

    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.update(
        result=run_sweep(sweep_with(cache, "train.epochs=30"), name="killed", storage_path=str(store))), daemon=True)
    t0 = time.time()
    thread.start()
    killed_pid = None
    pids: list[int] = []
    deadline = time.time() + 300
    while time.time() < deadline and thread.is_alive():
        # Look the worker up as soon as it exists: a 30-epoch run of this size can end within a few polls of the
        # actor table on a loaded machine, so waiting for epoch 2 before the first look-up can miss it.
        pids = pids or _train_worker_pids()
        if pids and _checkpoints_committed(store / "killed"):
            killed_pid = pids[0]
            os.kill(killed_pid, signal.SIGKILL)  # a worker our own Ray instance started for this test
            break
        time.sleep(0.05)
    thread.join(timeout=600)
    killed_s = time.time() - t0
    assert killed_pid is not None, "never saw a training worker to kill"
    assert "result" in outcome, "the sweep did not finish"
    row = pd.read_parquet(store / "killed" / "results.parquet").iloc[0]
    assert row["status"] == "TERMINATED" and row["epochs_done"] == 30
    # Same seed, restored RNG and data order: the resumed run ends where the unbroken one does.
    assert row["last.loss"] == pytest.approx(reference["last.loss"], rel=1e-5)
    assert row["last.val.map"] == pytest.approx(reference["last.val.map"], abs=1e-6)
    assert row["last.test.map"] == pytest.approx(reference["last.test.map"], abs=1e-6)
    print(f"worker kill: unbroken {unbroken_s:.0f} s, with a kill {killed_s:.0f} s, lost {killed_s - unbroken_s:.0f} s")


def test_nan_loss_ends_the_trial_with_error_and_the_sweep_goes_on(tmp_path: Path) -> None:
    # A linear head with log_scale 100 multiplies the features by e^100 = inf in float32: the loss is NaN at once.
    # The other grid point (a sane scale) must still complete.
    space = yaml.safe_load(SPACE.read_text())
    space["search"] = {"classifier.log_scale": {"distribution": "grid", "values": [100.0, 2.3]}}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    sweep = load_sweep(path, FIXED + [f"storage.cache_dir={tmp_path / 'cache'}", "failure.trial_retries=0",
                                      "train.epochs=2", "classifier.head=linear", "classifier.init=rand"])
    run_sweep(sweep, name="nan", storage_path=str(tmp_path / "store"))
    frame = pd.read_parquet(tmp_path / "store" / "nan" / "results.parquet").set_index("config.classifier.log_scale")
    bad, good = frame.loc[100.0], frame.loc[2.3]
    assert bad["status"] == "ERROR" and bad["outcome"] == "error"
    assert "TrialFailure" in bad["error"] and "loss became nan at epoch 1, iteration 1" in bad["error"]
    assert good["status"] == "TERMINATED" and good["epochs_done"] == 2


def test_unwritable_storage_fails_before_any_trial(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(UserError, match="not writable"):
        run_sweep(sweep_with(tmp_path / "cache"), name="x", storage_path=str(blocker / "store"))
    assert blocker.read_text() == "x"


def test_removed_node_reschedules_its_trial_and_the_sweep_completes(tmp_path: Path, monkeypatch) -> None:
    from ray.cluster_utils import Cluster

    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # test-only: every Ray socket on 127.0.0.1
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "resources": {"sweep_driver": 2}})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    outcome: dict = {}
    try:
        sweep = sweep_with(tmp_path / "cache", "train.epochs=30")
        thread = threading.Thread(target=lambda: outcome.update(result=run_sweep(
            sweep, name="node", storage_path=str(tmp_path / "store"), address=cluster.address)), daemon=True)
        thread.start()
        removed = None
        deadline = time.time() + 300
        while time.time() < deadline and thread.is_alive() and removed is None:
            if _checkpoints_committed(tmp_path / "store" / "node"):
                worker_nodes = _train_worker_nodes()
                for node in nodes:
                    if node.node_id in worker_nodes:
                        cluster.remove_node(node)  # from the main thread, as cluster_utils requires
                        removed = node
                        break
            time.sleep(0.2)
        thread.join(timeout=600)
    finally:
        import ray

        ray.shutdown()
        cluster.shutdown()
    assert removed is not None, "never saw the trial's worker node"
    assert "result" in outcome, "the sweep did not finish"
    row = pd.read_parquet(tmp_path / "store" / "node" / "results.parquet").iloc[0]
    assert row["status"] == "TERMINATED" and row["epochs_done"] == 30


def _train_worker_nodes() -> set[str]:
    """Node ids of the live Train workers."""
    return {a["Address"]["NodeID"] for a in _live_train_workers()}
