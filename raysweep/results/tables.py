"""The paper's table from a results parquet: rows from the task's row labels, mean ± std over trials (seeds)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd

from raysweep.errors import UserError
from raysweep.sweep import storage
from raysweep.tasks.registry import get_task

FORMATS = ("markdown", "latex", "csv")


def load_results(source: str) -> pd.DataFrame:
    """A parquet file, or an experiment folder/URI (collected on the fly, nothing written)."""
    from raysweep.results.collect import collect_frame

    if source.endswith(".parquet"):
        if not storage.exists(storage.normalise(source)):
            raise UserError(f"{source}: no such file")
        try:
            fs, inner = storage.filesystem(storage.normalise(source))
            import pyarrow.parquet as pq

            return pq.read_table(inner, filesystem=fs).to_pandas()
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise UserError(f"{source}: not a readable parquet file ({str(exc).splitlines()[0]})") from None
    return collect_frame(source)


def summarise(frame: pd.DataFrame, statuses: Optional[Sequence[str]] = ("completed",)) -> tuple[pd.DataFrame, dict[str, str]]:
    """(one row per table row with `<col> mean`, `<col> std`, `n`), and the table's display → metric columns."""
    if frame.empty:
        return pd.DataFrame(), {}
    task_cls = get_task(str(frame["task"].iloc[0]))
    if statuses is not None:
        wanted = {s.lower() for s in statuses} | ({"completed"} if "terminated" in {s.lower() for s in statuses} else set())
        frame = frame[frame["outcome"].str.lower().isin(wanted) | frame["status"].str.lower().isin(wanted)]
    if frame.empty:
        return pd.DataFrame(), task_cls.table_columns
    configs = [{k[len("config."):]: v for k, v in row.items() if k.startswith("config.")} for row in frame.to_dict("records")]
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
    return pd.DataFrame(out_rows), task_cls.table_columns


def _cell(mean: float, std: float, latex: bool = False) -> str:
    if math.isnan(mean):
        return "–"
    pm = r" $\pm$ " if latex else " ± "
    return f"{100 * mean:.2f}" + ("" if math.isnan(std) else f"{pm}{100 * std:.2f}")


def render_table(source: str | pd.DataFrame, fmt: str = "markdown", statuses: Optional[Sequence[str]] = ("completed",)) -> str:
    frame = source if isinstance(source, pd.DataFrame) else load_results(str(source))
    summary, columns = summarise(frame, statuses)
    if summary.empty:
        return "(no trials to tabulate yet" + (f": none with status {', '.join(statuses)})" if statuses else ")")
    label_cols = [c for c in summary.columns if c != "n" and not c.endswith((" mean", " std"))]
    if fmt == "csv":
        return summary.to_csv(index=False).rstrip()
    header = label_cols + list(columns) + ["n"]
    body = [[str(r[c]) for c in label_cols] + [_cell(r[f"{d} mean"], r[f"{d} std"], fmt == "latex") for d in columns]
            + [str(r["n"])] for r in summary.to_dict("records")]
    if fmt == "latex":
        lines = [r"\begin{tabular}{" + "l" * len(label_cols) + "r" * (len(columns) + 1) + "}", r"\toprule",
                 " & ".join(_tex(h) for h in header) + r" \\", r"\midrule"]
        lines += [" & ".join(_tex(c) if i < len(label_cols) else c for i, c in enumerate(row)) + r" \\" for row in body]
        lines += [r"\bottomrule", r"\end{tabular}"]
        return "\n".join(lines)
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(header)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    rule = "|" + "|".join(("-" * (w + 1) + ":") if i >= len(label_cols) else ("-" * (w + 2)) for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), rule] + [line(row) for row in body]) + "\n\nmAP in %, mean ± std over n trials."


def _tex(text: str) -> str:
    return text.replace("_", r"\_").replace("&", r"\&").replace("%", r"\%").replace("@", "@")
