"""Where the searcher keeps the experiment's Optuna journal while the sweep runs: in the experiment folder, or on
local disk for a URI experiment (Optuna journals need a file system), copied into the experiment at the end."""

from __future__ import annotations

import hashlib
from pathlib import Path

from raysweep.experiment import storage
from raysweep.experiment.layout import ExperimentLayout


def local_study_journal(layout: ExperimentLayout, cache: Path, name: str) -> str:
    """The journal the searcher appends to."""
    if not storage.is_uri(layout.root):
        Path(layout.root).mkdir(parents=True, exist_ok=True)
        return layout.study
    folder = cache / "studies"
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder / f"{name}-{hashlib.sha1(layout.root.encode()).hexdigest()[:10]}.journal")


def save_study_journal(journal: str, layout: ExperimentLayout) -> None:
    """A journal kept on local disk for a URI experiment goes into the experiment folder (atomically)."""
    if journal != layout.study and Path(journal).is_file():
        storage.write_bytes_atomic(layout.study, Path(journal).read_bytes())
