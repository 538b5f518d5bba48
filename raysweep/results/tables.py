"""The paper's table from a results parquet: rows from the task's row labels, mean ± std over trials (seeds)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import pandas as pd
from tabulate import SEPARATING_LINE, tabulate

from raysweep.errors import UserError
from raysweep.experiment import storage
from raysweep.tasks.paper_table import PaperTable, Unit, metrics_table
from raysweep.tasks.registry import get_card

FORMATS = ("markdown", "latex", "csv")
LAYOUTS = ("paper", "results", "trials")
REQUIRED_COLUMNS = ("task", "outcome", "status")  # what summarising a results parquet reads besides metrics


def load_results(source: str) -> pd.DataFrame:
    """A parquet file, or an experiment folder/URI (collected on the fly, nothing written)."""
    from raysweep.results.collect import collect_frame

    if source.endswith(".parquet"):
        if not storage.exists(storage.normalise(source)):
            raise UserError(f"{source}: no such file")
        try:
            fs, inner = storage.filesystem(storage.normalise(source))
            import pyarrow.parquet as pq

            frame = pq.read_table(inner, filesystem=fs).to_pandas()
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise UserError(f"{source}: not a readable parquet file ({str(exc).splitlines()[0]})") from None
        missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
        if missing and len(frame.columns):  # no columns at all: collected before any trial started
            raise UserError(
                f"{source}: not a raysweep results file (no column(s) {', '.join(missing)}); give a "
                f"parquet written by `raysweep collect` or `raysweep tune`"
            )
        return frame
    return collect_frame(source)


EPOCHS = ("last", "best_val", "best_test")
EPOCH_NOTES = {
    "last": "the last epoch",
    "best_val": "the epoch with the best validation objective (best_val)",
    "best_test": "the best of the per-epoch test evaluations (best_test: selected on the test set, only for "
    "reproducing a published protocol that did so)",
}
SEED_KEY = "train.seed"  # the key whose values are repeats of one configuration, not different configurations


def metric_column(frame: pd.DataFrame, epoch: str, split: str, metric: str) -> Optional[str]:
    """The parquet column of `<split>.<metric>` at `epoch` ("last" / "best_val" / "best_test"); experiments
    collected before validation splits existed have unprefixed test metrics."""
    for name in (f"{epoch}.{split}.{metric}", *((f"{epoch}.{metric}",) if split == "test" and epoch == "last" else ())):
        if name in frame.columns:
            return name
    return None


def summarise(
    frame: pd.DataFrame, statuses: Optional[Sequence[str]] = ("completed",), epoch: str = "last"
) -> tuple[pd.DataFrame, PaperTable]:
    """One row per table row: `<col> mean`, `<col> std` over the test metrics of the row's trials, `n`, `selected`;
    and the table the rows belong to (its columns and unit).

    Trials pool into one row only when their configs differ in the seed alone (and they share an outcome). When a
    row's trials hold several configurations, the one with the best mean validation objective is shown and the row
    says so ("best of k by val"); without validation metrics each configuration is its own row, labelled by the
    keys that differ. The frame's `attrs` carry what was left out and how rows were formed, for the footer.
    """
    if frame.empty:
        return pd.DataFrame(), metrics_table(())
    if epoch not in EPOCHS:
        raise UserError(f"--epoch: {epoch!r} is not one of {', '.join(EPOCHS)}")
    table = table_for(frame)
    left_out: dict[str, int] = {}
    if statuses is not None:
        frame, left_out = keep_outcomes(frame, statuses)
    if frame.empty:
        empty = pd.DataFrame()
        empty.attrs.update(left_out=left_out, epoch=epoch)
        return empty, table
    objective = objective_metric(frame)
    val_column = metric_column(frame, epoch, "val", objective) if epoch != "best_test" else None
    configs = trial_configs(frame)
    labels = pd.DataFrame([table.row_labels(c) for c in configs], index=frame.index)
    label_cols = list(labels.columns)
    signatures = pd.Series(
        [_signature(c, o) for c, o in zip(configs, frame["outcome"], strict=True)], index=frame.index
    )
    several_outcomes = frame["outcome"].nunique() > 1
    data = pd.concat([labels, frame.rename(columns={"outcome": "_outcome"})], axis=1)
    out_rows: list[dict[str, Any]] = []
    extra_labels: list[str] = []
    selected_rows = 0
    by = label_cols + (["_outcome"] if several_outcomes else [])  # outcomes are never pooled, nor selected between
    groups = data.groupby(by, sort=True, dropna=False) if by else [((), data)]  # no label columns: one group
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        base: dict[str, Any] = dict(zip(label_cols, key, strict=False))  # key: the labels, then the outcome
        by_config = {sig: group.loc[signatures[group.index] == sig] for sig in dict.fromkeys(signatures[group.index])}
        if several_outcomes:
            base["outcome"] = None
        if len(by_config) == 1 or val_column is None:
            varying = (
                _varying_keys([configs[frame.index.get_loc(i)] for i in group.index]) if len(by_config) > 1 else []
            )
            for part in by_config.values():
                row = dict(base)
                first = configs[frame.index.get_loc(part.index[0])]
                for k in varying:
                    row[k] = first.get(k)
                    if k not in extra_labels:
                        extra_labels.append(k)
                out_rows.append(_row(row, part, table, frame, epoch, val_column, several_outcomes, None))
        else:
            means = {sig: pd.to_numeric(part[val_column], errors="coerce").mean() for sig, part in by_config.items()}
            finite = {sig: m for sig, m in means.items() if not math.isnan(m)}
            if not finite:
                continue
            pick = max if _mode(frame) == "max" else min
            best = pick(finite, key=lambda sig: finite[sig])
            selected_rows += 1
            out_rows.append(
                _row(
                    dict(base),
                    by_config[best],
                    table,
                    frame,
                    epoch,
                    val_column,
                    several_outcomes,
                    f"best of {len(by_config)} by val",
                )
            )
    out_rows.sort(key=lambda r: table.sort_key(r, label_cols + extra_labels))
    summary = pd.DataFrame(out_rows)
    selection = (
        str(frame["selection"].dropna().iloc[0])
        if "selection" in frame.columns and frame["selection"].notna().any()
        else None
    )
    summary.attrs.update(
        left_out=left_out,
        epoch=epoch,
        selected_rows=selected_rows,
        split_rows=extra_labels,
        val_column=val_column,
        objective=objective,
        selection=selection,
        notes=table.footer_notes(configs[0]) if configs else [],
    )
    return summary, table


def keep_outcomes(frame: pd.DataFrame, statuses: Sequence[str]) -> tuple[pd.DataFrame, dict[str, int]]:
    """The trials whose outcome (or Tune status) is one of `statuses` ("terminated" includes "completed"), and how
    many of each other outcome were left out."""
    wanted = {s.lower() for s in statuses}
    wanted |= {"completed"} if "terminated" in wanted else set()
    keep = frame["outcome"].str.lower().isin(wanted) | frame["status"].str.lower().isin(wanted)
    left_out = {str(k): int(v) for k, v in frame.loc[~keep, "outcome"].astype(str).value_counts().items()}
    return frame[keep], left_out


def _row(
    row: dict[str, Any],
    part: pd.DataFrame,
    table: PaperTable,
    frame: pd.DataFrame,
    epoch: str,
    val_column: Optional[str],
    several_outcomes: bool,
    selected: Optional[str],
) -> dict[str, Any]:
    row["n"] = len(part)
    row["selected"] = selected or ""
    if several_outcomes:
        row["outcome"] = str(part["_outcome"].iloc[0])
    columns: dict[str, Optional[str]] = {"val": val_column} if val_column else {}
    columns.update({display: metric_column(frame, epoch, "test", metric) for display, metric in table.columns.items()})
    for display, column in columns.items():
        values = pd.to_numeric(part[column], errors="coerce").dropna() if column in part else pd.Series(dtype=float)
        row[f"{display} mean"] = float(values.mean()) if len(values) else math.nan
        row[f"{display} std"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
    return row


def objective_metric(frame: pd.DataFrame) -> str:
    """The task metric the sweep selected on (`map`), from the parquet's `objective` column, else the task's
    default objective."""
    if "objective" in frame.columns and frame["objective"].notna().any():
        return str(frame["objective"].dropna().iloc[0]).split(".", 1)[-1]
    return get_card(str(frame["task"].iloc[0])).metric_names[0]


def _mode(frame: pd.DataFrame) -> str:
    return "min" if "objective_mode" in frame.columns and (frame["objective_mode"] == "min").all() else "max"


def _signature(config: dict, outcome: str) -> str:
    import json

    return json.dumps([{k: str(v) for k, v in sorted(config.items()) if k != SEED_KEY}, outcome])


def _varying_keys(configs: list[dict]) -> list[str]:
    keys = sorted({k for c in configs for k in c} - {SEED_KEY})
    return [k for k in keys if len({str(c.get(k)) for c in configs}) > 1]


def footer(summary: pd.DataFrame, unit: Unit) -> str:
    """What the numbers are: the split, the unit, the epoch, how rows pool, what was left out."""
    attrs = summary.attrs
    parts = [
        f"Test {unit}, mean ± std over the n trials of one configuration (they differ in the seed only); values "
        f"at {EPOCH_NOTES[attrs.get('epoch', 'last')]}."
    ]
    if attrs.get("selection") == "test" or attrs.get("epoch") == "best_test":
        parts.append(
            "TEST-SET SELECTION: these numbers were chosen on the test set, as the published protocol "
            "being reproduced did; do not compare them with validation-selected numbers."
        )
    if attrs.get("val_column"):
        parts.append(
            f"`val`: the validation objective (val.{attrs.get('objective', 'map')}) that selected the "
            f"trial{unit.suffix}."
        )
    if attrs.get("selected_rows"):
        parts.append(
            "`best of k by val`: the row held k configurations; shown is the one with the best mean "
            "validation objective."
        )
    if attrs.get("split_rows"):
        parts.append(
            f"Rows differing in {', '.join(attrs['split_rows'])} are separate (no validation metric to "
            f"select between them)."
        )
    parts.extend(attrs.get("notes") or [])
    left = attrs.get("left_out") or {}
    if left:
        listed = ", ".join(f"{n} {o}" for o, n in sorted(left.items()))
        parts.append(
            f"Left out: {listed} trial{'s' * (sum(left.values()) != 1)} (--outcome to include; outcomes are "
            f"never averaged together)."
        )
    return " ".join(parts)


def _cell(mean: float, std: float, unit: Unit) -> str:
    """`mean ± std` in the table's unit; the mean alone for one trial; "–" without a value."""
    if math.isnan(mean):
        return "–"
    return unit.show(mean) + ("" if math.isnan(std) else f" ± {unit.show(std)}")


