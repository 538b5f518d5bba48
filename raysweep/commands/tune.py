"""`raysweep tune`: validate, run the sweep, print the table and the parquet path."""

from __future__ import annotations

from typing import Optional

from raysweep.spec.load import load_sweep


def run(space: str, overrides: list[str], name: Optional[str], storage: Optional[str], resume: bool,
        address: Optional[str]) -> None:
    from raysweep.results.tables import render_table
    from raysweep.sweep.runner import run_sweep

    sweep = load_sweep(space, overrides)
    outcome = run_sweep(sweep, name=name, storage_path=storage, resume=resume, address=address)
    print()
    print(render_table(outcome.parquet, "markdown"))
    print()
    print(f"Results: {outcome.parquet}")
    print(f"Wall time: {outcome.wall_time_s:.0f} s for {outcome.num_trials} trials")
