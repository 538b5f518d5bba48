"""Sweep scheduling at cluster scale, simulated on one machine: `ray.cluster_utils.Cluster` with virtual GPUs.

    flock /tmp/raysweep-ray.lock env PYTHONPATH=$PWD python benchmarks/bench_cluster_scale.py     # ~6 min, 2 cores

A head node (the only one with `sweep_driver` slots, as in cluster.yaml) and `--nodes` GPU nodes with `num_gpus=8`
each (no GPU exists: Ray only counts them). Trials are driven the way `raysweep tune` drives them: a Ray Tune `Tuner`
with raysweep's `EpochAwareOptunaSearch` over `search_spaces/defr.yaml`'s space, ASHA on `epoch`,
`max_concurrent_trials` = GPUs / GPUs per trial, one driver per trial holding `{"CPU": 0, "sweep_driver": 1}`.

Each simulated driver does what a Train V2 trial does to the cluster, without the processes: it creates the worker
placement group (one `{"GPU": 1}` bundle per worker, the sweep's placement strategy), waits for it, reports an
objective per epoch (sleeps instead of training) and removes the group; a trial that ASHA stops has its group removed
by a Tune callback, as Train's placement-group cleaner does. A full `TorchTrainer` per trial (driver + controller +
worker processes) is measured separately on a few trials (`--torch-trials`): 200 of them do not fit 2 cores.

Measured in one run, per configuration (1-GPU and 8-GPU trials): trials started per minute, freed slot -> next trial
holding its GPUs, the fraction of virtual GPUs held while trials are queued, placement-group churn, head-node memory
(GCS + raylet + this driver) per trial and per result, `raysweep collect` on the 200-trial experiment.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
SPACE = REPO / "search_spaces" / "defr.yaml"
DRIVER_RESOURCE = "sweep_driver"  # raysweep.sweep.driver.DRIVER_RESOURCE (not imported: that module imports Ray)


# ---------------------------------------------------------------- analysis (pure; tests/test_bench_cluster_scale.py)

def busy_fraction(intervals: Sequence[tuple[float, float, int]], capacity: int, start: float, end: float) -> float:
    """Share of `capacity` GPU-seconds in [start, end] covered by (held_from, held_until, gpus) intervals."""
    if end <= start or capacity <= 0:
        return float("nan")
    held = sum(gpus * max(0.0, min(until, end) - max(since, start)) for since, until, gpus in intervals)
    return held / (capacity * (end - start))


def slot_gaps(freed: Sequence[float], started: Sequence[float], concurrency: int) -> list[float]:
    """Freed slot -> next trial running, matching slots first-in first-out: the k-th freed slot is taken by the
    (concurrency + k)-th trial to start (the first `concurrency` trials took the empty cluster)."""
    freed, started = sorted(freed), sorted(started)
    later = started[concurrency:]
    return [s - f for f, s in zip(freed, later, strict=False)]


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys on xs (nan with fewer than 2 distinct xs)."""
    if len(xs) < 2 or len(set(xs)) < 2:
        return float("nan")
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def quantiles(values: Sequence[float]) -> str:
    """`median / p90 / max` in seconds (or `-`)."""
    if not values:
        return "-"
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]
    return f"{statistics.median(ordered):.2f} / {p90:.2f} / {ordered[-1]:.2f} s"


# ---------------------------------------------------------------- process memory (/proc, this machine)

