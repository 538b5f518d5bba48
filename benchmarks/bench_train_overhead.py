"""Training throughput inside a Ray trial against a plain PyTorch loop of the same task code, on the same cores.

    flock /tmp/raysweep-ray.lock python benchmarks/bench_train_overhead.py [--epochs 2]

Four phases in one run, each on the default DEFR sweep's config (search_spaces/defr.yaml, one thread per worker as
`resources.cpus_per_worker: 1` gives the trial):
  1. one plain loop alone: `Task.build`, then per epoch `Task.train_step` + backward + optimiser step + the LR
     schedule, and the validation evaluation, as the worker does; no Ray;
  2. two plain loops side by side (two processes, the two cores);
  3. `raysweep tune` with one trial alone;
  4. `raysweep tune` with two concurrent trials.
Throughput is images/s of the training part of the last epoch (the trial reports it as `images_per_s`; the plain
loop times it the same way); earlier epochs are warm-up. Prints in-trial / plain for one and for two at a time
(goal ≥ 0.95), and the load average, since other work on the machine moves every absolute number.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SPACE = REPO / "search_spaces" / "defr.yaml"
SAMPLED = {"classifier.init": "rand", "loss.name": "lse_sign", "optim.lr": 1e-3}


def plain_child(epochs: int, out: str) -> None:
    """The worker loop's arithmetic for one trial, no Ray: the task's train step, backward, AdamW, evaluation."""
    import torch
    from torch.utils.data import DataLoader

    from raysweep.spec.load import load_sweep, set_path
    from raysweep.sweep.task_cache import cache_dir
    from raysweep.tasks.base import evaluate_in_process

    torch.set_num_threads(1)  # = the trial worker's threads (cpus_per_worker: 1)
    sweep = load_sweep(SPACE, [f"train.epochs={epochs}", "scheduler.type=none"])
    config = sweep.config_for(SAMPLED)
    updates = sweep.task_cls.prepare(config, cache_dir(sweep))
    if updates:
        tree = config.model_dump(mode="json")
        for key, value in updates.items():
            set_path(tree, key, value)
        config = sweep.task_cls.config_model.model_validate(tree)
    task = sweep.task_cls(config, cache_dir=cache_dir(sweep))
    torch.manual_seed(0)
    parts = task.build(torch.device("cpu"))
    loader = DataLoader(parts.train_set, batch_size=parts.batch_size, shuffle=True, collate_fn=parts.collate_fn)
    rates = []
    for epoch in range(epochs):
        parts.model.train()
        started, images = time.perf_counter(), 0
        for it, batch in enumerate(loader):
            loss, _ = task.train_step(parts.model, batch, epoch, it, parts.state)
            parts.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if parts.grad_clip_norm:
                torch.nn.utils.clip_grad_norm_(parts.model.parameters(), parts.grad_clip_norm)
            parts.optimizer.step()
            parts.schedule.step_iteration(epoch + (it + 1) / len(loader))
            images += task.num_samples(batch)
        rates.append(images / (time.perf_counter() - started))
        evaluate_in_process(task, parts, "val" if parts.val_set is not None else "test")
    Path(out).write_text(json.dumps(rates))


def run_plain(copies: int, epochs: int) -> list[float]:
    folder = Path(tempfile.mkdtemp(prefix="raysweep-plain-"))
    procs = [subprocess.Popen([sys.executable, __file__, "--plain-child", str(folder / f"{i}.json"),
                               "--epochs", str(epochs)], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
             for i in range(copies)]
    if any(p.wait() != 0 for p in procs):
        raise SystemExit("a plain loop failed")
    return [json.loads((folder / f"{i}.json").read_text())[-1] for i in range(copies)]


def run_trials(concurrent: int, epochs: int, overrides: list[str]) -> list[float]:
    storage = Path(tempfile.mkdtemp(prefix="raysweep-train-overhead-"))
    cmd = [sys.executable, "-m", "raysweep.cli", "tune", str(SPACE), f"trials.num_samples={concurrent}",
           f"trials.max_concurrent={concurrent}", f"train.epochs={epochs}", "scheduler.type=none",
           *overrides, "--storage", str(storage), "--name", "train-overhead"]
    out = subprocess.run(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
    if out.returncode != 0:
        print(out.stdout[-3000:], out.stderr[-3000:])
        raise SystemExit(f"raysweep tune exited {out.returncode}")
    rates = []
    for result in (storage / "train-overhead").glob("*/result.json"):
        history = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        rates.append(history[-1]["images_per_s"])
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--trial-overrides", nargs="*", default=[],
                        help="extra key=value overrides for the trial phases, e.g. ray.report_interval_s=1")
    parser.add_argument("--plain-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_child:
        plain_child(args.epochs, args.plain_child)
        return
    loads: list[float] = [os.getloadavg()[0]]
    results: dict[str, Any] = {}
    for label, run in (("plain, alone", lambda: run_plain(1, args.epochs)),
                       ("plain, two side by side", lambda: run_plain(2, args.epochs)),
                       ("trial, alone", lambda: run_trials(1, args.epochs, args.trial_overrides)),
                       ("trials, two concurrent", lambda: run_trials(2, args.epochs, args.trial_overrides))):
        started = time.time()
        results[label] = run()
        loads.append(os.getloadavg()[0])
        print(f"{label}: images/s {', '.join(f'{r:.1f}' for r in results[label])} (sum {sum(results[label]):.1f}; "
              f"phase {time.time() - started:.0f} s; load average {loads[-1]:.1f})", flush=True)
    one = results["trial, alone"][0] / results["plain, alone"][0]
    two = sum(results["trials, two concurrent"]) / sum(results["plain, two side by side"])
    print(f"in-trial / plain throughput: one at a time {one:.2f}×, two at a time {two:.2f}× (goal ≥ 0.95); "
          f"load average during the run {min(loads):.1f}–{max(loads):.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
