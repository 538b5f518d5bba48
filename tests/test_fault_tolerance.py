"""Failures on a real local Ray: a killed training worker, a NaN loss, an unwritable storage path, a lost node, and
the faults of a whole sweep (SIGKILL or Ctrl-C of `raysweep tune` then --resume, two sweeps on one folder, the
folder deleted mid-run, corrupt checkpoints, a start that crashed before its first trial), each compared epoch by
epoch with one unbroken run of the same trials."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from raysweep.errors import UserError
from raysweep.results.collect import collect_experiment
from raysweep.spec import load_sweep
from raysweep.sweep.runner import SweepOutcome, run_sweep

REPO = Path(__file__).resolve().parents[1]
SPACE = REPO / "search_spaces" / "defr.yaml"
pytestmark = pytest.mark.slow

FIXED = ["data.synth.num_train=80", "data.synth.num_test=40", "data.synth.image_size=32", "data.image_size=32",
         "model.depth=1", "model.patch_size=8", "train.batch_size=16", "train.eval_batch_size=40",
         "classifier.init=language", "loss.name=lse_sign", "prompts.template=default", "optim.lr=0.001",
         "trials.num_samples=1", "scheduler.type=none", "train.epochs=4"]


def sweep_and_collect(sweep, **kwargs) -> SweepOutcome:
    """What `raysweep tune` does: the sweep, then the collection into its parquet."""
    outcome = run_sweep(sweep, **kwargs)
    collect_experiment(outcome.experiment_dir, outcome.parquet)
    return outcome


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


def _actor_classes() -> set[str]:
    """Every actor class the local instance has run so far (dead ones stay in the GCS table)."""
    from ray._private.state import actors

    return {a["ActorClassName"] for a in actors().values()}


def _checkpoints_committed(experiment: Path) -> bool:
    """Train has registered a checkpoint of the run (Tune's result.json is flushed too lazily to tell)."""
    return any(run.joinpath("checkpoint_manager_snapshot.json").is_file() and any(run.glob("checkpoint_*"))
               for run in experiment.glob("_train/*"))


def test_killed_worker_resumes_from_checkpoint_and_matches_an_unbroken_run(tmp_path: Path) -> None:
    cache, store = tmp_path / "cache", tmp_path / "store"
    t0 = time.time()
    sweep_and_collect(sweep_with(cache, "train.epochs=30"), name="unbroken", storage_path=str(store))
    unbroken_s = time.time() - t0
    reference = pd.read_parquet(store / "unbroken" / "results.parquet").iloc[0]

    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.update(
        result=sweep_and_collect(sweep_with(cache, "train.epochs=30"), name="killed", storage_path=str(store))), daemon=True)
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
            running = _actor_classes()
            killed_pid = pids[0]
            os.kill(killed_pid, signal.SIGKILL)  # a worker our own Ray instance started for this test
            break
        time.sleep(0.05)
    thread.join(timeout=600)
    killed_s = time.time() - t0
    assert killed_pid is not None, "never saw a training worker to kill"
    # A trial's processes past its first checkpoint: no Ray Data manager (no datasets), no preemption watcher (a
    # local instance has no node to lose); each would be a process per trial (torch_backend.py, ray_session.py).
    assert {"TrainController", "RayTrainWorker", "SynchronizationActor", "PlacementGroupCleaner"} <= running, running
    assert not running & {"DatasetManager", "PreemptionWatcher"}, running
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
    sweep_and_collect(sweep, name="nan", storage_path=str(tmp_path / "store"))
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
        thread = threading.Thread(target=lambda: outcome.update(result=sweep_and_collect(
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


# ---------------------------------------------------------------------------------------------------------------
# Faults of a whole sweep, driven through the real `raysweep tune` process. Every sweep below runs the same two
# trials (a grid over seeds, no scheduler), so its collected history must equal the unbroken reference's epoch by
# epoch: same epochs, none twice, same losses and mAPs (training on CPU is deterministic given the seed, and a
# checkpoint restores model, optimiser, schedule and RNG state).

SWEEP_EPOCHS = 6
SWEEP_ARGS = [*FIXED, f"train.epochs={SWEEP_EPOCHS}"]
RAY_EXIT_GRACE_S = 30.0  # see docs/fault_tolerance.md: what Ray cleans up after its driver dies, and when


def _grid_space(folder: Path) -> Path:
    space = yaml.safe_load(SPACE.read_text())
    space["search"] = {"train.seed": {"distribution": "grid", "values": [0, 1]}}
    path = folder / "seeds.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


class SweepProcess:
    """`raysweep tune` as its own process group, with every descendant it ever had recorded (Ray's GCS, raylet,
    workers), so the test can tell whether anything of this sweep outlives it, without looking processes up by
    name."""

    def __init__(self, args: list[str], cwd: Path, log_name: str) -> None:
        import subprocess
        import sys

        self.log = cwd / log_name
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_DEDUP_LOGS": "0"}
        self.proc = subprocess.Popen([sys.executable, "-m", "raysweep.cli", *args], cwd=cwd, env=env,
                                     stdout=self.log.open("w"), stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)
        self.descendants: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._record, daemon=True)
        self._thread.start()

    def _record(self) -> None:
        while not self._stop.wait(0.2):
            self.descendants.update(_descendants(self.proc.pid))

    def wait_for(self, condition, what: str, timeout: float = 420.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if condition():
                return
            assert self.proc.poll() is None, f"raysweep ended before {what}: {self.output()}"
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}: {self.output()}")

    def finish(self, timeout: float = 600.0) -> tuple[int, str]:
        _, err = self.proc.communicate(timeout=timeout)
        self._stop.set()
        return self.proc.returncode, err

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)  # the raysweep process this test started, nothing else
        self.proc.wait(timeout=60)
        self._stop.set()

    def output(self) -> str:
        return self.log.read_text()[-3000:]

    def survivors_after(self, grace_s: float) -> list[int]:
        """This sweep's processes still alive `grace_s` after it ended (polled; returns as soon as none is left)."""
        deadline = time.time() + grace_s
        while True:
            alive = [pid for pid in self.descendants if _running(pid)]
            if not alive or time.time() > deadline:
                return alive
            time.sleep(0.5)

    def end_survivors(self) -> None:
        for pid in self.descendants:  # only the processes this sweep started
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _proc_stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _running(pid: int) -> bool:
    stat = _proc_stat(pid)
    return stat is not None and stat[0] != "Z"


def _descendants(root: int) -> set[int]:
    """Every process below `root` now (from /proc's parent links)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _proc_stat(int(entry.name))) is not None:
            children.setdefault(int(stat[1]), []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _checkpoints(experiment: Path) -> dict[str, list[Path]]:
    return {run.name: sorted(c for c in run.glob("checkpoint_*") if c.is_dir())  # not checkpoint_manager_snapshot
            for run in experiment.glob("_train/*") if run.is_dir()}


def _every_trial_has(experiment: Path, n: int, trials: int = 2) -> bool:
    found = _checkpoints(experiment)
    return len(found) >= trials and all(len(c) >= n for c in found.values())


def _histories(experiment: Path) -> dict[int, dict]:
    """Seed → {"status", "epochs": [...], "rows": merged history}, as raysweep collect sees them."""
    from raysweep.results.collect import trial_rows

    rows, _ = trial_rows(str(experiment))
    out = {}
    for trial in rows:
        seed = int(trial["sampled"]["train.seed"])
        epochs = [r["epoch"] for r in trial["history"] if "epoch" in r]
        out[seed] = {"status": trial["status"], "epochs": epochs, "rows": trial["history"], "error": trial["error"]}
    return out


def _assert_matches_reference(got: dict, reference: dict, epochs: range | None = None) -> None:
    """Same epochs (none twice), same loss and mAP per epoch as the unbroken run."""
    expected = list(epochs or range(1, SWEEP_EPOCHS + 1))
    assert got["epochs"] == expected, f"epochs {got['epochs']} != {expected}"
    ref_by_epoch = {r["epoch"]: r for r in reference["rows"]}
    for row in got["rows"]:
        if "epoch" not in row:
            continue
        ref = ref_by_epoch[row["epoch"]]
        assert row["loss"] == pytest.approx(ref["loss"], rel=1e-5), f"epoch {row['epoch']}"
        for metric in ("val.map", "test.map"):
            if metric in ref:
                assert row[metric] == pytest.approx(ref[metric], abs=1e-6), f"{metric}, epoch {row['epoch']}"


def _assert_parquet_matches(experiment: Path, reference_frame: pd.DataFrame) -> pd.DataFrame:
    frame = pd.read_parquet(experiment / "results.parquet").set_index("seed").sort_index()
    ref = reference_frame.set_index("seed").sort_index()
    assert list(frame.index) == list(ref.index) == [0, 1]
    assert (frame["outcome"] == "completed").all() and (frame["epochs_done"] == SWEEP_EPOCHS).all()
    for column in ("last.loss", "last.val.map", "last.test.map", "best_val.val.map", "best_val.test.map"):
        assert frame[column].to_numpy() == pytest.approx(ref[column].to_numpy(), rel=1e-5, abs=1e-6), column
    assert (frame["wall_time_s"] > 0).all()
    return frame


@pytest.fixture(scope="module")
def fault_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("faults")
    _grid_space(folder)
    return folder


def _tune_args(folder: Path, name: str, *extra: str) -> list[str]:
    return ["tune", str(folder / "seeds.yaml"), *SWEEP_ARGS, f"storage.cache_dir={folder / 'cache'}",
            "--storage", str(folder / "store"), "--name", name, *extra]


@pytest.fixture(scope="module")
def reference(fault_dir: Path) -> dict:
    """The unbroken run every fault is compared with. While it runs, a second sweep on its folder (a plain start
    and a --resume, a second apart) must be refused at once: one sweep owns a folder."""
    experiment = fault_dir / "store" / "reference"
    sweep = SweepProcess(_tune_args(fault_dir, "reference"), fault_dir, "reference.log")
    sweep.wait_for(lambda: (experiment / "raysweep.lock").is_file(), "the experiment lock")
    from support import run_cli_process

    t0 = time.time()
    second = run_cli_process(_tune_args(fault_dir, "reference", "--resume"), cwd=fault_dir, check=False)
    time.sleep(1)
    third = run_cli_process(_tune_args(fault_dir, "reference"), cwd=fault_dir, check=False)
    refused_s = time.time() - t0
    code, err = sweep.finish()
    assert code == 0, f"{err}\n{sweep.output()}"
    return {"experiment": experiment, "histories": _histories(experiment), "second": second, "third": third,
            "refused_s": refused_s, "frame": pd.read_parquet(experiment / "results.parquet"),
            "survivors": sweep.survivors_after(RAY_EXIT_GRACE_S)}


def test_a_second_sweep_on_a_running_experiment_is_refused(reference: dict) -> None:
    for proc in (reference["second"], reference["third"]):
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "is in use by raysweep pid" in lines[0] and "Traceback" not in proc.stderr
    assert "Ray dashboard" not in reference["second"].stdout  # refused before Ray started
    # The owner was not disturbed: every epoch of both trials, once, and nothing left running.
    for seed in (0, 1):
        assert reference["histories"][seed]["epochs"] == list(range(1, SWEEP_EPOCHS + 1))
    assert reference["survivors"] == []
    assert not (reference["experiment"] / "raysweep.lock").exists()


def test_sigkill_of_the_sweep_then_resume_keeps_every_epoch(fault_dir: Path, reference: dict) -> None:
    experiment = fault_dir / "store" / "sigkill"
    sweep = SweepProcess(_tune_args(fault_dir, "sigkill"), fault_dir, "sigkill.log")
    sweep.wait_for(lambda: _every_trial_has(experiment, 2), "two checkpoints of each trial")
    killed_at = time.time()
    sweep.kill()
    survivors = sweep.survivors_after(RAY_EXIT_GRACE_S)
    gone_s = time.time() - killed_at
    sweep.end_survivors()
    assert survivors == [], f"{len(survivors)} processes of the killed sweep alive {RAY_EXIT_GRACE_S:.0f} s later"

    from support import run_cli_process

    t0 = time.time()
    resumed = run_cli_process(_tune_args(fault_dir, "sigkill", "--resume"), cwd=fault_dir)
    assert "Results:" in resumed.stdout
    histories = _histories(experiment)
    for seed in (0, 1):
        assert histories[seed]["status"] == "TERMINATED"
        _assert_matches_reference(histories[seed], reference["histories"][seed])
    _assert_parquet_matches(experiment, reference["frame"])
    print(f"SIGKILL: the sweep's processes gone {gone_s:.0f} s after the kill; resume took {time.time() - t0:.0f} s")


def test_ctrl_c_exits_130_with_the_resume_command_and_resume_keeps_every_epoch(fault_dir: Path,
                                                                              reference: dict) -> None:
    import shlex

    experiment = fault_dir / "store" / "ctrl-c"
    sweep = SweepProcess(_tune_args(fault_dir, "ctrl-c"), fault_dir, "ctrl-c.log")
    sweep.wait_for(lambda: _every_trial_has(experiment, 2), "two checkpoints of each trial")
    os.kill(sweep.proc.pid, signal.SIGINT)  # what Ctrl-C sends to the foreground process
    code, err = sweep.finish(timeout=180)
    out = sweep.log.read_text()
    assert code == 130, err
    expected = (f"raysweep tune {shlex.quote(str(fault_dir / 'seeds.yaml'))} --resume --name ctrl-c "
                f"--storage {shlex.quote(str(fault_dir / 'store'))}")
    assert expected in err
    assert "Tuner.restore" not in out + err and "Results:" not in out and "Traceback" not in err
    partial = pd.read_parquet(experiment / "results.parquet")  # what was done when interrupted
    assert len(partial) == 2 and (partial["epochs_done"] >= 1).all()
    assert sweep.survivors_after(RAY_EXIT_GRACE_S) == []

    from support import run_cli_process

    args = shlex.split(expected)[1:]  # the printed command, as the user would paste it ...
    resumed = run_cli_process([*args[:2], *SWEEP_ARGS, f"storage.cache_dir={fault_dir / 'cache'}", *args[2:]],
                              cwd=fault_dir)  # ... with the same overrides
    assert "Results:" in resumed.stdout
    histories = _histories(experiment)
    for seed in (0, 1):
        _assert_matches_reference(histories[seed], reference["histories"][seed])
    _assert_parquet_matches(experiment, reference["frame"])


def test_storage_removed_mid_run_stops_the_sweep_and_keeps_what_exists(fault_dir: Path, reference: dict) -> None:
    import shutil

    experiment = fault_dir / "store" / "vanish"
    sweep = SweepProcess(_tune_args(fault_dir, "vanish"), fault_dir, "vanish.log")
    sweep.wait_for(lambda: _every_trial_has(experiment, 2), "two checkpoints of each trial")
    t0 = time.time()
    while experiment.exists() and time.time() - t0 < 10:  # files appear while it is deleted: repeat
        shutil.rmtree(experiment, ignore_errors=True)
    code, err = sweep.finish(timeout=180)
    stopped_s = time.time() - t0
    assert code == 1, err
    lines = [line for line in err.splitlines() if line.startswith("raysweep:")]
    assert any("storage lost" in line and str(experiment) in line for line in lines), err
    assert "Traceback" not in err
    assert sweep.survivors_after(RAY_EXIT_GRACE_S) == []
    # What this process still held is written back and collectable; every epoch present is the reference's.
    histories = _histories(experiment)
    assert set(histories) == {0, 1}
    for seed, got in histories.items():
        done = len(got["epochs"])
        assert done >= 1
        _assert_matches_reference(got, reference["histories"][seed], range(got["epochs"][0], got["epochs"][0] + done))
    print(f"storage removed: sweep stopped {stopped_s:.0f} s later")


def _latest_checkpoint(run: Path) -> tuple[Path, int] | None:
    """The checkpoint Train would resume `run` from, and its epoch (from Train's own snapshot)."""
    snapshot = run / "checkpoint_manager_snapshot.json"
    try:
        latest = json.loads(snapshot.read_text())["latest_checkpoint_result"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return run / latest["checkpoint_dir_name"], int(latest["metrics"]["epoch"])


def _committed(run: Path) -> list[Path]:
    """The checkpoint folders of `run` up to the latest one Train has committed, oldest first."""
    latest = _latest_checkpoint(run)
    return [c for c in sorted(run.glob("checkpoint_*")) if c.is_dir() and c.name <= latest[0].name] if latest else []


def _committed_counts(experiment: Path, trials: int = 0) -> list[int]:
    """Committed checkpoints per trial; empty until `trials` runs exist."""
    runs = [run for run in experiment.glob("_train/*") if run.is_dir()]
    return [len(_committed(run)) for run in runs] if len(runs) >= trials else []


def test_corrupt_checkpoints_fall_back_or_end_the_trial_with_its_history(fault_dir: Path, reference: dict) -> None:
    experiment = fault_dir / "store" / "corrupt"
    sweep = SweepProcess(_tune_args(fault_dir, "corrupt"), fault_dir, "corrupt.log")
    sweep.wait_for(lambda: _committed_counts(experiment, 2) and min(_committed_counts(experiment)) >= 1
                   and max(_committed_counts(experiment)) >= 2, "committed checkpoints of both trials")
    sweep.kill()
    sweep.survivors_after(RAY_EXIT_GRACE_S)
    sweep.end_survivors()
    seed_of = {p.parent.name.split("_")[2]: int(json.loads(p.read_text())["train.seed"])
               for p in experiment.glob("*/params.json")}
    runs = {trial_id: experiment / "_train" / trial_id for trial_id in seed_of}
    latest = {trial_id: _latest_checkpoint(run) for trial_id, run in runs.items()}
    unfinished = [t for t, info in latest.items() if info is not None and info[1] < SWEEP_EPOCHS]
    # Only checkpoints Train had committed count: a folder written after the last commit (the kill fell between the
    # upload and Train's snapshot) is not Train's to resume from.
    committed = {t: _committed(runs[t]) for t in unfinished}
    # One trial loses only its newest checkpoint (it must have an older one to fall back to), the other all.
    fallback = next((t for t in unfinished if len(committed[t]) >= 2), None)
    broken = next((t for t in unfinished if t != fallback), None)
    if fallback is None or broken is None:
        pytest.skip(f"the kill came too late for two unfinished trials with checkpoints: {latest}")
    newest = latest[fallback][0]
    (newest / "state.pt").write_bytes(b"\0garbage")
    damaged = _checkpoints(experiment)[broken]
    for folder in damaged:
        (folder / "state.pt").write_bytes(b"")

    from support import run_cli_process

    run_cli_process(_tune_args(fault_dir, "corrupt", "--resume"), cwd=fault_dir)
    histories = _histories(experiment)
    good, bad = histories[seed_of[fallback]], histories[seed_of[broken]]
    _assert_matches_reference(good, reference["histories"][seed_of[fallback]])
    warnings = [r["resume_warning"] for r in good["rows"] if r.get("resume_warning")]
    assert warnings and str(newest / "state.pt") in warnings[0]

    assert bad["status"] == "ERROR"
    assert bad["error"].startswith("TrialFailure: no readable checkpoint to resume from"), bad["error"]
    for folder in committed[broken]:  # every checkpoint Train had committed is tried and named, nothing cut off
        assert str(folder / "state.pt") in bad["error"]
    assert bad["epochs"], "the epochs before the damage are kept"
    _assert_matches_reference(bad, reference["histories"][seed_of[broken]], range(1, len(bad["epochs"]) + 1))
    row = pd.read_parquet(experiment / "results.parquet").set_index("seed").loc[seed_of[broken]]
    assert row["outcome"] == "error" and row["epochs_done"] == len(bad["epochs"])


def test_a_start_that_crashed_before_its_first_trial_can_be_started_again(fault_dir: Path, reference: dict) -> None:
    from raysweep.sweep.sessions import has_started_trials

    experiment = fault_dir / "store" / "crashed"
    sweep = SweepProcess(_tune_args(fault_dir, "crashed"), fault_dir, "crashed.log")
    sweep.wait_for(lambda: (experiment / "raysweep_space.yaml").is_file(), "the space copy", timeout=300)
    sweep.kill()  # Ray is up and the space copy written, but no trial has started: a crash inside Tune
    sweep.survivors_after(RAY_EXIT_GRACE_S)
    sweep.end_survivors()
    if (experiment / "raysweep_meta.json").exists() or has_started_trials(str(experiment)):
        pytest.skip("the first trial started before the kill on this machine; nothing to test")

    from support import run_cli_process

    again = run_cli_process(_tune_args(fault_dir, "crashed"), cwd=fault_dir)  # no --resume needed
    assert "never started a trial" in again.stderr
    histories = _histories(experiment)
    for seed in (0, 1):
        _assert_matches_reference(histories[seed], reference["histories"][seed])
    _assert_parquet_matches(experiment, reference["frame"])
