"""Experiment folder (local or URI) → one tidy row per trial → parquet.

Reads Tune's files directly (no Ray started): the newest `experiment_state-*.json` for statuses and errors, and
each trial's full report history merged over its sessions by `raysweep.results.history` (never `progress.csv`,
whose columns freeze at the first report). Works on a running experiment and after a crash; writing is atomic, so re-running is idempotent.
"""

from __future__ import annotations

import io
import json
import logging
import math
import re
from typing import Any, Optional

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from raysweep.errors import UserError
from raysweep.results.history import TRAIN_SUBDIR, parse_lines, read_trial_history, segment_wall_time
from raysweep.spec.load import flatten, load_sweep
from raysweep.sweep import storage

log = logging.getLogger(__name__)
LOWER_IS_BETTER = {"loss"}
_EXCEPTION_LINE = re.compile(r"^(?:[\w.]+\.)?(\w*(?:Error|Exception|Failure|Interrupt)):\s*(.*)$")


def _list(fs: pafs.FileSystem, inner: str) -> list[pafs.FileInfo]:
    return fs.get_file_info(pafs.FileSelector(inner, recursive=False, allow_not_found=True))


def _read(fs: pafs.FileSystem, inner: str) -> Optional[str]:
    try:
        with fs.open_input_stream(inner) as stream:
            return stream.read().decode(errors="replace")
    except (FileNotFoundError, OSError):
        return None


def error_reason(text: Optional[str]) -> Optional[str]:
    """The last `SomeError: message` line of a Tune error.txt (the root cause Ray re-raises last)."""
    if not text:
        return None
    reason = None
    for line in text.splitlines():
        match = _EXCEPTION_LINE.match(line.strip())
        if match:
            reason = f"{match.group(1)}: {match.group(2)}".strip()
    return reason or text.strip().splitlines()[-1][:500]


def _history(text: Optional[str]) -> list[dict[str, Any]]:
    return parse_lines(text)


def _wall_time(history: list[dict[str, Any]]) -> float:
    """Sum over restore segments (Tune's time_total_s restarts at 0 on resume)."""
    return segment_wall_time(history)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _parse_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UserError(f"{where}: not valid JSON ({exc})") from None


def _trial_states(state: Any, where: str) -> dict[str, dict[str, Any]]:
    """Trial id → status, folder, sampled config and failures, from a Tune `experiment_state-*.json`."""
    trials: dict[str, dict[str, Any]] = {}
    try:
        for trial_json, runtime_json in state.get("trial_data", []):
            trial, runtime = json.loads(trial_json), json.loads(runtime_json)
            trials[trial["trial_id"]] = {
                "trial_id": trial["trial_id"], "status": trial.get("status", "UNKNOWN"),
                "dir": trial.get("relative_logdir"), "sampled": trial.get("config", {}),
                "num_failures": runtime.get("num_failures", 0), "error_file": runtime.get("error_filename")}
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise UserError(f"{where}: not a Tune experiment state ({type(exc).__name__}: {exc})") from None
    return trials


