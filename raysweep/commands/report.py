"""`raysweep report`: the paper's table from an experiment or a parquet."""

from __future__ import annotations

from typing import Optional

from raysweep.results.tables import render_table


def run(source: str, fmt: str, status: str, layout: Optional[str] = None, with_ko: bool = False,
        epoch: str = "last", html: Optional[str] = None) -> None:
    statuses = None if status == "all" else [s.strip().lower() for s in status.split(",") if s.strip()]
    if html is not None:
        from raysweep.results.plots import check_html_target

        check_html_target(source, html)  # refused before anything is printed or written
    print(render_table(source, fmt, statuses=statuses, layout=layout, with_ko=with_ko, epoch=epoch))
    if html is not None:
        from raysweep.results.plots import write_report_page

        print(f"HTML report: {write_report_page(source, html)}")
