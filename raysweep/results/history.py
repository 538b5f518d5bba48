"""Per-epoch history of every trial as one tidy (long) table: `history.parquet` beside `results.parquet`.

One row per (trial, epoch, metric) with every number the workers reported that epoch. Built by `collect` from the
same per-trial report histories as the results table; an epoch reported twice (the epoch in flight when a sweep
was interrupted, redone on resume) keeps its last report. Columns:

| column | meaning |
|---|---|
| `experiment`, `task`, `trial_id` | identity |
| `epoch` | 1-based epoch of the report (the scheduler's time unit) |
| `evaluated` | whether the task's metrics were computed this epoch (else they are carried forward) |
| `wall_time_s` | training wall time of the trial up to this report, summed over resumed segments |
| `metric`, `value` | the reported name (`loss`, `lr`, `map`, ...) and its value (float64; NaN kept) |
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from raysweep.experiment import per_class
from raysweep.experiment.layout import HISTORY_PARQUET, PER_CLASS_FILE, beside
from raysweep.results.trial_history import TUNE_BOOKKEEPING, is_number

COLUMNS = ("experiment", "task", "trial_id", "epoch", "evaluated", "wall_time_s", "metric", "value")
# Tune's own bookkeeping and the identity columns: everything else numeric in a report is a history metric.
_NOT_METRICS = TUNE_BOOKKEEPING | {"epoch"}


def trial_history(trial_id: str, history: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Tidy rows of one trial's reports (dicts in report order, as in Tune's result.json)."""
    by_epoch: dict[int, dict[str, Any]] = {}
    done_before, segment_max, previous = 0.0, 0.0, -1.0
    for report in history:
        t = float(report.get("time_total_s") or 0.0)
        if t < previous:  # Tune's clock restarts at 0 on resume
            done_before += segment_max
            segment_max = 0.0
        segment_max, previous = max(segment_max, t), t
        epoch = report.get("epoch")
        if not is_number(epoch):
            continue
        by_epoch[int(epoch)] = {"report": report, "wall_time_s": done_before + t}
    rows = []
    for epoch in sorted(by_epoch):
        report, wall = by_epoch[epoch]["report"], by_epoch[epoch]["wall_time_s"]
        for metric in sorted(k for k, v in report.items() if is_number(v) and k not in _NOT_METRICS):
            rows.append(
                {
                    "trial_id": trial_id,
                    "epoch": epoch,
                    "evaluated": bool(report.get("evaluated", True)),
                    "wall_time_s": wall,
                    "metric": metric,
                    "value": float(report[metric]),
                }
            )
    return rows


def history_frame(trials: Sequence[Mapping[str, Any]], meta: Mapping[str, Any]) -> pd.DataFrame:
    """All trials' tidy rows, from `collect.trial_rows`' trial records (each with `trial_id` and `history`)."""
    rows = [row for trial in trials for row in trial_history(trial["trial_id"], trial.get("history") or [])]
    frame = pd.DataFrame.from_records(rows, columns=[c for c in COLUMNS if c not in ("experiment", "task")])
    frame.insert(0, "task", pd.Series([meta.get("task")] * len(frame), dtype="string"))
    frame.insert(0, "experiment", pd.Series([meta.get("name")] * len(frame), dtype="string"))
    frame = frame.astype(
        {
            "trial_id": "string",
            "epoch": "int64",
            "evaluated": "bool",
            "wall_time_s": "float64",
            "metric": "string",
            "value": "float64",
        }
    )
    return frame.sort_values(["trial_id", "epoch", "metric"], kind="stable").reset_index(drop=True)


def write_histories(
    experiment_dir: str, trials: Sequence[Mapping[str, Any]], meta: Mapping[str, Any], target: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """history.parquet and per_class.parquet beside `target` (the results parquet), each written atomically."""
    from raysweep.results.collect import write_parquet

    history = history_frame(trials, meta)
    write_parquet(history, beside(target, HISTORY_PARQUET))
    classes = per_class.gather(experiment_dir, [t["trial_id"] for t in trials])
    per_class.write(classes, beside(target, PER_CLASS_FILE))
    return history, classes
