"""`raysweep plots`: the sweep's views as one self-contained HTML page and PNGs, from the experiment's own files."""

from __future__ import annotations

from typing import Optional

from raysweep.results.plots import FORMATS, write_plots


def run(experiment: str, out: Optional[str], fmt: Optional[str]) -> None:
    formats = FORMATS if fmt is None else (fmt,)
    paths, views = write_plots(experiment, out, formats)
    for view in views:
        if view.note:
            print(f"{view.title}: not shown ({view.note})")
    for path in paths:
        print(path)