def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def children(pid: int) -> list[int]:
    """Direct children of `pid` (Ray's worker processes are children of their raylet)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return found


class HeadMemory:
    """Samples the head's GCS, raylet, this driver, and the head raylet's worker processes every `period` s."""

    def __init__(self, gcs: int, raylet: int, counters: Progress, period: float = 1.0) -> None:
        self.gcs, self.raylet, self.counters, self.period = gcs, raylet, counters, period
        self.samples: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> dict[str, float]:
        workers = sum(rss_mb(p) for p in children(self.raylet))
        row = {"t": time.time(), "gcs": rss_mb(self.gcs), "raylet": rss_mb(self.raylet), "driver": rss_mb(os.getpid()),
               "head_workers": workers, "trials": self.counters.done, "results": self.counters.results}
        row["head"] = row["gcs"] + row["raylet"] + row["driver"]
        return row

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.sample())
            self._stop.wait(self.period)

    def __enter__(self) -> HeadMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(self.sample())


# ---------------------------------------------------------------- the simulated trial and its bookkeeping

class Progress:
    done = 0
    results = 0


def simulated_driver(settings: dict[str, Any]):
    """A trial driver that holds the cluster like a Train V2 trial: worker placement group, one report per epoch."""

    def raysweep_trial(config: dict[str, Any]) -> None:
        from ray import tune
        from ray.util.placement_group import placement_group, remove_placement_group

        trial_id = tune.get_context().get_trial_id()
        entered = time.time()
        group = placement_group([{"GPU": 1.0}] * settings["gpus"], strategy=settings["strategy"],
                                name=f"sim-{trial_id}")
        import ray

        ray.get(group.ready())
        ready = time.time()
        lr = float(config.get("optim.lr", 1e-3))
        quality = 0.3 - 0.1 * abs(math.log10(lr) + 3.0) + (0.05 if config.get("loss.name") == "lse_sign" else 0.0)
        try:
            for epoch in range(1, settings["epochs"] + 1):
                time.sleep(settings["epoch_s"])
                tune.report({"epoch": epoch, "epochs_total": settings["epochs"], "evaluated": True,
                             settings["metric"]: quality * epoch / settings["epochs"],
                             "sim_entered": entered, "sim_ready": ready})
        finally:
            started = time.time()
            remove_placement_group(group)
            with open(settings["events"], "a") as events:
                events.write(json.dumps({"trial_id": trial_id, "removed": time.time(),
                                         "remove_call_s": time.time() - started}) + "\n")

    return raysweep_trial


def trial_log_callback(progress: Progress):
    from ray.tune import Callback

    class TrialLog(Callback):
        """Trial start/result/end times as Tune's loop sees them; removes a stopped trial's worker group."""

        def __init__(self) -> None:
            self.trials: dict[str, dict[str, float]] = {}

        def on_trial_start(self, iteration, trials, trial, **info) -> None:
            self.trials.setdefault(trial.trial_id, {})["launched"] = time.time()

        def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
            progress.results += 1
            row = self.trials.setdefault(trial.trial_id, {})
            row.setdefault("entered", result.get("sim_entered", float("nan")))
            row.setdefault("ready", result.get("sim_ready", float("nan")))

        def _end(self, trial) -> None:
            from ray.util import get_placement_group, remove_placement_group

            progress.done += 1
            row = self.trials.setdefault(trial.trial_id, {})
            row["ended"] = time.time()
            try:  # ASHA stopped it: its driver was killed before its own `finally` (Train's cleaner does this)
                remove_placement_group(get_placement_group(f"sim-{trial.trial_id}"))
                row["removed_by_callback"] = time.time()
            except Exception:  # noqa: BLE001 - already removed by the driver itself
                pass

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            self._end(trial)

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            self._end(trial)

    return TrialLog()


SEARCH_SECONDS: dict[str, list[float]] = {"suggest": [], "on_trial_result": [], "on_trial_complete": []}


def timed_search_class():
    """raysweep's searcher, timing its calls on Tune's loop into SEARCH_SECONDS (kept off the instance: Tune pickles
    the searcher's __dict__ into its snapshots)."""
    from raysweep.sweep.searcher import EpochAwareOptunaSearch

    class TimedSearch(EpochAwareOptunaSearch):
        def suggest(self, trial_id):
            started = time.perf_counter()
            try:
                return super().suggest(trial_id)
            finally:
                SEARCH_SECONDS["suggest"].append(time.perf_counter() - started)

        def on_trial_result(self, trial_id, result):
            started = time.perf_counter()
            try:
                return super().on_trial_result(trial_id, result)
            finally:
                SEARCH_SECONDS["on_trial_result"].append(time.perf_counter() - started)

        def on_trial_complete(self, trial_id, result=None, error=False):
            started = time.perf_counter()
            try:
                return super().on_trial_complete(trial_id, result, error)
            finally:
                SEARCH_SECONDS["on_trial_complete"].append(time.perf_counter() - started)

    return TimedSearch


# ---------------------------------------------------------------- one configuration

def run_configuration(label: str, gpus: int, trials: int, epochs: int, epoch_s: float, total_gpus: int,
                      storage: Path, head, out: dict[str, Any]) -> Path:
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from raysweep.spec.load import load_sweep
    from raysweep.sweep.optuna_space import DefineByRun, make_sampler
    from raysweep.experiment.layout import STUDY_FILE
    from raysweep.experiment.study import study_storage

    overrides = [f"trials.num_samples={trials}", f"train.epochs={epochs}", f"resources.num_workers={gpus}",
                 "resources.use_gpu=true", "scheduler.grace_period=1", "scheduler.reduction_factor=2",
                 "optuna.n_startup_trials=10"]
    sweep = load_sweep(SPACE, overrides)
    name = f"scale-{label}"
    experiment = storage / name
    experiment.mkdir(parents=True)
    # What MetaOnFirstTrial and run_sweep write, so `raysweep collect` reads this folder as a raysweep experiment.
    (experiment / "raysweep_space.yaml").write_text(SPACE.read_text())
    (experiment / "raysweep_meta.json").write_text(json.dumps({
        "name": name, "task": sweep.spec.task, "space_file": str(SPACE), "overrides": overrides, "metric": sweep.metric,
        "mode": sweep.mode, "selection": sweep.spec.selection, "num_trials": sweep.num_trials, "created": time.time(),
        "versions": {}}))
    concurrency = total_gpus // gpus
    events = storage / f"{name}.events.jsonl"
    settings = {"gpus": gpus, "strategy": sweep.spec.resources.placement_strategy, "epochs": sweep.max_epochs,
                "epoch_s": epoch_s, "metric": sweep.metric, "events": str(events)}
    for calls in SEARCH_SECONDS.values():
        calls.clear()
    searcher = timed_search_class()(
        space=DefineByRun(sweep), metric=sweep.metric, mode=sweep.mode, sampler=make_sampler(sweep),
        study_name=name, storage=study_storage(experiment / STUDY_FILE))
    scheduler = ASHAScheduler(time_attr="epoch", max_t=sweep.max_epochs, grace_period=1, reduction_factor=2,
                              metric=sweep.metric, mode=sweep.mode)
    progress = Progress()
    log = trial_log_callback(progress)
    trainable = tune.with_resources(simulated_driver(settings), {"CPU": 0, DRIVER_RESOURCE: 1})
    tuner = tune.Tuner(trainable, tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler,
                                                              num_samples=sweep.num_trials,
                                                              max_concurrent_trials=concurrency),
                       run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=0, callbacks=[log]))
    pgs_before = ray.util.placement_group_table()
    gcs = head.all_processes["gcs_server"][0].process.pid
    raylet = head.all_processes["raylet"][0].process.pid
    print(f"[{label}] {trials} trials x {gpus} GPU(s), {concurrency} at a time on {total_gpus} virtual GPUs, "
          f"epochs {sweep.max_epochs} x {epoch_s:g} s, ASHA grace 1 rf 2 ...", flush=True)
    began = time.time()
    with HeadMemory(gcs, raylet, progress) as memory:
        tuner.fit()
    wall = time.time() - began
    pgs = {k: v for k, v in ray.util.placement_group_table().items() if k not in pgs_before}

    removed = {}
    for line in events.read_text().splitlines():
        row = json.loads(line)
        removed[row["trial_id"]] = row
    rows = log.trials
    for trial_id, row in rows.items():
        times = [t for t in (removed.get(trial_id, {}).get("removed"), row.get("removed_by_callback")) if t]
        row["freed"] = min(times) if times else row.get("ended", float("nan"))
    good = [r for r in rows.values() if math.isfinite(r.get("ready", float("nan"))) and "freed" in r]
    ready = sorted(r["ready"] for r in good)
    freed = [r["freed"] for r in good]
    gaps = slot_gaps(freed, ready, concurrency)
    enter_gaps = slot_gaps(freed, [r["entered"] for r in good], concurrency)
    queued_end = ready[-1] if ready else began  # the last trial got its GPUs: nothing queued any more
    full_from = ready[min(concurrency, len(ready)) - 1] if ready else began
    intervals = [(r["ready"], r["freed"], gpus) for r in good]
    durations = [r["freed"] - r["ready"] for r in good]
    sim_groups = [g for g in pgs.values() if str(g.get("name", "")).startswith("sim-")]
    states: dict[str, int] = {}
    for group in pgs.values():
        states[group["state"]] = states.get(group["state"], 0) + 1
    steady = [s for s in memory.samples if s["trials"] >= min(concurrency, trials // 4)]
    first, last = memory.samples[0], memory.samples[-1]
    half = next((s for s in memory.samples if s["trials"] >= trials // 2), last)
    result = {
        "trials": trials, "gpus_per_trial": gpus, "concurrency": concurrency, "wall_s": wall,
        "completed": len(good), "results": progress.results,
        "starts_per_min": 60 * (len(ready) - 1) / (ready[-1] - ready[0]) if len(ready) > 1 else float("nan"),
        "trials_per_min": 60 * len(good) / wall,
        "mean_trial_held_s": statistics.fmean(durations) if durations else float("nan"),
        "gap_free_to_running": quantiles(gaps), "gap_free_to_driver": quantiles(enter_gaps),
        "gap_median_s": statistics.median(gaps) if gaps else float("nan"),
        "pg_wait": quantiles([r["ready"] - r["entered"] for r in good]),
        "busy_while_queued": busy_fraction(intervals, total_gpus, ready[0], queued_end) if ready else float("nan"),
        "busy_after_rampup": busy_fraction(intervals, total_gpus, full_from, queued_end) if ready else float("nan"),
        "pg_created": len(pgs), "pg_worker_groups": len(sim_groups), "pg_states": states,
        "pg_remove_call": quantiles([r["remove_call_s"] for r in removed.values()]),
        "searcher": {k: quantiles(v) for k, v in SEARCH_SECONDS.items()},
        "searcher_total_s": sum(sum(v) for v in SEARCH_SECONDS.values()),
        "head_mb_start": first["head"], "head_mb_half": half["head"], "head_mb_end": last["head"],
        "head_mb_by_process_end": {k: round(last[k]) for k in ("gcs", "raylet", "driver")},
        "head_workers_mb_peak": max(s["head_workers"] for s in memory.samples),
        "kb_per_trial": 1024 * slope([s["trials"] for s in steady], [s["head"] for s in steady]),
        "kb_per_result": 1024 * slope([s["results"] for s in steady], [s["head"] for s in steady]),
        "gcs_kb_per_trial": 1024 * slope([s["trials"] for s in steady], [s["gcs"] for s in steady]),
    }
    out[label] = result
    return experiment


# ---------------------------------------------------------------- a few real TorchTrainer trials

def torch_trials(count: int, storage: Path, head, others, out: dict[str, Any]) -> None:
    """Real Train V2 trials (driver + TrainController + worker, 1 virtual GPU each, trivial loop), to measure what
    the simulation leaves out: processes and memory per running trial on the head, start-up time, groups per trial."""
    import ray
    from ray import tune

    raylet = head.all_processes["raylet"][0].process.pid
    raylets = [raylet] + [node.all_processes["raylet"][0].process.pid for node in others]
    concurrency = 2

    def trivial_loop(config: dict[str, Any]) -> None:
        import ray.train

        for epoch in range(1, config["epochs"] + 1):
            time.sleep(config["epoch_s"])
            ray.train.report({"epoch": epoch, "epochs_total": config["epochs"], "val.map": 0.1 * epoch,
                              "first_step": config["started"]})

    def torch_driver(config: dict[str, Any]) -> None:
        import ray.train
        from ray.tune.integration.ray_train import TuneReportCallback

        from raysweep.sweep.torch_backend import LightTorchConfig, _TrainerWithoutDatasetManager

        trial_id = tune.get_context().get_trial_id()
        # the trainer raysweep's driver builds (sweep/torch_backend.py), with gloo: the GPUs here are virtual
        trainer = _TrainerWithoutDatasetManager(
            trivial_loop, train_loop_config={"epochs": 3, "epoch_s": 1.0, "started": time.time()},
            backend_config=LightTorchConfig(backend="gloo"),
            scaling_config=ray.train.ScalingConfig(num_workers=1, use_gpu=True,
                                                   resources_per_worker={"CPU": 1, "GPU": 1}),
            run_config=ray.train.RunConfig(name=trial_id, storage_path=str(storage / "torch" / "_train"),
                                           callbacks=[TuneReportCallback()]))
        trainer.fit()

    progress = Progress()
    log = trial_log_callback(progress)
    tuner = tune.Tuner(tune.with_resources(torch_driver, {"CPU": 0, DRIVER_RESOURCE: 1}),
                       tune_config=tune.TuneConfig(num_samples=count, max_concurrent_trials=concurrency),
                       run_config=tune.RunConfig(name="torch", storage_path=str(storage), verbose=0,
                                                 callbacks=[log]))
    before = ray.util.placement_group_table()
    idle_workers = sum(rss_mb(p) for p in children(raylet))
    idle_all = sum(rss_mb(p) for r in raylets for p in children(r))
    peak = {"mb": 0.0, "procs": 0, "all_mb": 0.0, "all_procs": 0}
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            pids = children(raylet)
            peak["mb"] = max(peak["mb"], sum(rss_mb(p) for p in pids) - idle_workers)
            peak["procs"] = max(peak["procs"], len(pids))
            every = [p for r in raylets for p in children(r)]
            peak["all_mb"] = max(peak["all_mb"], sum(rss_mb(p) for p in every) - idle_all)
            peak["all_procs"] = max(peak["all_procs"], len(every))
            stop.wait(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    print(f"[torch] {count} TorchTrainer trials, 1 virtual GPU each, {concurrency} at a time ...", flush=True)
    began = time.time()
    watcher.start()
    tuner.fit()
    stop.set()
    watcher.join()
    wall = time.time() - began
    groups = {k: v for k, v in ray.util.placement_group_table().items() if k not in before}
    launched = [r["launched"] for r in log.trials.values() if "launched" in r]
    ended = [r["ended"] for r in log.trials.values() if "ended" in r]
    out["torch"] = {"trials": count, "concurrency": concurrency, "wall_s": wall, "completed": len(ended),
                    "trial_s": quantiles([e - s for s, e in zip(sorted(launched), sorted(ended), strict=False)]),
                    "head_extra_mb_peak": peak["mb"], "head_extra_mb_per_running_trial": peak["mb"] / concurrency,
                    "head_processes_peak": peak["procs"], "pg_created": len(groups),
                    "all_extra_mb_per_running_trial": peak["all_mb"] / concurrency, "all_processes_peak": peak["all_procs"],
                    "pg_per_trial": len(groups) / max(1, count),
                    "pg_left": sum(1 for g in groups.values() if g["state"] != "REMOVED")}


# ---------------------------------------------------------------- collect

def time_collect(experiment: Path, out: dict[str, Any]) -> None:
    from raysweep.results.collect import collect_experiment

    started = time.perf_counter()
    frame = collect_experiment(str(experiment), str(experiment / "results.parquet"))
    in_process = time.perf_counter() - started
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    cli = subprocess.run([sys.executable, "-m", "raysweep.cli", "collect", str(experiment), "-o",
                          str(experiment / "cli.parquet")], env=env, capture_output=True, text=True)
    command = time.perf_counter() - started
    out["collect"] = {"trials": len(frame), "in_process_s": in_process, "command_s": command,
                      "command_rc": cli.returncode, "command_err": cli.stderr.strip().splitlines()[-1:]}


# ---------------------------------------------------------------- main

def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=4, help="GPU nodes (head not counted)")
    parser.add_argument("--gpus-per-node", type=int, default=8)
    parser.add_argument("--trials", type=int, default=200, help="1-GPU trials")
    parser.add_argument("--trials-8gpu", type=int, default=100, help="8-GPU trials")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--epoch-s", type=float, default=5.0, help="seconds per simulated epoch, 1-GPU trials")
    parser.add_argument("--epoch-s-8gpu", type=float, default=1.0, help="seconds per simulated epoch, 8-GPU trials")
    parser.add_argument("--torch-trials", type=int, default=4)
    parser.add_argument("--head-cpus", type=int, default=os.cpu_count(),
                        help="the head's CPUs (default: this machine's, as cluster.yaml's head declares its vCPUs); "
                             "Ray starts at most this many Python processes at once on a node (at least 1)")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args(argv)

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # every socket on 127.0.0.1 (test-only knob)
    os.environ["RAY_prestart_worker_first_driver"] = "0"  # noqa: SIM112 - Ray's flag name; no idle worker per CPU
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
    import ray
    from ray.cluster_utils import Cluster

    total_gpus = args.nodes * args.gpus_per_node
    slots = total_gpus  # enough drivers for one-GPU trials on every GPU (cluster.yaml's head has 8)
    out: dict[str, Any] = {"nodes": args.nodes, "gpus": total_gpus, "sweep_driver_slots": slots}
    began = time.time()
    out["head_cpus"] = args.head_cpus
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": args.head_cpus, "resources": {DRIVER_RESOURCE: slots}})
    for _ in range(args.nodes):
        cluster.add_node(num_cpus=4, num_gpus=args.gpus_per_node)
    ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False)
    cluster.wait_for_nodes()
    out["cluster_start_s"] = time.time() - began
    print(f"cluster: head + {args.nodes} nodes x {args.gpus_per_node} virtual GPUs, up in {out['cluster_start_s']:.1f} s",
          flush=True)
    storage = Path(tempfile.mkdtemp(prefix="raysweep-scale-"))
    experiment = None

    def phase(what: str, call, *call_args):
        """One phase; its failure is printed and the other phases still run (one locked run is precious)."""
        try:
            return call(*call_args)
        except Exception as exc:  # noqa: BLE001
            import traceback

            traceback.print_exc()
            out.setdefault("failed", []).append(f"{what}: {type(exc).__name__}: {exc}")
            return None
        finally:
            if args.json:
                Path(args.json).write_text(json.dumps(out, indent=2, default=str))

    try:
        if args.trials:
            experiment = phase("1gpu", run_configuration, "1gpu", 1, args.trials, args.epochs, args.epoch_s,
                               total_gpus, storage, cluster.head_node, out)
        if args.trials_8gpu:
            phase("8gpu", run_configuration, "8gpu", args.gpus_per_node, args.trials_8gpu, args.epochs,
                  args.epoch_s_8gpu, total_gpus, storage, cluster.head_node, out)
        if args.torch_trials:
            phase("torch", torch_trials, args.torch_trials, storage, cluster.head_node, list(cluster.worker_nodes), out)
    finally:
        ray.shutdown()
        cluster.shutdown()
    if experiment is not None:
        phase("collect", time_collect, experiment, out)
    out["bench_wall_s"] = time.time() - began
    report(out)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=str))
    return out


def report(out: dict[str, Any]) -> None:
    print(f"\n== cluster: {out['nodes']} GPU nodes, {out['gpus']} virtual GPUs, {out['sweep_driver_slots']} driver slots"
          f" on the head ({out.get('head_cpus', 0)} CPUs); started in {out['cluster_start_s']:.1f} s")
    for failure in out.get("failed", []):
        print(f"FAILED {failure}")
    for label in ("1gpu", "8gpu"):
        r = out.get(label)
        if not r:
            continue
        print(f"\n-- {r['trials']} trials x {r['gpus_per_trial']} GPU(s), {r['concurrency']} at a time: "
              f"{r['completed']} done, {r['results']} results, wall {r['wall_s']:.0f} s")
        print(f"scheduling throughput        {r['starts_per_min']:.1f} trial starts/min "
              f"({r['trials_per_min']:.1f} trials/min over the wall)")
        print(f"freed slot -> trial running  {r['gap_free_to_running']} (median / p90 / max); to its driver "
              f"running {r['gap_free_to_driver']}")
        print(f"trial holds its GPUs         {r['mean_trial_held_s']:.1f} s mean; worker group wait {r['pg_wait']}")
        print(f"GPUs busy while queued       {100 * r['busy_while_queued']:.1f} % (after the ramp-up "
              f"{100 * r['busy_after_rampup']:.1f} %; goal >= 95 %)")
        print(f"placement groups             {r['pg_created']} created ({r['pg_worker_groups']} worker groups), "
              f"states at the end {r['pg_states']}; remove call {r['pg_remove_call']}")
        print(f"searcher on Tune's loop      {r['searcher_total_s']:.1f} s in all; suggest {r['searcher']['suggest']}")
        print(f"head memory (GCS+raylet+drv) {r['head_mb_start']:.0f} -> {r['head_mb_half']:.0f} (half) -> "
              f"{r['head_mb_end']:.0f} MB {r['head_mb_by_process_end']}; {r['kb_per_trial']:.0f} KB/trial, "
              f"{r['kb_per_result']:.0f} KB/result (GCS {r['gcs_kb_per_trial']:.0f} KB/trial); trial drivers on "
              f"the head peak {r['head_workers_mb_peak']:.0f} MB")
        if r["gap_median_s"] > 0 and r["mean_trial_held_s"] > 0:
            needed = 0.95 * r["gap_median_s"] / 0.05
            print(f"95 % busy needs trials of    >= {needed:.0f} s at this slot gap (gap / (trial + gap) <= 5 %)")
    t = out.get("torch")
    if t:
        print(f"\n-- {t['trials']} TorchTrainer trials (1 virtual GPU, trivial loop), {t['concurrency']} at a time: "
              f"{t['completed']} done in {t['wall_s']:.0f} s; trial start -> end {t['trial_s']}")
        print(f"head processes per running trial: +{t['head_extra_mb_per_running_trial']:.0f} MB "
              f"(peak {t['head_processes_peak']} worker processes on the head); on all nodes "
              f"+{t['all_extra_mb_per_running_trial']:.0f} MB (peak {t['all_processes_peak']} processes); placement groups "
              f"{t['pg_per_trial']:.1f} per trial, {t['pg_left']} left")
    c = out.get("collect")
    if c:
        print(f"\n-- raysweep collect, {c['trials']} trials: {c['in_process_s']:.2f} s in process, "
              f"{c['command_s']:.2f} s as a command (rc {c['command_rc']})")
    print(f"\nbenchmark wall {out['bench_wall_s']:.0f} s")


if __name__ == "__main__":
    main()
