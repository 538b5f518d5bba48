"""`raysweep report`: the paper's table from an experiment or a parquet."""

from __future__ import annotations

from raysweep.errors import UserError
from raysweep.results.tables import FORMATS, render_table


def run(source: str, fmt: str, status: str) -> None:
    if fmt not in FORMATS:
        raise UserError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    statuses = None if status == "all" else [s.strip().lower() for s in status.split(",") if s.strip()]
    print(render_table(source, fmt, statuses=statuses))