def render_table(
    source: str | pd.DataFrame,
    fmt: str = "markdown",
    statuses: Optional[Sequence[str]] = ("completed",),
    layout: Optional[str] = None,
    with_ko: bool = False,
    epoch: str = "last",
) -> str:
    """The table as text. layout "paper": the task's paper rows in the paper's order, missing ones shown as "–", rows
    that are not paper rows after them; "results": one row per result row; "trials": one row per trial, sorted by
    the objective, with the best configuration as an override line; None: "paper" when any trial is a paper row.
    `with_ko` adds the table's Known-Object column(s) to the paper layout (the paper has none). `epoch` picks the
    value of each trial: "last", "best_val" or "best_test" (see `EPOCH_NOTES`)."""
    if fmt not in FORMATS:
        raise UserError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    if layout is not None and layout not in LAYOUTS:
        raise UserError(f"--layout: {layout!r} is not one of {', '.join(LAYOUTS)}")
    if epoch not in EPOCHS:
        raise UserError(f"--epoch: {epoch!r} is not one of {', '.join(EPOCHS)}")
    frame = source if isinstance(source, pd.DataFrame) else load_results(str(source))
    if frame.empty:
        return _no_trials(statuses)
    layout = layout or default_layout(frame)
    if layout == "trials":
        from raysweep.results.trials_table import render_trials

        return render_trials(frame, fmt, statuses, epoch)
    if layout == "paper":
        return _render_paper(frame, fmt, statuses, with_ko, epoch)
    summary, table = summarise(frame, statuses, epoch)
    if summary.empty:
        return _no_trials(statuses) + _footer_left_out(summary, table.unit)
    shown = _value_columns(summary, list(table.columns))
    if fmt == "csv":
        return summary.to_csv(index=False).rstrip()
    text = _render(_label_columns(summary), shown, summary.to_dict("records"), fmt, table.unit)
    return text + (f"\n\n{footer(summary, table.unit)}" if fmt == "markdown" else "")


