"""`raysweep tune`: validate, run the sweep, print the table and the parquet path.

Exit codes: 0 finished, 2 bad input (one line), 130 interrupted by Ctrl-C (state saved, resume command printed),
1 the experiment folder vanished mid-run.
"""

from __future__ import annotations

import sys
from typing import Optional

from raysweep.spec.load import load_sweep


def run(space: str, overrides: list[str], name: Optional[str], storage: Optional[str], resume: bool,
        address: Optional[str], force_unlock: bool = False) -> None:
    from raysweep.results.tables import render_table
    from raysweep.sweep.runner import StorageLost, SweepInterrupted, run_sweep

    sweep = load_sweep(space, overrides)
    try:
        outcome = run_sweep(sweep, name=name, storage_path=storage, resume=resume, address=address,
                            force_unlock=force_unlock, space_arg=space)
    except SweepInterrupted as stopped:
        print(f"raysweep: {stopped}", file=sys.stderr, flush=True)
        raise SystemExit(130) from None
    except StorageLost as lost:
        print(f"raysweep: {lost}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    print()
    print(render_table(outcome.parquet, "markdown"))
    print()
    print(f"Results: {outcome.parquet}")
    print(f"Wall time: {outcome.wall_time_s:.0f} s for {outcome.num_trials} trials")
