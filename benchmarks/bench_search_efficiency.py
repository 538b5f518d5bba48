"""Search efficiency on the embedded DEFR: grid vs random vs TPE vs TPE + ASHA, equal budgets in trial-epochs.

The tabular-benchmark method (as in HPOBench / NAS-Bench): training every searched trial for real, for several
methods and seeds, is out of reach on a 2-core machine, so

1. `build`: every configuration of a discretised DEFR space (benchmarks/search_efficiency/defr_grid.yaml: classifier
   init x loss x learning rate, 12 points, 6 epochs) is trained once for all its epochs by a real `raysweep tune`
   grid run with `selection: val`, and its per-epoch `val.map` / `test.map` curves are read from the experiment's
   history parquet into a cached CSV (benchmarks/search_efficiency/defr_<schedule>.csv). Two schedules: the
   default cosine with warm-up, and `multistep` with the LR drop after epoch 4 of 6 (2/3 of training, as QPIC / HQM).
2. `replay`: for each method and seed the real search machinery runs in a real Ray Tune `Tuner`: raysweep's
   `EpochAwareOptunaSearch` (TPE or random sampler, from the same space file with the grid turned into choices) and
   `build_scheduler` (ASHA, or ASHA at rungs after the LR drop), with a function trainable that replays the recorded
   curve of the suggested configuration epoch by epoch. Every reported epoch is one trial-epoch; each run stops at the
   grid's budget (configurations x epochs).

The incumbent is the best `val.map` among trials trained to the last epoch (a low-fidelity value never counts), its
`test.map` is reported beside it. Prints a markdown table and writes curves.csv, summary.csv and
best_so_far.png into --out.

    flock /tmp/raysweep-ray.lock python benchmarks/bench_search_efficiency.py build     # ~2 x 8 min, once
    flock /tmp/raysweep-ray.lock python benchmarks/bench_search_efficiency.py replay    # ~5 min
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
DATA = HERE / "search_efficiency"
GRID_SPACE = DATA / "defr_grid.yaml"
SCHEDULES = {"cosine": [], "multistep": ["optim.schedule=multistep"]}
KEYS = ("classifier.init", "loss.name", "optim.lr")
TARGET_FRACTION = 0.35  # the goal: within 1 mAP of the grid's best at <= 35 % of the grid's trial-epochs
TARGET_GAP = 0.01  # 1 mAP point (mAP in [0, 1])

# method -> (sampler, overrides of the space file); "grid" keeps the grid (in a seeded random order)
METHODS: dict[str, tuple[str, list[str]]] = {
    "grid": ("grid", ["scheduler.type=none"]),
    "random": ("random", ["scheduler.type=none"]),
    "tpe": ("tpe", ["scheduler.type=none"]),
    "tpe+asha g1 rf2": ("tpe", ["scheduler.type=asha", "scheduler.grace_period=1", "scheduler.reduction_factor=2"]),
    "tpe+asha g2 rf2": ("tpe", ["scheduler.type=asha", "scheduler.grace_period=2", "scheduler.reduction_factor=2"]),
    "tpe+asha g1 rf3": ("tpe", ["scheduler.type=asha", "scheduler.grace_period=1", "scheduler.reduction_factor=3"]),
    "tpe+asha g2 rf3": ("tpe", ["scheduler.type=asha", "scheduler.grace_period=2", "scheduler.reduction_factor=3"]),
    "tpe+asha g3 rf2": ("tpe", ["scheduler.type=asha", "scheduler.grace_period=3", "scheduler.reduction_factor=2"]),
    "tpe+asha after drop": ("tpe", ["scheduler.type=asha", "scheduler.grace_period=1", "scheduler.reduction_factor=2",
                                    "scheduler.rungs_after_lr_drop=true"]),
}
DEFAULT_RUNS = {
    "cosine": ["grid", "random", "tpe", "tpe+asha g1 rf2", "tpe+asha g2 rf2"],
    "multistep": ["grid", "random", "tpe", "tpe+asha g1 rf2", "tpe+asha after drop"],
}


TABLES = DATA  # where the cached curve tables live (--tables)


def table_path(schedule: str) -> Path:
    return TABLES / f"defr_{schedule}.csv"


def config_key(config: dict) -> str:
    return f"{config['classifier.init']}|{config['loss.name']}|{float(config['optim.lr']):.6g}"


# ----------------------------------------------------------------------------------------------------- build
def build(schedule: str, storage: str) -> pd.DataFrame:
    """Train the grid once through `raysweep tune` (skipped when the experiment has its parquet) and cache its curves."""
    name = f"search-efficiency-{schedule}"
    experiment = Path(storage).expanduser() / name
    if not (experiment / "history.parquet").exists():
        cmd = ["raysweep", "tune", str(GRID_SPACE), *SCHEDULES[schedule], "--name", name, "--storage", storage]
        print("+", " ".join(cmd), flush=True)
        started = time.perf_counter()
        subprocess.run(cmd, check=True)
        print(f"grid run ({schedule}): {time.perf_counter() - started:.0f} s", flush=True)
    return cache_table(experiment, schedule)


def cache_table(experiment: Path, schedule: str) -> pd.DataFrame:
    results = pd.read_parquet(experiment / "results.parquet")
    history = pd.read_parquet(experiment / "history.parquet")
    configs = results.set_index("trial_id")[[f"config.{k}" for k in KEYS]]
    configs.columns = list(KEYS)
    curves = (history[history["metric"].isin(["val.map", "test.map"])]
              .pivot_table(index=["trial_id", "epoch"], columns="metric", values="value").reset_index())
    table = curves.join(configs, on="trial_id").rename(columns={"val.map": "val_map", "test.map": "test_map"})
    table = table[["trial_id", *KEYS, "epoch", "val_map", "test_map"]].sort_values(["trial_id", "epoch"])
    table.to_csv(table_path(schedule), index=False)
    print(f"wrote {table_path(schedule)}: {table['trial_id'].nunique()} configurations x "
          f"{table['epoch'].max()} epochs", flush=True)
    return table


def load_curves(schedule: str) -> tuple[dict[str, list[tuple[float, float]]], dict]:
    table = pd.read_csv(table_path(schedule))
    curves: dict[str, list[tuple[float, float]]] = {}
    values: dict[str, list] = {k: sorted(table[k].unique().tolist()) for k in KEYS}
    for _, rows in table.groupby("trial_id"):
        rows = rows.sort_values("epoch")
        first = rows.iloc[0]
        curves[config_key({k: first[k] for k in KEYS})] = list(zip(rows["val_map"], rows["test_map"], strict=True))
    return curves, values


# ----------------------------------------------------------------------------------------------------- replay
def replay_trial(config: dict, curves: dict) -> None:
    """A Tune function trainable that 'trains' by reporting the recorded curve of its configuration."""
    from ray import tune

    curve = curves[config_key(config)]
    for epoch, (val, test) in enumerate(curve, start=1):
        tune.report({"epoch": epoch, "epochs_total": len(curve), "val.map": val, "test.map": test,
                     "evaluated": True})


def make_recorder(budget: int):
    from ray.tune import Stopper

    class BudgetRecorder(Stopper):
        """Records every result in arrival order (one trial-epoch each) and ends the run at the budget."""

        def __init__(self) -> None:
            self.events: list[tuple[str, int, int, float, float, str]] = []
            self.seen: set[tuple[str, int]] = set()

        def __call__(self, trial_id: str, result: dict) -> bool:
            if (trial_id, int(result["epoch"])) in self.seen:  # Tune repeats a trial's last result when it ends
                return False
            self.seen.add((trial_id, int(result["epoch"])))
            self.events.append((trial_id, int(result["epoch"]), int(result["epochs_total"]),
                                float(result["val.map"]), float(result["test.map"]), config_key(result["config"])))
            return False

        def stop_all(self) -> bool:
            return len(self.events) >= budget

    return BudgetRecorder()


def replay_sweep(schedule: str, method: str, seed: int, values: dict):
    from raysweep.spec.load import load_sweep

    sampler, overrides = METHODS[method]
    search = [] if sampler == "grid" else [
        f"search.{k}={{distribution: choice, values: [{', '.join(str(v) for v in values[k])}]}}" for k in KEYS]
    more = [] if sampler == "grid" else [f"optuna.sampler={sampler}", "optuna.n_startup_trials=4",
                                         "trials.num_samples=1000"]
    return load_sweep(GRID_SPACE, [*SCHEDULES[schedule], *search, *more, f"optuna.seed={seed}", *overrides])


def replay(schedule: str, method: str, seed: int, curves: dict, values: dict, budget: int) -> list[tuple]:
    from ray import tune

    from raysweep.sweep.optuna_space import DefineByRun, grid_points_to_evaluate, make_sampler
    from raysweep.sweep.scheduler import build_scheduler
    from raysweep.sweep.searcher import EpochAwareOptunaSearch

    sweep = replay_sweep(schedule, method, seed, values)
    points = grid_points_to_evaluate(sweep)
    num_samples = 1000
    if points:  # the grid, in a seeded random order (the enumeration order would favour whichever point is first)
        random.Random(seed).shuffle(points)
        num_samples = len(points)
    searcher = EpochAwareOptunaSearch(space=DefineByRun(sweep), metric=sweep.metric, mode=sweep.mode,
                                      points_to_evaluate=points or None, sampler=make_sampler(sweep),
                                      study_name=f"{schedule}-{method}-{seed}")
    recorder = make_recorder(budget)
    with tempfile.TemporaryDirectory(prefix="raysweep-replay-") as storage:
        tuner = tune.Tuner(
            tune.with_parameters(replay_trial, curves=curves),
            tune_config=tune.TuneConfig(search_alg=searcher, scheduler=build_scheduler(sweep), num_samples=num_samples,
                                        max_concurrent_trials=2, reuse_actors=True),
            run_config=tune.RunConfig(name="replay", storage_path=storage, stop=recorder, verbose=0))
        tuner.fit()
    return recorder.events


def best_so_far(events: list[tuple], budget: int) -> tuple[np.ndarray, np.ndarray]:
    """Per trial-epoch 1..budget: the incumbent's val.map and test.map (NaN before the first full trial)."""
    val, test = np.full(budget, np.nan), np.full(budget, np.nan)
    best_val, best_test = -np.inf, np.nan
    for i, (_, epoch, total, v, t, _) in enumerate(events[:budget]):
        if epoch == total and v > best_val:
            best_val, best_test = v, t
        if np.isfinite(best_val):
            val[i], test[i] = best_val, best_test
    return val, test