def _value_columns(summary: pd.DataFrame, columns: list[str]) -> list[str]:
    """The validation column (when the trials were selected on validation data), then the task's test columns."""
    return (["val"] if "val mean" in summary.columns else []) + columns


def _footer_left_out(summary: pd.DataFrame, unit: Unit) -> str:
    left = summary.attrs.get("left_out") or {}
    return f"\n\n{footer(summary, unit)}" if left else ""


def default_layout(frame: pd.DataFrame) -> str:
    """ "paper" when the task has paper rows and some trial (any outcome) is one of them, else "results"."""
    if frame.empty:
        return "results"
    table = table_for(frame)
    if any(table.is_paper_row(table.row_labels(c)) for c in trial_configs(frame)):
        return "paper"
    return "results"


def _render_paper(frame: pd.DataFrame, fmt: str, statuses: Optional[Sequence[str]], with_ko: bool, epoch: str) -> str:
    summary, table = summarise(frame, statuses, epoch)
    if not table.rows:
        task = str(frame["task"].iloc[0])
        raise UserError(f"--layout paper: task {task!r} has no paper table; use --layout results")
    shown = [d for d in table.columns if with_ko or d not in table.known_object]
    shown = _value_columns(summary, shown)
    label_cols = table.label_columns
    records = summary.to_dict("records") if not summary.empty else []
    found = {table.row_key(r): r for r in records if all(c in r for c in label_cols)}
    missing = {"n": 0, "selected": "", **{f"{d} {stat}": math.nan for d in shown for stat in ("mean", "std")}}
    paper = [found.get(table.row_key(row)) or {**row, **missing} for row in table.rows]
    extra = [r for r in records if not (all(c in r for c in label_cols) and table.is_paper_row(r))]
    extra_cols = _label_columns(summary) if extra else label_cols
    if fmt == "csv":
        value_cols = [f"{d} {stat}" for d in shown for stat in ("mean", "std")] + ["n", "selected"]
        rows = [{**{c: r[c] for c in label_cols}, "in_paper": True, **{c: r.get(c) for c in value_cols}} for r in paper]
        rows += [
            {**{c: r.get(c) for c in extra_cols}, "in_paper": False, **{c: r.get(c) for c in value_cols}} for r in extra
        ]
        return pd.DataFrame(rows).to_csv(index=False).rstrip()
    if fmt == "latex":
        return _render(label_cols, shown, paper + extra, fmt, table.unit, rule_before=len(paper) if extra else None)
    text = _render(label_cols, shown, paper, fmt, table.unit)
    text += f"\n\n{footer(summary, table.unit)} – : no result for this row."
    if extra:
        text += f"\n\nNot in the paper ({len(extra)} row{'s' * (len(extra) != 1)}):\n\n" + _render(
            extra_cols, shown, extra, fmt, table.unit
        )
    return text


