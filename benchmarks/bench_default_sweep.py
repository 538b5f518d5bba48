"""The README's main command, measured: wall time, per-trial overhead, peak memory and the mAP reached.

    python benchmarks/bench_default_sweep.py [--space search_spaces/hqm.yaml] [extra key=value overrides ...]

Runs `raysweep tune <space>` (default: search_spaces/defr.yaml) in its own process session under a fresh experiment name, samples the
summed RSS and PSS of every process in that session (the CLI, Ray's daemons, trial drivers, Train controllers and
workers) and the machine's memory in use every second from /proc, compares the wall time with the ideal (the trials'
training and evaluation time summed, divided by the cores), then reads the experiment to report, per trial, the time from its start to its first report
(fixed overhead: actor start, worker group, data, first epoch) and to its end. Linux only (/proc).
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

REPO = Path(__file__).resolve().parents[1]


def session_memory_bytes(session: int) -> tuple[int, int]:
    """(RSS, PSS) summed over the processes of a session. RSS counts a page shared by N processes N times (torch's
    libraries are mapped by the CLI and every worker); PSS counts 1/N of it in each, so its sum is the memory used."""
    rss = pss = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            if int(stat[stat.rindex(")") + 2:].split()[3]) != session:  # field 6 of stat: session id
                continue
            for line in Path(f"/proc/{entry}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1]) * 1024
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            continue
    return rss, pss


def memory_in_use_bytes() -> int:
    """MemTotal - MemAvailable: the machine's memory in use, whoever uses it."""
    info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    return (int(info["MemTotal"].split()[0]) - int(info["MemAvailable"].split()[0])) * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--space", type=Path, default=REPO / "search_spaces" / "defr.yaml")
    known, args = parser.parse_known_args()  # the rest: key=value overrides for `raysweep tune`
    space = known.space.resolve()
    storage = Path(tempfile.mkdtemp(prefix="raysweep-bench-"))
    name = "bench"
    cmd = [sys.executable, "-m", "raysweep.cli", "tune", str(space), *args,
           "--storage", str(storage), "--name", name]
    in_use_before = memory_in_use_bytes()
    started = time.time()
    proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    peak = {"rss": 0, "pss": 0, "in_use": 0}

    def sample() -> None:
        while proc.poll() is None:
            rss, pss = session_memory_bytes(proc.pid)
            in_use = memory_in_use_bytes() - in_use_before
            peak.update(rss=max(peak["rss"], rss), pss=max(peak["pss"], pss), in_use=max(peak["in_use"], in_use))
            time.sleep(1.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = proc.communicate()[0]
    wall = time.time() - started
    sampler.join(timeout=2)
    if proc.returncode != 0:
        print(output[-5000:])
        raise SystemExit(f"raysweep tune exited {proc.returncode}")
    experiment = storage / name
    state_file = sorted(experiment.glob("experiment_state-*.json"))[-1]
    state = json.loads(state_file.read_text())
    rows = []
    for trial_json, runtime_json in state["trial_data"]:
        trial, runtime = json.loads(trial_json), json.loads(runtime_json)
        history = [json.loads(x) for x in (experiment / trial["relative_logdir"] / "result.json").read_text().splitlines() if x.strip()]
        if not history:
            continue
        start = runtime["start_time"]
        compute = sum(h.get("epoch_time_s", 0) + h.get("eval_time_s", 0) for h in history)
        rows.append({"trial": trial["trial_id"], "status": trial["status"], "epochs": history[-1].get("epoch"),
                     "start": start, "end": history[-1]["timestamp"], "compute_s": compute,
                     "first_report_s": history[0]["timestamp"] - start, "end_s": history[-1]["timestamp"] - start,
                     "map": history[-1].get("val.map", history[-1].get("test.map")), "train_epoch_s": sum(h.get("epoch_time_s", 0) for h in history) / len(history)})
    import pandas as pd

    frame = pd.read_parquet(experiment / "results.parquet")
    rule = output.rfind("\n|---")  # the table's header rule; the header is the line above it
    print(output[output.rfind("\n", 0, rule) + 1:] if rule >= 0 else output[-3000:])
    print(f"\nwall time of the whole command: {wall:.0f} s")
    print(f"peak memory of the command's process session: PSS {peak['pss'] / 2**30:.2f} GiB summed (what it "
          f"uses), RSS {peak['rss'] / 2**30:.2f} GiB summed (shared pages counted once per process); the machine's "
          f"memory in use rose by up to {peak['in_use'] / 2**30:.2f} GiB")
    for row in rows:
        print(f"trial {row['trial']}: {row['status']}, {row['epochs']} epochs, start→first report {row['first_report_s']:.1f} s, "
              f"start→end {row['end_s']:.1f} s, mean training epoch {row['train_epoch_s']:.1f} s, last val mAP {row['map']:.3f}")
    cores = os.cpu_count() or 1
    ideal = sum(r["compute_s"] for r in rows) / cores
    trials_wall = max(r["end"] for r in rows) - min(r["start"] for r in rows)
    print(f"trial compute (training + evaluation, summed over trials and epochs): {sum(r['compute_s'] for r in rows):.0f}"
          f" s; ideal wall on {cores} cores {ideal:.0f} s; first trial start → last report {trials_wall:.0f} s "
          f"({trials_wall / ideal:.2f}× ideal); whole command {wall:.0f} s ({wall / ideal:.2f}× ideal)")
    first = [r["first_report_s"] - r["train_epoch_s"] for r in rows]
    print(f"fixed per-trial overhead (first report minus one training epoch), mean: {sum(first) / len(first):.1f} s")
    objective = str(frame["objective"].iloc[0])  # val.map: the trial validation selects
    best = frame.loc[frame[f"last.{objective}"].idxmax()]
    metrics = ", ".join(f"{c[5:]} {best[c]:.3f}" for c in frame.columns
                        if c.startswith("last.test.") and "map" in c)
    print(f"best trial by {objective}: {best[f'last.{objective}']:.3f}; test: {metrics}; outcomes: {frame['outcome'].value_counts().to_dict()}")
    print(f"experiment kept at {experiment}")


if __name__ == "__main__":
    main()