def run_replays(schedules: list[str], methods: dict[str, list[str]], seeds: list[int], out: Path) -> pd.DataFrame:
    import optuna
    import ray

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    rows, summary = [], []
    try:
        for schedule in schedules:
            curves, values = load_curves(schedule)
            epochs = len(next(iter(curves.values())))
            budget = len(curves) * epochs
            grid_best = max(c[-1][0] for c in curves.values())
            best_key = max(curves, key=lambda k: curves[k][-1][0])
            for method in methods[schedule]:
                for seed in seeds:
                    started = time.perf_counter()
                    events = replay(schedule, method, seed, curves, values, budget)
                    val, test = best_so_far(events, budget)
                    trials = len({e[0] for e in events[:budget]})
                    full = len({e[0] for e in events[:budget] if e[1] == e[2]})
                    # trials of the grid's best configuration: started, and trained to the end within the budget
                    best_started = len({e[0] for e in events[:budget] if e[5] == best_key})
                    best_full = len({e[0] for e in events[:budget] if e[5] == best_key and e[1] == e[2]})
                    reached = np.nonzero(val >= grid_best - TARGET_GAP)[0]
                    at = int(TARGET_FRACTION * budget)
                    summary.append({"schedule": schedule, "method": method, "seed": seed, "budget": budget,
                                    "grid_best_val": grid_best, "trials": trials, "full_trials": full,
                                    "best_config_started": best_started, "best_config_full": best_full,
                                    "val_at_35pct": val[at - 1], "test_at_35pct": test[at - 1],
                                    "val_at_100pct": val[-1], "test_at_100pct": test[-1],
                                    "epochs_to_target": int(reached[0]) + 1 if len(reached) else np.nan,
                                    "wall_s": time.perf_counter() - started})
                    rows += [{"schedule": schedule, "method": method, "seed": seed, "trial_epochs": i + 1,
                              "best_val": val[i], "best_test": test[i]} for i in range(budget)]
                    print(f"{schedule:9s} {method:20s} seed {seed}: {trials:3d} trials ({full} full), best val "
                          f"{val[at - 1]:.4f} at 35 %, {val[-1]:.4f} at 100 % (grid best {grid_best:.4f}); "
                          f"{time.perf_counter() - started:.1f} s", flush=True)
    finally:
        ray.shutdown()
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out / "curves.csv", index=False)
    frame = pd.DataFrame(summary)
    frame.to_csv(out / "summary.csv", index=False)
    return frame


