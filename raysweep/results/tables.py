"""The paper's table from a results parquet: rows from the task's row labels, mean ± std over trials (seeds)."""

from __future__ import annotations

import math
from typing import Optional, Sequence

import pandas as pd

from raysweep.errors import UserError
from raysweep.sweep import storage
from raysweep.tasks.registry import get_task

FORMATS = ("markdown", "latex", "csv")
LAYOUTS = ("paper", "results")
REQUIRED_COLUMNS = ("task", "outcome", "status")  # what summarising a results parquet reads besides metrics
KNOWN_OBJECT = "Known-Object"  # display columns the paper layout shows only with `with_ko`


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
            raise UserError(f"{source}: not a raysweep results file (no column(s) {', '.join(missing)}); give a "
                            f"parquet written by `raysweep collect` or `raysweep tune`")
        return frame
    return collect_frame(source)


def summarise(frame: pd.DataFrame, statuses: Optional[Sequence[str]] = ("completed",)) -> tuple[pd.DataFrame, dict[str, str]]:
    """(one row per table row with `<col> mean`, `<col> std`, `n`), and the table's display → metric columns."""
    if frame.empty:
        return pd.DataFrame(), {}
    task_cls = _table_task(frame)
    if statuses is not None:
        wanted = {s.lower() for s in statuses} | ({"completed"} if "terminated" in {s.lower() for s in statuses} else set())
        frame = frame[frame["outcome"].str.lower().isin(wanted) | frame["status"].str.lower().isin(wanted)]
    if frame.empty:
        return pd.DataFrame(), task_cls.table_columns
    configs = _trial_configs(frame)
    labels = pd.DataFrame([task_cls.row_labels(c) for c in configs], index=frame.index)
    label_cols = list(labels.columns)
    data = pd.concat([labels, frame], axis=1)
    out_rows = []
    for key, group in data.groupby(label_cols, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(label_cols, key))
        row["n"] = len(group)
        for display, metric in task_cls.table_columns.items():
            column = f"last.{metric}"
            values = pd.to_numeric(group[column], errors="coerce").dropna() if column in group else pd.Series(dtype=float)
            row[f"{display} mean"] = float(values.mean()) if len(values) else math.nan
            row[f"{display} std"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
        out_rows.append(row)
    out_rows.sort(key=lambda r: _order_key(r, label_cols, task_cls.row_order))
    return pd.DataFrame(out_rows), task_cls.table_columns


def _order_key(row: dict, label_cols: Sequence[str], order: dict[str, tuple[str, ...]]) -> tuple:
    """Rows by the task's `row_order` per label column (listed values first, in order), then by the label text."""
    key = []
    for col in label_cols:
        listed = order.get(col, ())
        value = str(row[col])
        key.append((listed.index(value) if value in listed else len(listed), value))
    return tuple(key)


def _cell(mean: float, std: float, latex: bool = False) -> str:
    if math.isnan(mean):
        return "–"
    pm = r" $\pm$ " if latex else " ± "
    return f"{100 * mean:.2f}" + ("" if math.isnan(std) else f"{pm}{100 * std:.2f}")


def render_table(source: str | pd.DataFrame, fmt: str = "markdown", statuses: Optional[Sequence[str]] = ("completed",),
                 layout: Optional[str] = None, with_ko: bool = False) -> str:
    """The table as text. layout "paper": the task's paper rows in the paper's order, missing ones shown as "–", rows
    that are not paper rows after them; "results": one row per result row; None: "paper" when any trial is a paper row.
    `with_ko` adds the Known-Object column(s) to the paper layout (the paper has none)."""
    if fmt not in FORMATS:
        raise UserError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    if layout is not None and layout not in LAYOUTS:
        raise UserError(f"--layout: {layout!r} is not one of {', '.join(LAYOUTS)}")
    frame = source if isinstance(source, pd.DataFrame) else load_results(str(source))
    if frame.empty:
        return _no_trials(statuses)
    if (layout or default_layout(frame)) == "paper":
        return _render_paper(frame, fmt, statuses, with_ko)
    summary, columns = summarise(frame, statuses)
    if summary.empty:
        return _no_trials(statuses)
    if fmt == "csv":
        return summary.to_csv(index=False).rstrip()
    text = _render(_label_columns(summary), list(columns), summary.to_dict("records"), fmt)
    return text + ("\n\nmAP in %, mean ± std over n trials." if fmt == "markdown" else "")


def default_layout(frame: pd.DataFrame) -> str:
    """"paper" when the task has paper rows and some trial (any outcome) is one of them, else "results"."""
    if frame.empty:
        return "results"
    task_cls = _table_task(frame)
    if not task_cls.paper_rows:
        return "results"
    label_cols = list(task_cls.paper_rows[0])
    paper = {_row_key(row, label_cols) for row in task_cls.paper_rows}
    configs = _trial_configs(frame)
    return "paper" if any(_row_key(task_cls.row_labels(c), label_cols) in paper for c in configs) else "results"


def _render_paper(frame: pd.DataFrame, fmt: str, statuses: Optional[Sequence[str]], with_ko: bool) -> str:
    task_cls = _table_task(frame)
    if not task_cls.paper_rows:
        raise UserError(f"--layout paper: task {task_cls.name!r} has no paper table; use --layout results")
    summary, _ = summarise(frame, statuses)
    shown = [d for d in task_cls.table_columns if not d.startswith(KNOWN_OBJECT)]
    if with_ko:
        shown += [d for d in task_cls.table_columns if d.startswith(KNOWN_OBJECT)]
    label_cols = list(task_cls.paper_rows[0])
    records = summary.to_dict("records") if not summary.empty else []
    found = {_row_key(r, label_cols): r for r in records if all(c in r for c in label_cols)}
    missing = {"n": 0, **{f"{d} {stat}": math.nan for d in shown for stat in ("mean", "std")}}
    paper = [found.get(_row_key(row, label_cols)) or {**row, **missing} for row in task_cls.paper_rows]
    paper_keys = {_row_key(row, label_cols) for row in task_cls.paper_rows}
    extra = [r for r in records if not (all(c in r for c in label_cols) and _row_key(r, label_cols) in paper_keys)]
    extra_cols = _label_columns(summary) if extra else label_cols
    if fmt == "csv":
        value_cols = [f"{d} {stat}" for d in shown for stat in ("mean", "std")] + ["n"]
        rows = [{**{c: r[c] for c in label_cols}, "in_paper": True, **{c: r[c] for c in value_cols}} for r in paper]
        rows += [{**{c: r.get(c) for c in extra_cols}, "in_paper": False, **{c: r[c] for c in value_cols}}
                 for r in extra]
        return pd.DataFrame(rows).to_csv(index=False).rstrip()
    if fmt == "latex":
        return _render(label_cols, shown, paper + extra, fmt, rule_before=len(paper) if extra else None)
    text = _render(label_cols, shown, paper, fmt)
    text += "\n\nmAP in %, mean ± std over n trials; – : no result for this row."
    if extra:
        text += (f"\n\nNot in the paper ({len(extra)} row{'s' * (len(extra) != 1)}):\n\n"
                 + _render(extra_cols, shown, extra, fmt))
    return text


def _render(label_cols: list[str], columns: list[str], records: list[dict], fmt: str,
            rule_before: Optional[int] = None) -> str:
    """Markdown or LaTeX rows of label cells, then `<col> mean` ± `<col> std` per column, then n; LaTeX puts a rule
    before record `rule_before`."""
    header = label_cols + columns + ["n"]
    body = [[str(r.get(c)) for c in label_cols] + [_cell(r[f"{d} mean"], r[f"{d} std"], fmt == "latex") for d in columns]
            + [str(r["n"])] for r in records]
    if fmt == "latex":
        lines = [r"\begin{tabular}{" + "l" * len(label_cols) + "r" * (len(columns) + 1) + "}", r"\toprule",
                 " & ".join(_tex(h) for h in header) + r" \\", r"\midrule"]
        for index, row in enumerate(body):
            if index == rule_before:
                lines.append(r"\midrule")
            lines.append(" & ".join(_tex(c) if i < len(label_cols) else c for i, c in enumerate(row)) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
        return "\n".join(lines)
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(header)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    rule = "|" + "|".join(("-" * (w + 1) + ":") if i >= len(label_cols) else ("-" * (w + 2)) for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), rule] + [line(row) for row in body])


