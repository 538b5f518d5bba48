"""One trial's start-up timeline and the memory of every process it runs, through Ray and in a plain process.

    flock /tmp/raysweep-ray.lock python benchmarks/bench_trial_overhead.py [--workers 1 2] [--before /work/main]

For each worker count, runs `raysweep tune search_spaces/defr.yaml` for one trial of one epoch (no scheduler) in its
own process session with `RAYSWEEP_TIMELINE` set, so the trial's processes mark their progress (Tune driver builds
the trainer, Train controller starts the worker group, workers import the task, `Task.build`, first training step,
first report); meanwhile it samples every process of the session from /proc every 0.25 s: when each Ray process
title first appears (trial driver, Train controller, workers) and each process's peak RSS and PSS. The baseline is
the same work in one plain process: import, `Task.prepare` (a cache hit), `Task.build`, one epoch of
`Task.train_step` + backward + optimiser step, validation. Prints the timelines side by side and the ratios.

`--before PATH` also runs the one-worker trial with the raysweep code of another checkout (e.g. the main branch),
without timeline marks: its first step is then taken from the first report minus the reported epoch and evaluation
times. Linux only (/proc). Everything is measured in this one run, so compare ratios, not seconds, across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SPACE = REPO / "search_spaces" / "defr.yaml"
SAMPLED = {"classifier.init": "rand", "loss.name": "lse_sign", "optim.lr": 1e-3}  # the plain run's "trial"
TITLES = {  # Ray process title (prefix of /proc/<pid>/cmdline) -> role in the trial
    "ray::ImplicitFunc": "Tune trial driver", "ray::raysweep_trial": "Tune trial driver",
    "ray::TrainController": "Train controller", "ray::RayTrainWorker": "Train worker",
}


def proc_memory(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in bytes from smaps_rollup; (0, 0) if the process is gone."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("Pss:"):
                pss = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return rss, pss


def session_pids(session: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            if int(stat[stat.rindex(")") + 2:].split()[3]) == session:
                pids.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return pids


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def title(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    parts = [p.decode(errors="replace") for p in raw.split(b"\0") if p]
    if not parts:
        return ""
    if parts[0].startswith("ray::"):
        return parts[0].split()[0]
    name = Path(parts[0]).name
    if name.startswith("python") and len(parts) > 1:
        script = next((p for p in parts[1:] if not p.startswith("-")), "")
        return f"{name} {Path(script).name if '/' in script else script}"[:60]
    return name[:60]


class Sampler(threading.Thread):
    """Peak RSS/PSS per process, the peak of their sums, and when each Ray title was first seen."""

    def __init__(self, session: int, period_s: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.session, self.period_s = session, period_s
        self.procs: dict[int, dict[str, Any]] = {}
        self.titled: list[tuple[str, float]] = []  # (title without method, when a process first showed it)
        self.peak_rss = self.peak_pss = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            now, total_rss, total_pss = time.time(), 0, 0
            for pid in session_pids(self.session):
                name = title(pid)
                rss, pss = proc_memory(pid)
                total_rss, total_pss = total_rss + rss, total_pss + pss
                info = self.procs.setdefault(pid, {"title": name, "rss": 0, "pss": 0})
                if name.startswith("ray::") and name != "ray::IDLE":
                    short = name.split(".")[0]
                    if info.get("short") != short:
                        self.titled.append((short, now))
                        info["short"] = short
                    info["title"] = name  # a prestarted worker takes the actor's title when assigned
                info["rss"], info["pss"] = max(info["rss"], rss), max(info["pss"], pss)
                info["cpu_s"] = max(info.get("cpu_s", 0.0), cpu_seconds(pid))
                info.setdefault("seen", now)
                info["last"] = now
            self.peak_rss, self.peak_pss = max(self.peak_rss, total_rss), max(self.peak_pss, total_pss)
            self.stop.wait(self.period_s)


def role(name: str) -> str:
    for prefix, what in TITLES.items():
        if name.startswith(prefix):
            return what
    if name.startswith("ray::") and name != "ray::IDLE":
        return "trial helper actor"
    return "Ray / CLI (per instance)"


def run_sweep(workers: int, pythonpath: Path, marks: bool, trials: int = 1) -> dict[str, Any]:
    """`trials` > 1 runs them one after another; `events` is the first trial's timeline (a new Ray instance), and
    `later` the last one's (the instance's own actors already exist), each from its own start."""
    storage = Path(tempfile.mkdtemp(prefix="raysweep-overhead-"))
    timeline_file = storage / "timeline.jsonl"
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    if marks:
        env["RAYSWEEP_TIMELINE"] = str(timeline_file)
    cmd = [sys.executable, "-m", "raysweep.cli", "tune", str(SPACE), "trials.num_samples=1", "train.epochs=1",
           "scheduler.type=none", f"resources.num_workers={workers}", "trials.max_concurrent=1",
           f"trials.num_samples={trials}",
           "--storage", str(storage), "--name", "overhead"]
    started = time.time()
    proc = subprocess.Popen(cmd, cwd=pythonpath, env=env, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    sampler = Sampler(proc.pid)
    sampler.start()
    output = proc.communicate()[0]
    sampler.stop.set()
    sampler.join()
    if proc.returncode != 0:
        print(output[-4000:])
        raise SystemExit(f"raysweep tune exited {proc.returncode}")
    experiment = storage / "overhead"
    state = json.loads(sorted(experiment.glob("experiment_state-*.json"))[-1].read_text())
    marks_all = [json.loads(x) for x in timeline_file.read_text().splitlines()] if timeline_file.exists() else []
    timelines = []
    for trial_json, runtime_json in sorted(state["trial_data"], key=lambda t: json.loads(t[1])["start_time"]):
        trial, runtime = json.loads(trial_json), json.loads(runtime_json)
        first = json.loads((experiment / trial["relative_logdir"] / "result.json").read_text().splitlines()[0])
        t0 = runtime["start_time"]
        events: dict[str, float] = {"CLI start": started - t0, "trial start (Tune)": 0.0}
        for name, seen in sampler.titled:
            if seen < t0 - 1.0 and timelines:
                continue  # the earlier trials' processes
            short = name.split("::")[-1]
            key = (f"{role(name)} process titled" if short in ("ImplicitFunc", "raysweep_trial", "TrainController",
                                                                "RayTrainWorker") else f"{short} titled (helper actor)")
            events.setdefault(key, seen - t0)
        for mark in marks_all:
            if mark["t"] >= t0 - 0.5:
                events.setdefault(mark["event"], mark["t"] - t0)  # first occurrence (rank 0 or the faster worker)
        events["first report (in Tune)"] = first["timestamp"] - t0
        events.setdefault("first training step", first["timestamp"] - first["epoch_time_s"]
                          - first.get("eval_time_s", 0) - t0)
        timelines.append({"events": events, "epoch_s": first["epoch_time_s"], "images_per_s": first["images_per_s"],
                          "t0": t0})
    # memory: the first trial's processes and the instance's (later trials repeat them, one after another)
    cut = timelines[1]["t0"] - 1.0 if len(timelines) > 1 else float("inf")
    procs = {pid: info for pid, info in sampler.procs.items() if info["seen"] < cut}
    return {**timelines[0], "later": timelines[-1] if len(timelines) > 1 else None, "procs": procs,
            "peak_rss": sampler.peak_rss, "peak_pss": sampler.peak_pss, "end": time.time() - started}


def plain_child(timeline_file: str) -> None:
    """The trial's work in this process, no Ray: marks appended to `timeline_file` as in the sweep."""
    os.environ["RAYSWEEP_TIMELINE"] = timeline_file
    from raysweep.sweep import timeline

    timeline.mark("process started")
    import torch
    from torch.utils.data import DataLoader

    from raysweep.spec.load import load_sweep
    from raysweep.sweep.task_cache import cache_dir
    from raysweep.tasks.base import evaluate_in_process

    torch.set_num_threads(1)
    sweep = load_sweep(SPACE, ["train.epochs=1", "scheduler.type=none"])
    config = sweep.config_for(SAMPLED)
    task_cls = sweep.task_cls
    timeline.mark("task imported")
    updates = task_cls.prepare(config, cache_dir(sweep))
    if updates:
        tree = config.model_dump(mode="json")
        from raysweep.spec.load import set_path

        for key, value in updates.items():
            set_path(tree, key, value)
        config = task_cls.config_model.model_validate(tree)
    task = task_cls(config, cache_dir=cache_dir(sweep))
    torch.manual_seed(0)
    timeline.mark("Task.build start")
    parts = task.build(torch.device("cpu"))
    timeline.mark("Task.build done")
    loader = DataLoader(parts.train_set, batch_size=parts.batch_size, shuffle=True, collate_fn=parts.collate_fn)
    parts.model.train()
    started, images = time.perf_counter(), 0
    for it, batch in enumerate(loader):
        if it == 0:
            timeline.mark("first training step")
        elif it == 1:
            timeline.mark("second training step")
        loss, _ = task.train_step(parts.model, batch, 0, it, parts.state)
        parts.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        parts.optimizer.step()
        parts.schedule.step_iteration((it + 1) / len(loader))
        images += task.num_samples(batch)
    epoch_s = time.perf_counter() - started
    evaluate_in_process(task, parts, "val" if parts.val_set is not None else "test")
    timeline.mark("first report")
    Path(timeline_file + ".epoch").write_text(json.dumps({"epoch_s": epoch_s, "images": images}))


