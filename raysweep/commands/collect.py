"""`raysweep collect`: experiment → parquet or CSV (idempotent; works while the sweep runs and after a crash)."""

from __future__ import annotations

from typing import Optional

from raysweep.experiment import storage
from raysweep.experiment.layout import RESULTS_FILE
from raysweep.results.collect import collect_experiment


def run(experiment: str, output: Optional[str], flat_names: bool = False) -> None:
    experiment = storage.normalise(experiment)
    target = output or storage.join(experiment, RESULTS_FILE)
    frame = collect_experiment(experiment, target, flat_names=flat_names)
    counts = frame["status"].value_counts().to_dict() if len(frame) else {}
    summary = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())) or "no trials yet"
    print(f"{target}: {len(frame)} trials ({summary})")