def _table_task(frame: pd.DataFrame):
    """The task class whose table attributes fit these trials (a task may lay datasets out differently:
    `table_for(configs)`), else the task itself."""
    task_cls = get_task(str(frame["task"].iloc[0]))
    table_for = getattr(task_cls, "table_for", None)
    return table_for(_trial_configs(frame)) if table_for is not None and len(frame) else task_cls


def _trial_configs(frame: pd.DataFrame) -> list[dict]:
    """Each trial's flat config (dotted keys) from its `config.<key>` columns."""
    return [{k[len("config."):]: v for k, v in row.items() if k.startswith("config.")} for row in frame.to_dict("records")]


def _label_columns(summary: pd.DataFrame) -> list[str]:
    return [c for c in summary.columns if c != "n" and not c.endswith((" mean", " std"))]


def _row_key(labels: dict, label_cols: list[str]) -> tuple[str, ...]:
    return tuple(str(labels.get(c)) for c in label_cols)


def _no_trials(statuses: Optional[Sequence[str]]) -> str:
    return "(no trials to tabulate yet" + (f": none with status {', '.join(statuses)})" if statuses else ")")


def _tex(text: str) -> str:
    return text.replace("_", r"\_").replace("&", r"\&").replace("%", r"\%").replace("@", "@")
