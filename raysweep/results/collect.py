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
from raysweep.experiment import storage
from raysweep.experiment.layout import (
    ERROR_FILE,
    FAILURE_KEY,
    META_FILE,
    PARAMS_FILE,
    RESULT_FILE,
    TRAIN_SUBDIR,
    ExperimentLayout,
)
from raysweep.experiment.meta import VERSIONED, check_meta_matches, load_saved_sweep, parse_meta
from raysweep.experiment.meta import expect as _expect
from raysweep.results.trial_history import TUNE_BOOKKEEPING, is_number, read_trial_history, segment_wall_time
from raysweep.results.trial_history import read_or_none as _read
from raysweep.spec.load import flatten

log = logging.getLogger(__name__)
_EXCEPTION_LINE = re.compile(r"^(?:[\w.]+\.)?(\w*(?:Error|Exception|Failure|Interrupt)):\s*(.*)$")


def _list(fs: pafs.FileSystem, inner: str) -> list[pafs.FileInfo]:
    return fs.get_file_info(pafs.FileSelector(inner, recursive=False, allow_not_found=True))


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


_NUMERIC_REPORT_KEYS = ("epoch", "epochs_total", "time_total_s")  # what collecting computes with


def _history(text: Optional[str], where: str = RESULT_FILE) -> list[dict[str, Any]]:
    """One dict per report line of a trial's result.json. A line cut short by a crash mid-write is skipped; a line
    that is not a JSON object, or whose epoch / time is not a number, is damage: UserError naming file and line."""
    rows = []
    for number, line in enumerate((text or "").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a crash mid-write
            continue
        except RecursionError:
            raise UserError(f"{where}: line {number}: nested too deeply to be a report") from None
        if not isinstance(row, dict):
            raise UserError(
                f"{where}: line {number}: expected a JSON object (one report per line), got {type(row).__name__}"
            )
        for key in _NUMERIC_REPORT_KEYS:
            value = row.get(key)
            if value is not None and not (is_number(value) and math.isfinite(float(value))):
                raise UserError(f"{where}: line {number}: {key!r} is {_short(value)}, expected a finite number")
        rows.append(row)
    return rows


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:79] + "…"


def _wall_time(history: list[dict[str, Any]]) -> float:
    """Sum over restore segments (Tune's time_total_s restarts at 0 on resume)."""
    return segment_wall_time(history)


def _parse_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UserError(f"{where}: not valid JSON ({exc})") from None
    except RecursionError:
        raise UserError(f"{where}: not valid JSON (nested too deeply)") from None


def _trial_states(state: Any, where: str) -> dict[str, dict[str, Any]]:
    """Trial id → status, folder, sampled config and failures, from a Tune `experiment_state-*.json`."""
    trials: dict[str, dict[str, Any]] = {}
    try:
        for trial_json, runtime_json in _expect(state, dict, where, "the file").get("trial_data", []):
            trial = _expect(json.loads(trial_json), dict, where, "a trial entry")
            runtime = _expect(json.loads(runtime_json), dict, where, "a trial's runtime entry")
            trial_id = _expect(trial["trial_id"], str, where, "'trial_id'")
            what = f"trial {trial_id}:"
            trials[trial_id] = {
                "trial_id": trial_id,
                "status": _expect(trial.get("status", "UNKNOWN"), str, where, f"{what} 'status'"),
                "dir": _expect(trial.get("relative_logdir"), (str, type(None)), where, f"{what} 'relative_logdir'"),
                "sampled": _expect(trial.get("config", {}), dict, where, f"{what} 'config'"),
                "num_failures": _expect(runtime.get("num_failures", 0), int, where, f"{what} 'num_failures'"),
                "error_file": _expect(
                    runtime.get("error_filename"), (str, type(None)), where, f"{what} 'error_filename'"
                ),
            }
    except RecursionError:
        raise UserError(f"{where}: not a Tune experiment state (nested too deeply)") from None
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
    layout = ExperimentLayout(experiment_dir)
    meta_text = _read(fs, f"{inner}/{META_FILE}")
    if meta_text is None:
        raise UserError(f"{experiment_dir}: not a raysweep experiment (no {META_FILE})")
    meta_where = layout.meta
    meta = parse_meta(_parse_json(meta_text, meta_where), meta_where)
    states = sorted(
        e.base_name for e in entries if e.base_name.startswith("experiment_state-") and e.base_name.endswith(".json")
    )
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
        _history(_read(fs, f"{entry.path}/{RESULT_FILE}"), layout.path(entry.base_name, RESULT_FILE))
        history = read_trial_history(fs, entry.path).rows
        params = _read(fs, f"{entry.path}/{PARAMS_FILE}")
        if not history and params is None:  # not a trial folder (Tune writes params.json first), e.g. plots/
            continue
        trial_id = history[0].get("trial_id", entry.base_name) if history else entry.base_name
        if not isinstance(trial_id, str):
            trial_id = entry.base_name
        params_where = layout.path(entry.base_name, PARAMS_FILE)
        sampled = _expect(_parse_json(params, params_where), dict, params_where, "the file") if params else {}
        trials[trial_id] = {
            "trial_id": trial_id,
            "status": "UNKNOWN",
            "dir": entry.base_name,
            "sampled": sampled,
            "num_failures": 0,
            "error_file": None,
        }
    rows = []
    for trial in trials.values():
        folder = f"{inner}/{trial['dir']}" if trial["dir"] else None
        where = layout.path(trial["dir"], RESULT_FILE) if folder else ""
        if folder:  # damaged report lines are the user's one-line error, named by file and line
            _history(_read(fs, f"{folder}/{RESULT_FILE}"), where)
        merged = read_trial_history(fs, folder, f"{inner}/{TRAIN_SUBDIR}/{trial['trial_id']}")
        history = merged.rows
        error = None
        if trial["status"] == "ERROR" and folder:
            error = error_reason(_read(fs, f"{folder}/{trial['error_file'] or ERROR_FILE}"))
        rows.append({**trial, "history": history, "error": error, "wall_time_s": merged.wall_time_s})
    return rows, meta


