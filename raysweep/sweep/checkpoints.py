"""Worker-side checkpoint reading for a resumed trial: the newest readable checkpoint, falling back to older ones.

Train hands a relaunched worker its latest committed checkpoint. When that one cannot be read (a torn write, a disk
error, a hand edit), the run falls back to the previous checkpoints Train keeps (`storage.keep_checkpoints`) and
says which file it skipped; only when none can be read does the trial end, with a reason naming every file.
Each checkpoint also carries `history.json`, every epoch reported before it, which `raysweep collect` uses to fill
epochs that a killed sweep had not yet synced to the trial's `result.json`.
"""

from __future__ import annotations

import json
import logging
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from raysweep.experiment.layout import CHECKPOINT_HISTORY, CHECKPOINT_PREFIX, FAILURE_FILE, STATE_FILE

log = logging.getLogger(__name__)


@dataclass
class ResumePoint:
    """What a relaunched worker starts from: a state, a recorded failure, or nothing readable (`unreadable`)."""

    state: Optional[dict[str, Any]] = None
    failure: Optional[dict[str, Any]] = None  # a trial that already failed for good
    history: list[dict[str, Any]] = field(default_factory=list)
    source: str = ""  # the checkpoint folder read
    skipped: list[str] = field(default_factory=list)  # "<file>: <why>" for every unreadable checkpoint tried

    @property
    def unreadable(self) -> bool:
        return self.state is None and self.failure is None

    def warning(self) -> Optional[str]:
        if not self.skipped:
            return None
        if self.unreadable:
            return "no readable checkpoint to resume from: " + "; ".join(self.skipped)
        return f"resumed from {self.source} because a newer checkpoint is unreadable: " + "; ".join(self.skipped)


def load_resume_point(checkpoint, device: torch.device) -> ResumePoint:
    """Try `checkpoint` (a `ray.train.Checkpoint`), then its older siblings, newest first."""
    point = ResumePoint()
    for candidate in [checkpoint, *_older_siblings(checkpoint)]:
        try:
            with candidate.as_directory() as folder:
                failed = Path(folder) / FAILURE_FILE
                # history.json is separate from state.pt: keep the longest one even from a damaged checkpoint, so
                # a trial that cannot resume still carries its epochs into its failure checkpoint.
                history = read_history(Path(folder) / CHECKPOINT_HISTORY)
                if len(history) > len(point.history):
                    point.history = history
                own_history = history
                if failed.exists():
                    point.failure = json.loads(failed.read_text())
                else:
                    state_file = Path(folder) / STATE_FILE
                    try:
                        state = torch.load(state_file, map_location=device, weights_only=True)
                        if not isinstance(state, dict) or not {"model", "epoch"} <= set(state):
                            raise ValueError("not a raysweep training state (no model or epoch)")
                    except Exception as exc:  # noqa: BLE001 - any damage means: try the previous checkpoint
                        raise _Unreadable(
                            f"{_display(candidate, STATE_FILE)}: {type(exc).__name__}: "
                            f"{' '.join(str(exc).split())[:300]}"
                        ) from None
                    point.state = state
                    point.history = own_history  # the epochs up to the state it resumes from, not a newer one's
        except _Unreadable as exc:
            point.skipped.append(str(exc))
            continue
        except Exception as exc:  # noqa: BLE001 - a folder that cannot even be listed or downloaded
            point.skipped.append(f"{_display(candidate, '')}: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
            continue
        point.source = _display(candidate, "")
        break
    if point.skipped:
        log.warning("%s", point.warning())
    return point


def read_history(path: Path) -> list[dict[str, Any]]:
    try:
        rows = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []


def write_history(folder: str | Path, history: list[dict[str, Any]]) -> None:
    """Into a checkpoint folder about to be reported (JSON-safe values only)."""
    Path(folder, CHECKPOINT_HISTORY).write_text(json.dumps(history, default=_json_safe))


def _json_safe(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def _older_siblings(checkpoint) -> list:
    """The run's other `checkpoint_*` folders whose names sort before this one (Train names them by time)."""
    import pyarrow.fs as pafs
    from ray.train import Checkpoint

    parent, name = posixpath.split(checkpoint.path.rstrip("/"))
    try:
        infos = checkpoint.filesystem.get_file_info(pafs.FileSelector(parent, allow_not_found=True))
    except Exception:  # noqa: BLE001 - nothing to fall back to
        return []
    names = sorted(
        (
            i.base_name
            for i in infos
            if i.type == pafs.FileType.Directory and i.base_name.startswith(CHECKPOINT_PREFIX) and i.base_name < name
        ),
        reverse=True,
    )
    return [Checkpoint(posixpath.join(parent, n), filesystem=checkpoint.filesystem) for n in names]


def _display(checkpoint, file: str) -> str:
    path = checkpoint.path.rstrip("/")
    return posixpath.join(path, file) if file else path


class _Unreadable(Exception):
    pass