def run_plain() -> dict[str, Any]:
    timeline_file = Path(tempfile.mkdtemp(prefix="raysweep-plain-")) / "timeline.jsonl"
    started = time.time()
    proc = subprocess.Popen([sys.executable, __file__, "--plain-child", str(timeline_file)], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True)
    sampler = Sampler(proc.pid)
    sampler.start()
    if proc.wait() != 0:
        raise SystemExit("plain run failed")
    sampler.stop.set()
    sampler.join()
    events = {"process start": 0.0}
    for line in timeline_file.read_text().splitlines():
        mark = json.loads(line)
        events.setdefault(mark["event"], mark["t"] - started)
    epoch = json.loads(Path(str(timeline_file) + ".epoch").read_text())
    return {"events": events, "procs": sampler.procs, "peak_rss": sampler.peak_rss, "peak_pss": sampler.peak_pss,
            "epoch_s": epoch["epoch_s"], "images_per_s": epoch["images"] / epoch["epoch_s"]}


def gib(n: float) -> str:
    return f"{n / 2**30:.2f}"


def print_run(label: str, run: dict[str, Any]) -> None:
    print(f"\n## {label}: training epoch {run['epoch_s']:.1f} s ({run['images_per_s']:.0f} images/s); peak of the "
          f"summed memory of all its processes: RSS {gib(run['peak_rss'])} GiB, PSS {gib(run['peak_pss'])} GiB")
    for event, t in sorted(run["events"].items(), key=lambda kv: kv[1]):
        print(f"  {t:7.1f} s  {event}")
    if run.get("later"):
        print("  the next trial of the same sweep (the instance's own actors already started):")
        for event, t in sorted(run["later"]["events"].items(), key=lambda kv: kv[1]):
            if event != "CLI start":
                print(f"  {t:7.1f} s  {event}")
    by_role: dict[str, list[float]] = {}
    print("  process peaks (RSS / PSS, MiB), CPU seconds used while sampled:")
    for _pid, info in sorted(run["procs"].items(), key=lambda kv: -kv[1]["pss"]):
        if info["rss"] < 20 * 2**20:
            continue
        print(f"    {info['title'][:44]:44s} {info['rss'] / 2**20:7.0f} / {info['pss'] / 2**20:6.0f}  "
              f"{info.get('cpu_s', 0):6.1f} s  ({role(info['title'])})")
        totals = by_role.setdefault(role(info["title"]), [0, 0, 0.0])
        totals[0] += info["rss"]
        totals[1] += info["pss"]
        totals[2] += info.get("cpu_s", 0.0)
    run["by_role"] = by_role
    for what, (rss, pss, cpu) in sorted(by_role.items()):
        print(f"    = {what}: RSS {rss / 2**20:.0f} MiB, PSS {pss / 2**20:.0f} MiB, CPU {cpu:.1f} s")