def _render(
    label_cols: list[str],
    columns: list[str],
    records: list[dict[str, Any]],
    fmt: str,
    unit: Unit,
    rule_before: Optional[int] = None,
) -> str:
    """Rows of label cells, then `<col> mean` ± `<col> std` per column in `unit`, then n; a rule before record
    `rule_before` (LaTeX)."""
    selected = any(r.get("selected") for r in records)
    header = label_cols + columns + ["n"] + (["selected"] if selected else [])
    body = [
        [str(r.get(c)) for c in label_cols]
        + [_cell(r.get(f"{d} mean", math.nan), r.get(f"{d} std", math.nan), unit) for d in columns]
        + [str(r["n"])]
        + ([str(r.get("selected") or "")] if selected else [])
        for r in records
    ]
    return render_cells(header, body, fmt, len(label_cols), rule_before)


def render_cells(
    header: Sequence[str],
    body: Sequence[Sequence[str]],
    fmt: str,
    first_value_column: int,
    rule_before: Optional[int] = None,
) -> str:
    """Plain-text cells as a Markdown pipe table or a LaTeX booktabs tabular (label columns left, value columns from
    `first_value_column` on right-aligned; LaTeX: a `\\midrule` before row `rule_before`).

    Every header and cell is escaped for the format: LaTeX's special characters by tabulate, then "±" as
    `$\\pm$`; `|` in Markdown."""
    align = ["left"] * first_value_column + ["right"] * (len(header) - first_value_column)
    rows: list[Any] = [list(row) for row in body]
    if fmt == "latex":
        if rule_before is not None and 0 < rule_before < len(rows):
            rows.insert(rule_before, SEPARATING_LINE)
        text = tabulate(rows, headers=list(header), tablefmt="latex_booktabs", colalign=align, disable_numparse=True)
        return text.replace("±", r"$\pm$")
    escaped = [[cell.replace("|", r"\|") for cell in row] for row in rows]
    return tabulate(
        escaped, headers=[h.replace("|", r"\|") for h in header], tablefmt="pipe", colalign=align, disable_numparse=True
    )


def table_for(frame: pd.DataFrame) -> PaperTable:
    """The table these trials are laid out in: their task's paper table for them (a task may lay datasets out
    differently), else a column per metric."""
    return task_table(str(frame["task"].iloc[0]), trial_configs(frame))


def task_table(task: str, configs: Sequence[Mapping[str, Any]]) -> PaperTable:
    """Task `task`'s table for trials with these flat configs (`TaskCard.paper_table`), else a column per metric."""
    card = get_card(task)
    return card.paper_table(configs) or metrics_table(card.metric_names)


def trial_configs(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Each trial's flat config (dotted keys) from its `config.<key>` columns."""
    return [
        {k[len("config.") :]: v for k, v in row.items() if str(k).startswith("config.")}
        for row in frame.to_dict("records")
    ]


def _label_columns(summary: pd.DataFrame) -> list[str]:
    return [c for c in summary.columns if c not in ("n", "selected") and not c.endswith((" mean", " std"))]


def _no_trials(statuses: Optional[Sequence[str]]) -> str:
    return "(no trials to tabulate yet" + (f": none with status {', '.join(statuses)})" if statuses else ")")