# ----------------------------------------------------------------------------------------------------- report
def markdown(summary: pd.DataFrame) -> str:
    lines = ["| schedule | method | trials (full) | best val at 35 % | test at 35 % | best val at 100 % | "
             "test at 100 % | trial-epochs to grid best - 1 | runs at target by 35 % | best config: full / started |",
             "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for (schedule, method), runs in summary.groupby(["schedule", "method"], sort=False):
        budget = int(runs["budget"].iloc[0])
        hits = runs["epochs_to_target"]

        def pct(col: str, runs: pd.DataFrame = runs) -> str:
            v = 100 * runs[col]
            return f"{v.mean():.2f} ± {v.std(ddof=0):.2f}"

        reached = f"{hits.mean():.0f} ({100 * hits.mean() / budget:.0f} %)" if hits.notna().all() else \
            f"{hits.notna().sum()}/{len(hits)} reached"
        lines.append(f"| {schedule} | {method} | {runs['trials'].mean():.1f} ({runs['full_trials'].mean():.1f}) | "
                     f"{pct('val_at_35pct')} | {pct('test_at_35pct')} | {pct('val_at_100pct')} | "
                     f"{pct('test_at_100pct')} | {reached} | "
                     f"{int((hits <= TARGET_FRACTION * budget).sum())}/{len(hits)} | "
                     f"{int(runs['best_config_full'].sum())} / {int(runs['best_config_started'].sum())} |")
    return "\n".join(lines)


def plot(out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves, summary = pd.read_csv(out / "curves.csv"), pd.read_csv(out / "summary.csv")
    schedules = list(dict.fromkeys(curves["schedule"]))
    fig, axes = plt.subplots(1, len(schedules), figsize=(6.5 * len(schedules), 4.5), squeeze=False)
    for ax, schedule in zip(axes[0], schedules, strict=True):
        part = curves[curves["schedule"] == schedule]
        for method, runs in part.groupby("method", sort=False):
            stats = runs.groupby("trial_epochs")["best_val"].agg(["mean", "min", "max"]) * 100
            line, = ax.plot(stats.index, stats["mean"], label=method)
            ax.fill_between(stats.index, stats["min"], stats["max"], color=line.get_color(), alpha=0.12)
        info = summary[summary["schedule"] == schedule].iloc[0]
        ax.axhline(100 * info["grid_best_val"], color="k", lw=0.8, ls="--", label="grid best")
        ax.axhline(100 * (info["grid_best_val"] - TARGET_GAP), color="k", lw=0.5, ls=":", label="grid best - 1")
        ax.axvline(TARGET_FRACTION * info["budget"], color="grey", lw=0.8, ls="-.", label="35 % of grid")
        ax.set(title=f"embedded DEFR, {schedule} schedule", xlabel="trial-epochs",
               ylabel="best-so-far validation mAP (%)")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path = out / "best_so_far.png"
    fig.savefig(path, dpi=110)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", nargs="?", choices=["build", "replay", "all", "report"], default="all",
                        help="report: merge the curves.csv / summary.csv of --inputs into --out, table and plot")
    parser.add_argument("--inputs", nargs="+", type=Path, default=[], help="report: out folders of earlier replays")
    parser.add_argument("--schedules", nargs="+", choices=list(SCHEDULES), default=list(SCHEDULES))
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), help="default: per schedule, DEFAULT_RUNS")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--storage", default="/tmp/raysweep-search-efficiency", help="where `build` runs its grid")
    parser.add_argument("--out", type=Path, default=Path("/tmp/raysweep-search-efficiency/out"))
    parser.add_argument("--tables", type=Path, default=DATA, help="folder of the cached defr_<schedule>.csv tables")
    parser.add_argument("--from-experiment", type=Path, help="build: cache the table of this finished grid run")
    args = parser.parse_args(argv)
    global TABLES
    TABLES = args.tables
    if args.from_experiment:
        cache_table(args.from_experiment, args.schedules[0])
        return 0
    if args.step == "report":
        args.out.mkdir(parents=True, exist_ok=True)
        for name in ("curves.csv", "summary.csv"):
            pd.concat([pd.read_csv(d / name) for d in args.inputs]).to_csv(args.out / name, index=False)
        print(markdown(pd.read_csv(args.out / "summary.csv")))
        print(f"\nplot: {plot(args.out)}")
        return 0
    if args.step in ("build", "all"):
        for schedule in args.schedules:
            if not table_path(schedule).exists():
                build(schedule, args.storage)
    if args.step in ("replay", "all"):
        methods = {s: args.methods or DEFAULT_RUNS[s] for s in args.schedules}
        summary = run_replays(args.schedules, methods, list(range(args.seeds)), args.out)
        print()
        print(markdown(summary))
        print(f"\nplot: {plot(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
