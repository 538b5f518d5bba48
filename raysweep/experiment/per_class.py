"""The per-class files: per-class AP of every evaluation, kept per trial so per-class plots need no re-evaluation.

Each trial's rank 0 rewrites `<experiment>/_train/<trial_id>/per_class.parquet` atomically after every evaluation
(one row per class and evaluated epoch; an epoch evaluated again after a resume replaces its rows); `collect`
gathers the trials' files into `per_class.parquet` beside `results.parquet`.

Columns: `trial_id`, `split` (`val` or `test`: each evaluated split has its rows), `epoch`, then the task's
own (`Task.per_class_results`): `class_index`, `class_name`, `ap` (Default setting), `n_train` (training instances
of the class), `n_test`, and for HICO `few_shot_k` (the smallest k whose Few@k list holds the class, else null),
for HICO-DET `ap_known_object`, `hoi_id` and `rare` (null: no training instance, counted in Full only).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from raysweep.experiment import storage
from raysweep.experiment.layout import PER_CLASS_FILE, TRAIN_SUBDIR

RARE_BOUNDARY = 10  # HICO-DET's rare classes have fewer training instances than this
IDENTITY = ("trial_id", "split", "epoch")
# Types of the columns a task may leave all-null (one evaluation with no rare class, no Few@k list, ...).
_TYPES = {
    "trial_id": pa.string(),
    "split": pa.string(),
    "epoch": pa.int64(),
    "class_index": pa.int64(),
    "class_name": pa.string(),
    "ap": pa.float64(),
    "ap_known_object": pa.float64(),
    "n_train": pa.int64(),
    "n_test": pa.int64(),
    "few_shot_k": pa.int64(),
    "rare": pa.bool_(),
    "hoi_id": pa.int64(),
}


def trial_file(experiment_dir: str, trial_id: str) -> str:
    return storage.join(experiment_dir, TRAIN_SUBDIR, trial_id, PER_CLASS_FILE)


def _table(columns: Mapping[str, Sequence[Any]]) -> pa.Table:
    arrays = {}
    for name, values in columns.items():
        array = pa.array(list(values), type=_TYPES.get(name))
        arrays[name] = array.cast(pa.string()) if pa.types.is_null(array.type) else array
    return pa.table(arrays)


def read(path: str) -> pd.DataFrame | None:
    """One per-class file as a frame; None when it does not exist or cannot be read (a crash mid-write)."""
    try:
        fs, inner = storage.filesystem(path)
        return pq.read_table(inner, filesystem=fs).to_pandas()
    except (FileNotFoundError, OSError, pa.ArrowException):
        return None


def append_evaluation(
    path: str, trial_id: str, epoch: int, columns: Mapping[str, Sequence[Any]], split: str = "test"
) -> pd.DataFrame:
    """Add one evaluation's per-class columns to a trial's file (replacing rows of the same split and epoch);
    the whole file is rewritten atomically."""
    n = len(next(iter(columns.values()))) if columns else 0
    lengths = {k: len(v) for k, v in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"per-class columns differ in length: {lengths}")
    new = _table({"trial_id": [trial_id] * n, "split": [split] * n, "epoch": [int(epoch)] * n, **columns}).to_pandas()
    old = read(path)
    if old is not None and len(old):
        old = old[~((old["split"] == split) & (old["epoch"] == int(epoch)))]
        frame = pd.concat([old, new], ignore_index=True) if len(old) else new
    else:
        frame = new
    frame = frame.sort_values(["split", "epoch", "class_index"], kind="stable").reset_index(drop=True)
    write(frame, path)
    return frame


def write(frame: pd.DataFrame, path: str) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    fields = [
        pa.field(f.name, _TYPES.get(f.name, pa.string() if pa.types.is_null(f.type) else f.type)) for f in table.schema
    ]  # pandas turns int columns with nulls into float: back to the stable types
    buffer = io.BytesIO()
    pq.write_table(table.cast(pa.schema(fields)), buffer)
    storage.write_bytes_atomic(path, buffer.getvalue())


def gather(experiment_dir: str, trial_ids: Iterable[str]) -> pd.DataFrame:
    """Every listed trial's per-class rows in one frame (trials without a file contribute nothing)."""
    frames = [f for f in (read(trial_file(experiment_dir, t)) for t in sorted(trial_ids)) if f is not None and len(f)]
    if not frames:
        return pd.DataFrame(
            {
                name: pd.Series(dtype="object" if name in ("trial_id", "split") else "int64")
                for name in (*IDENTITY, "class_index")
            }
        ).assign(ap=pd.Series(dtype="float64"))
    return pd.concat(frames, ignore_index=True)