def collect_frame(
    experiment_dir: str, read: Optional[tuple[list[dict[str, Any]], dict[str, Any]]] = None
) -> pd.DataFrame:
    experiment_dir = storage.normalise(experiment_dir)
    rows, meta = read or trial_rows(experiment_dir)
    base_config: dict[str, Any] = {}
    resources: dict[str, Any] = {}
    objective, mode = meta.get("metric"), meta.get("mode", "max")
    selection = meta.get("selection")
    searched: list[str] = []
    layout = ExperimentLayout(experiment_dir)
    space_text = _read(*_fs_path(layout.space_copy))
    if space_text is not None:
        sweep = load_saved_sweep(layout, meta.get("overrides", []), space_text)
        check_meta_matches(meta, sweep.spec.task, layout.meta)
        base_config = sweep.base_config
        resources = sweep.spec.resources.model_dump()
        resources["gpus_per_worker"] = sweep.spec.resources.gpus
        objective, mode, selection, searched = sweep.metric, sweep.mode, sweep.spec.selection, list(sweep.params)
    versions = meta.get("versions", {})
    records = []
    for trial in rows:
        history = trial["history"]
        config = flatten(base_config)
        for key, value in trial["sampled"].items():
            config[key] = value
        record: dict[str, Any] = {
            "experiment": meta.get("name"),
            "task": meta.get("task"),
            "trial_id": trial["trial_id"],
            "status": trial["status"],
            "error": trial["error"],
            "num_failures": trial["num_failures"],
        }
        last = history[-1] if history else {}
        epochs_done = int(max((r.get("epoch") or 0) for r in history)) if history else 0
        epochs_total = last.get("epochs_total")
        failure = next((r.get(FAILURE_KEY) for r in reversed(history) if r.get(FAILURE_KEY)), None)
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
        record["selection"] = selection
        record["objective"] = objective
        record["objective_mode"] = mode
        record["searched"] = json.dumps(searched)
        numeric = sorted({k for r in history for k, v in r.items() if is_number(v)} - _TUNE_BOOKKEEPING)
        for key in numeric:
            values = [float(r[key]) for r in history if is_number(r.get(key)) and math.isfinite(float(r[key]))]
            record[f"last.{key}"] = float(last[key]) if is_number(last.get(key)) else (values[-1] if values else None)
        if objective:
            record.update(best_epoch_columns(history, objective, mode))
        for key in VERSIONED:
            record[f"version.{key}"] = versions.get(key)
        records.append(record)
    frame = pd.DataFrame.from_records(records)
    if len(frame):
        frame = frame.sort_values("trial_id").reset_index(drop=True)
    return frame


