"""`raysweep tune`: validate, run the sweep, collect the experiment into its parquet, print the table.

The sweep (`raysweep.sweep.runner`) and the collection (`raysweep.results.collect`) are separate layers; this
command runs one after the other, also after Ctrl-C and after storage loss (what was kept is collected).

Exit codes: 0 finished, 2 bad input (one line), 130 interrupted by Ctrl-C (state saved, resume command printed),
1 the experiment folder vanished mid-run.
"""

from __future__ import annotations

import sys
import time
from typing import Optional

from raysweep.spec.load import load_sweep


def run(space: str, overrides: list[str], name: Optional[str], storage: Optional[str], resume: bool,
        address: Optional[str], force_unlock: bool = False) -> None:
    from raysweep.results.collect import collect_experiment
    from raysweep.results.tables import render_table
    from raysweep.sweep.runner import StorageLost, SweepInterrupted, run_sweep

    sweep = load_sweep(space, overrides)
    try:
        outcome = run_sweep(sweep, name=name, storage_path=storage, resume=resume, address=address,
                            force_unlock=force_unlock, space_arg=space)
    except SweepInterrupted as stopped:
        collect_experiment(stopped.experiment_dir, stopped.parquet)
        print(f"raysweep: {stopped}", file=sys.stderr, flush=True)
        raise SystemExit(130) from None
    except StorageLost as lost:
        print(f"raysweep: {lost}. {kept_after_loss(lost)}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    collecting = time.time()
    collect_experiment(outcome.experiment_dir, outcome.parquet)
    wall_time_s = outcome.wall_time_s + time.time() - collecting
    print()
    print(render_table(outcome.parquet, "markdown"))
    print()
    print(f"Results: {outcome.parquet}")
    print(f"Wall time: {wall_time_s:.0f} s for {outcome.num_trials} trials")


def kept_after_loss(lost) -> str:
    """Collect what the sweep wrote back after losing its storage; says what was kept."""
    from raysweep.errors import UserError
    from raysweep.results.collect import collect_experiment

    if not lost.parquet:
        return lost.nothing_kept or "Nothing could be written back."
    try:
        frame = collect_experiment(lost.experiment_dir, lost.parquet)
    except (OSError, UserError) as exc:
        return f"Nothing could be written back ({exc})."
    return (f"The histories this process still held ({len(frame)} trials) are in {lost.parquet}; the checkpoints "
            f"were lost, so --resume would restart those trials.")
