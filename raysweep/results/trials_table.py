"""`raysweep report --layout trials`: one row per trial, best first, and the best configuration as an override line.

The table a researcher reads while choosing what to run next: every searched parameter as a column, the outcome and
epochs done, the objective (validation when the sweep selected on it) and the test numbers beside it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any, Optional

import pandas as pd

from raysweep.results.tables import keep_outcomes, metric_column, objective_metric, render_cells, table_for
from raysweep.tasks.paper_table import Unit


def searched_keys(frame: pd.DataFrame) -> list[str]:
    """The sweep's searched keys (the parquet's `searched` column), else the config keys whose values vary."""
    if "searched" in frame.columns and frame["searched"].notna().any():
        try:
            keys = json.loads(str(frame["searched"].dropna().iloc[0]))
            if isinstance(keys, list):
                return [str(k) for k in keys if f"config.{k}" in frame.columns]
        except ValueError:
            pass
    columns = [c for c in frame.columns if c.startswith("config.")]
    return [c[len("config.") :] for c in columns if frame[c].astype(str).nunique() > 1]


def override_line(row: dict[str, Any], keys: Sequence[str]) -> str:
    """`key=value ...` that fixes a trial's searched values (Hydra-style, as `raysweep tune` takes them)."""
    parts = []
    for key in keys:
        value = row.get(f"config.{key}")
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, float):
            text = f"{value:.6g}"
        else:
            text = str(value)
        parts.append(f"{key}={text}")
    return " ".join(parts)


def render_trials(frame: pd.DataFrame, fmt: str, statuses: Optional[Sequence[str]], epoch: str) -> str:
    """Every trial (of the wanted outcomes) best first: its searched values, outcome, epochs done, objective and
    the table's test columns (V-COCO trials get Scenario 1 / 2), in the table's unit."""
    table = table_for(frame)
    if statuses is not None:
        frame, _ = keep_outcomes(frame, statuses)
    if frame.empty:
        return "(no trials to list" + (f": none with outcome {', '.join(statuses)})" if statuses else ")")
    objective = objective_metric(frame)
    split = "val" if metric_column(frame, epoch, "val", objective) and epoch != "best_test" else "test"
    sort_column = metric_column(frame, epoch, split, objective)
    keys = searched_keys(frame)
    mode_max = not ("objective_mode" in frame.columns and (frame["objective_mode"] == "min").all())
    if sort_column:
        frame = frame.assign(_sort=pd.to_numeric(frame[sort_column], errors="coerce"))
        frame = frame.sort_values("_sort", ascending=not mode_max, na_position="last", kind="stable")
    test_columns = {display: metric_column(frame, epoch, "test", metric) for display, metric in table.columns.items()}
    header = ["trial", *keys, "outcome", "epochs", f"{split}.{objective}", *test_columns]
    rows = []
    for record in frame.to_dict("records"):
        done, total = record.get("epochs_done"), record.get("epochs_total")
        cells = [
            str(record.get("trial_id")),
            *(_value(record.get(f"config.{k}")) for k in keys),
            str(record.get("outcome")),
            f"{_int(done)}/{_int(total)}",
            _number(record.get(sort_column) if sort_column else None, table.unit),
            *(_number(record.get(c) if c else None, table.unit) for c in test_columns.values()),
        ]
        rows.append(cells)
    if fmt == "csv":
        return pd.DataFrame(rows, columns=header).to_csv(index=False).rstrip()
    text = render_cells(header, rows, fmt, first_value_column=1 + len(keys) + 2)
    if fmt != "markdown":
        return text
    best = frame.to_dict("records")[0]
    line = override_line(best, keys)
    text += (
        f"\n\nSorted by {split}.{objective} at {epoch.replace('_', ' ')} ({table.unit}). Best trial "
        f"{best.get('trial_id')}: fix its values with\n\n    {line or '(nothing was searched)'}"
    )
    return text


def _value(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _int(value: Any) -> str:
    try:
        return str(int(value))
    except (TypeError, ValueError):
        return "?"


def _number(value: Any, unit: Unit) -> str:
    """A metric value in the table's unit; "–" when missing."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "–"
    return unit.show(number)
