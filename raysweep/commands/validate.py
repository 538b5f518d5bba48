"""`raysweep validate`: load and check a space file; print the resolved space and fixed config. No Ray."""

from __future__ import annotations

import os
import sys

import yaml

from raysweep.errors import UserError
from raysweep.spec.load import Sweep, flatten, load_sweep

SELECTION_NOTES = {
    "val": "a validation split is carved out of the training set; ASHA and Optuna see validation metrics only, "
           "test metrics are reported beside them",
    "none": "a fixed grid on the full training set; nothing is selected, the table shows test numbers",
    "test": "selects on the test set ON PURPOSE, to reproduce a published protocol; the report flags it",
}


def run(space: str, overrides: list[str]) -> None:
    sweep = load_sweep(space, overrides)
    searched = set(sweep.params)
    fixed = {k: v for k, v in flatten(sweep.base_config).items() if k not in searched}
    grid = sweep.grid_points()
    print(f"# {sweep.path}: task {sweep.spec.task!r}, experiment {sweep.name!r} — OK")
    print(f"# objective: {sweep.mode} {sweep.metric}; {sweep.num_trials} trials"
          + (f" ({len(grid)} grid points × {sweep.spec.trials.num_samples})" if grid else "")
          + f"; scheduler {sweep.spec.scheduler.type} (max {sweep.max_epochs} epochs)")
    print(f"# selection: {sweep.spec.selection} — " + SELECTION_NOTES[sweep.spec.selection])
    print(yaml.safe_dump({"search": sweep.resolved_space()}, sort_keys=False).rstrip())
    print(yaml.safe_dump({"fixed": fixed}, sort_keys=False).rstrip())
    settings = sweep.spec.model_dump(include={"optuna", "scheduler", "trials", "resources", "storage", "failure", "ray",
                                              "tracking"})
    print(yaml.safe_dump(settings, sort_keys=False).rstrip())
    for warning in machine_warnings(sweep):
        print(f"raysweep: warning: {warning}", file=sys.stderr)


def machine_warnings(sweep: Sweep) -> list[str]:
    """What would stop `raysweep tune` on this machine although the file is valid: resources a local instance
    cannot give a trial, trackers that cannot start. (Joining a cluster, its resources are checked at `tune`.)"""
    import torch

    from raysweep.experiment import storage
    from raysweep.sweep.ray_session import concurrency
    from raysweep.sweep.tracking import check_tracking

    warnings = []
    if not sweep.spec.ray.address and not os.environ.get("RAY_ADDRESS"):
        machine = {"CPU": float(os.cpu_count() or 1), "GPU": float(torch.cuda.device_count())}
        try:
            concurrency(sweep, machine, local=True)
        except UserError as err:
            warnings.append(str(err).replace("this Ray instance has", "this machine has"))
    try:
        check_tracking(sweep, storage.join(storage.normalise(sweep.spec.storage.path), sweep.name))
    except UserError as err:
        warnings.append(str(err))
    return warnings