def trial_rows(experiment_dir: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    fs, inner = storage.filesystem(experiment_dir)
    kind = fs.get_file_info(inner).type
    if kind == pafs.FileType.NotFound:
        raise UserError(f"{experiment_dir}: no such experiment folder")
    if kind != pafs.FileType.Directory:
        raise UserError(f"{experiment_dir}: not a folder; give an experiment folder (<storage>/<name>)")
    entries = _list(fs, inner)
    meta_text = _read(fs, f"{inner}/raysweep_meta.json")
    if meta_text is None:
        raise UserError(f"{experiment_dir}: not a raysweep experiment (no raysweep_meta.json)")
    meta = _parse_json(meta_text, storage.join(experiment_dir, "raysweep_meta.json"))
    if not isinstance(meta, dict):
        raise UserError(f"{storage.join(experiment_dir, 'raysweep_meta.json')}: expected a JSON object")
    states = sorted(e.base_name for e in entries if e.base_name.startswith("experiment_state-")
                    and e.base_name.endswith(".json"))
    trials: dict[str, dict[str, Any]] = {}
    if states:
        where = storage.join(experiment_dir, states[-1])
        trials = _trial_states(_parse_json(_read(fs, f"{inner}/{states[-1]}") or "{}", where), where)
    # Trial folders the last snapshot has not seen yet (a crash right after they started).
    for entry in entries:
        if entry.type != pafs.FileType.Directory or entry.base_name.startswith(("_", ".")):
            continue
        if any(t["dir"] == entry.base_name for t in trials.values()):
            continue
        history = read_trial_history(fs, entry.path).rows
        params = _read(fs, f"{entry.path}/params.json")
        trial_id = history[0].get("trial_id", entry.base_name) if history else entry.base_name
        sampled = _parse_json(params, storage.join(experiment_dir, entry.base_name, "params.json")) if params else {}
        trials[trial_id] = {"trial_id": trial_id, "status": "UNKNOWN", "dir": entry.base_name,
                            "sampled": sampled, "num_failures": 0, "error_file": None}
    rows = []
    for trial in trials.values():
        folder = f"{inner}/{trial['dir']}" if trial["dir"] else None
        merged = read_trial_history(fs, folder, f"{inner}/{TRAIN_SUBDIR}/{trial['trial_id']}")
        history = merged.rows
        error = None
        if trial["status"] == "ERROR" and folder:
            error = error_reason(_read(fs, f"{folder}/{trial['error_file'] or 'error.txt'}"))
        rows.append({**trial, "history": history, "error": error, "wall_time_s": merged.wall_time_s})
    return rows, meta


def collect_frame(experiment_dir: str) -> pd.DataFrame:
    experiment_dir = storage.normalise(experiment_dir)
    rows, meta = trial_rows(experiment_dir)
    base_config: dict[str, Any] = {}
    resources: dict[str, Any] = {}
    metric_names: tuple[str, ...] = ()
    space_text = _read(*_fs_path(storage.join(experiment_dir, "raysweep_space.yaml")))
    if space_text is not None:
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "space.yaml"
            path.write_text(space_text)
            try:
                sweep = load_sweep(path, meta.get("overrides", []))
            except UserError as err:  # name the experiment's copy, not the temporary file
                copy = storage.join(experiment_dir, "raysweep_space.yaml")
                raise UserError(str(err).replace(str(path), copy)) from None
        base_config = sweep.base_config
        resources = sweep.spec.resources.model_dump()
        resources["gpus_per_worker"] = sweep.spec.resources.gpus
        metric_names = sweep.task_cls.metric_names
    versions = meta.get("versions", {})
    records = []
    for trial in rows:
        history = trial["history"]
        config = flatten(base_config)
        for key, value in trial["sampled"].items():
            config[key] = value
        record: dict[str, Any] = {
            "experiment": meta.get("name"), "task": meta.get("task"), "trial_id": trial["trial_id"],
            "status": trial["status"], "error": trial["error"], "num_failures": trial["num_failures"],
        }
        last = history[-1] if history else {}
        epochs_done = int(max((r.get("epoch") or 0) for r in history)) if history else 0
        epochs_total = last.get("epochs_total")
        failure = next((r.get("trial_failure") for r in reversed(history) if r.get("trial_failure")), None)
        if failure and not record["error"]:
            record["error"] = f"TrialFailure: {failure}"
        record["outcome"] = _outcome(trial["status"], epochs_done, epochs_total)
        record["epochs_done"] = epochs_done
        record["epochs_total"] = epochs_total
        record["wall_time_s"] = trial.get("wall_time_s", _wall_time(history))
        record["seed"] = config.get("train.seed")
        for key, value in resources.items():
            record[f"resources.{key}"] = value
        for key, value in sorted(config.items()):
            record[f"config.{key}"] = value if not isinstance(value, (list, dict)) else json.dumps(value)
        numeric = sorted({k for r in history for k, v in r.items() if _is_number(v)} - _TUNE_BOOKKEEPING)
        for key in numeric:
            values = [float(r[key]) for r in history if _is_number(r.get(key)) and math.isfinite(float(r[key]))]
            record[f"last.{key}"] = float(last[key]) if _is_number(last.get(key)) else (values[-1] if values else None)
            if key in metric_names or key in LOWER_IS_BETTER:
                evaluated = [float(r[key]) for r in history if _is_number(r.get(key)) and r.get("evaluated", True)
                             and math.isfinite(float(r[key]))]
                if evaluated:
                    record[f"best.{key}"] = min(evaluated) if key in LOWER_IS_BETTER else max(evaluated)
        for key in ("raysweep", "torch", "ray", "optuna", "git_commit"):
            record[f"version.{key}"] = versions.get(key)
        records.append(record)
    frame = pd.DataFrame.from_records(records)
    if len(frame):
        frame = frame.sort_values("trial_id").reset_index(drop=True)
    return frame


_TUNE_BOOKKEEPING = {"timestamp", "training_iteration", "time_this_iter_s", "time_total_s", "pid", "time_since_restore",
                     "iterations_since_restore", "done", "evaluated", "epochs_total"}


def _fs_path(path: str) -> tuple[pafs.FileSystem, str]:
    return storage.filesystem(path)


def _outcome(status: str, epochs_done: int, epochs_total: Optional[int]) -> str:
    if status == "ERROR":
        return "error"
    if status == "TERMINATED":
        if epochs_total is not None and epochs_done < int(epochs_total):
            return "pruned"  # stopped early by the scheduler (or the per-trial time limit)
        return "completed"
    return status.lower()


def write_parquet(frame: pd.DataFrame, target: str) -> None:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buffer)
    storage.write_bytes_atomic(target, buffer.getvalue())


def collect_experiment(experiment_dir: str, target: str) -> pd.DataFrame:
    """Collect, then write `target` atomically: on any error the previous file is left as it was."""
    frame = collect_frame(experiment_dir)
    try:
        write_parquet(frame, storage.normalise(target))
    except OSError as exc:  # includes pyarrow's IO errors for URIs
        reason = exc.strerror or str(exc).splitlines()[0]
        raise UserError(f"{target}: cannot write the results parquet ({reason})") from None
    return frame