def best_epoch_columns(history: list[dict[str, Any]], objective: str, mode: str) -> dict[str, Any]:
    """`best_<split>.<metric>`: every split metric at the evaluated epoch where `<split>.<objective metric>` was best.

    `best_val.*` is model selection over epochs on validation data (the test numbers beside it are the test
    evaluation of that epoch; missing when test was not evaluated then). `best_test.*` picks the epoch on the test
    set itself: only for reproducing a published protocol that did so (HQM's best of per-epoch test evaluations).
    Ties go to the earliest epoch.
    """
    split, _, name = objective.partition(".")
    if split not in ("val", "test") or not name:
        return {}
    columns: dict[str, Any] = {}
    for chosen in ("val", "test"):
        key = f"{chosen}.{name}"
        # the selection split is carried forward on epochs without evaluation: only evaluated epochs count
        rows = [
            r
            for r in history
            if is_number(r.get(key))
            and math.isfinite(float(r[key]))
            and (r.get("evaluated", True) if chosen == split else r.get("test_evaluated", True))
        ]
        if not rows:
            continue
        pick = max if mode == "max" else min
        best = pick(rows, key=lambda r: float(r[key]))
        columns[f"best_{chosen}.epoch"] = int(best.get("epoch") or 0)
        for metric, value in best.items():
            if metric.startswith(("val.", "test.")) and is_number(value):
                own_split = metric.split(".", 1)[0]
                fresh = best.get("evaluated", True) if own_split == split else best.get("test_evaluated", True)
                columns[f"best_{chosen}.{metric}"] = float(value) if fresh else None
    return columns


_TUNE_BOOKKEEPING = TUNE_BOOKKEEPING


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


OUTPUT_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "CSV"}


def output_format(target: str) -> str:
    """parquet or csv, from the file name; anything else is refused before anything is collected or written."""
    suffix = "." + target.rsplit(".", 1)[-1].lower() if "." in target.rsplit("/", 1)[-1] else ""
    if suffix not in OUTPUT_FORMATS:
        raise UserError(
            f"{target}: cannot tell the format from {suffix or 'a name without suffix'!r}; name the "
            f"output {', '.join('*' + s for s in OUTPUT_FORMATS)}"
        )
    return OUTPUT_FORMATS[suffix]


def _models(frame: pd.DataFrame) -> tuple[Any, Any]:
    """The config and resources schemas behind the frame's columns (None when the task is unknown)."""
    from raysweep.spec.schema import Resources
    from raysweep.tasks.registry import TASKS, get_card

    tasks = set(frame["task"].dropna()) if "task" in frame.columns else set()
    task = next(iter(tasks)) if len(tasks) == 1 else None
    return (get_card(task).config_model if task in TASKS else None), Resources


def encode(frame: pd.DataFrame, fmt: str, flat_names: bool = False) -> bytes:
    """The frame as parquet (with the stable schema of `results.columns`) or CSV bytes."""
    from raysweep.results.columns import arrow_table
    from raysweep.results.columns import flat_names as flatten_names

    table = arrow_table(frame, *_models(frame)) if len(frame.columns) else pa.table({})
    if flat_names:
        table = table.rename_columns([flatten_names(table.column_names)[c] for c in table.column_names])
    buffer = io.BytesIO()
    if fmt == "CSV":
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, buffer)
    else:
        pq.write_table(table, buffer)
    return buffer.getvalue()


def write_parquet(frame: pd.DataFrame, target: str, flat_names: bool = False) -> None:
    storage.write_bytes_atomic(target, encode(frame, output_format(target), flat_names))


def collect_experiment(experiment_dir: str, target: str, flat_names: bool = False) -> pd.DataFrame:
    """Collect, then write `target` (parquet, or CSV for *.csv) atomically: on any error the previous file is left as
    it was. The per-epoch history and per-class files go beside it (raysweep.results.history)."""
    from raysweep.results.history import write_histories

    fmt = output_format(target)
    read = trial_rows(storage.normalise(experiment_dir))
    frame = collect_frame(experiment_dir, read)
    try:
        write_parquet(frame, storage.normalise(target), flat_names)
        write_histories(storage.normalise(experiment_dir), *read, storage.normalise(target))
    except OSError as exc:  # includes pyarrow's IO errors for URIs
        reason = exc.strerror or str(exc).splitlines()[0]
        raise UserError(f"{target}: cannot write the results {fmt} ({reason})") from None
    return frame