def trial_pss(run: dict[str, Any], workers_too: bool = True) -> float:
    roles = ["Tune trial driver", "Train controller", "trial helper actor"] + (["Train worker"] if workers_too else [])
    return sum(run["by_role"].get(r, [0, 0])[1] for r in roles)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--before", type=Path, help="also run the 1-worker trial with this checkout's raysweep")
    parser.add_argument("--plain-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_child:
        plain_child(args.plain_child)
        return
    load = os.getloadavg()
    print(f"load average at start: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} CPUs")
    plain = run_plain()
    print_run("plain process (no Ray)", plain)
    runs = {}
    for n in args.workers:
        runs[n] = run_sweep(n, REPO, marks=True, trials=2 if n == 1 else 1)
        print_run(f"raysweep trial, {n} worker(s)", runs[n])
    if args.before:
        runs["before"] = run_sweep(1, args.before.resolve(), marks=False)
        print_run(f"raysweep trial, 1 worker, code of {args.before}", runs["before"])
    print("\n## ratios (this run)")
    p_step, p_report = plain["events"]["first training step"], plain["events"]["first report"]
    print(f"plain: process start → first step {p_step:.1f} s, → first report {p_report:.1f} s; PSS "
          f"{plain['peak_pss'] / 2**20:.0f} MiB")
    for key, run in runs.items():
        ev = run["events"]
        step = ev["first training step"]
        print(f"{key} worker(s): trial start → first step {step:.1f} s ({step / p_step:.2f}× plain), → first "
              f"report {ev['first report (in Tune)']:.1f} s ({ev['first report (in Tune)'] / p_report:.2f}× plain); "
              f"trial processes PSS {trial_pss(run) / 2**20:.0f} MiB ({trial_pss(run) / plain['peak_pss']:.2f}× "
              f"plain), of which not workers {trial_pss(run, False) / 2**20:.0f} MiB; whole session peak PSS "
              f"{gib(run['peak_pss'])} GiB, RSS {gib(run['peak_rss'])} GiB")
        if run.get("later"):
            ev = run["later"]["events"]
            print(f"{key} worker(s), next trial of the sweep: trial start → first step {ev['first training step']:.1f} "
                  f"s ({ev['first training step'] / p_step:.2f}× plain), → first report "
                  f"{ev['first report (in Tune)']:.1f} s")
    load = os.getloadavg()
    print(f"load average at end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")


if __name__ == "__main__":
    main()
