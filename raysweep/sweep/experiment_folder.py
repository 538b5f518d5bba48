"""Opening the experiment folder a sweep writes: a new experiment, a failed start to begin afresh, or one to
`--resume` (whose own space file and overrides win). One live sweep owns the folder (`raysweep.lock`); a second
one is refused. Everything here fails before Ray starts and before anything is written."""

from __future__ import annotations

import contextlib
import logging
import shlex
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from raysweep.errors import UserError
from raysweep.experiment import storage
from raysweep.experiment.layout import META_FILE, ExperimentLayout
from raysweep.experiment.meta import check_meta_matches, load_saved_sweep, parse_meta
from raysweep.spec.load import Sweep
from raysweep.sweep import sessions
from raysweep.sweep.lock import ExperimentLock

log = logging.getLogger(__name__)


@dataclass
class OpenedExperiment:
    """An experiment folder this process holds the lock of, and the sweep to run in it."""

    sweep: Sweep  # on --resume: the experiment's saved space file and overrides
    name: str
    storage_root: str
    layout: ExperimentLayout
    lock: ExperimentLock
    resume: bool
    existing: bool  # raysweep_meta.json is there: the meta and space copy are the experiment's own


@contextlib.contextmanager
def opened_experiment(
    sweep: Sweep, name: Optional[str], storage_path: Optional[str], resume: bool, force_unlock: bool
) -> Iterator[OpenedExperiment]:
    """Check the storage, take the lock and decide what the folder is; the lock is released on leaving, and a
    folder this start created without ever writing its meta is removed again."""
    root = storage.normalise(storage_path or sweep.spec.storage.path)
    name = name or sweep.name
    layout = ExperimentLayout(storage.join(root, name))
    storage.check_writable(root)
    lock = ExperimentLock(layout.root, force=force_unlock)
    lock.acquire()
    try:
        existing = storage.exists(layout.meta)
        if existing and not resume:
            raise UserError(
                f"experiment {name!r} already exists at {layout.root}; continue it with --resume or "
                f"choose another --name"
            )
        # raysweep_meta.json is written when the first trial starts: without it, an earlier start failed inside
        # Ray Tune before any trial (leaving the space copy and Tune's files), and the folder can be started afresh.
        leftover = not existing and storage.exists(layout.space_copy)
        if resume and not existing:
            why = " (an earlier start failed before its first trial)" if leftover else ""
            raise UserError(
                f"--resume: no raysweep experiment at {layout.root} (no {META_FILE}){why}; start it without --resume"
            )
        if not existing and sessions.has_started_trials(layout.root):
            raise UserError(
                f"{layout.root} holds trial folders but no {META_FILE}; it is not a raysweep "
                f"experiment that can be continued: choose another --name"
            )
        if resume:
            sweep = saved_sweep(layout, sweep)
        elif leftover or storage.exists(layout.path("tuner.pkl")):
            removed = sessions.clear_unstarted(layout.root)
            log.warning(
                "experiment %r never started a trial (an earlier start failed inside Ray Tune); starting it afresh%s",
                name,
                f" (removed {', '.join(removed)})" if removed else "",
            )
        yield OpenedExperiment(
            sweep=sweep, name=name, storage_root=root, layout=layout, lock=lock, resume=resume, existing=existing
        )
    except BaseException:
        if lock.info is not None and not storage.exists(layout.meta):
            lock.release()
            lock.remove_folder_if_empty()
        raise
    finally:
        lock.release()


def saved_sweep(layout: ExperimentLayout, given: Sweep) -> Sweep:
    """On --resume the experiment's own copy of the space file and overrides win (the trials were drawn from it)."""
    meta = parse_meta(storage.read_json(layout.meta), layout.meta)
    text = storage.read_text(layout.space_copy)
    name = Path(str(meta.get("space_file", "space.yaml"))).name
    sweep = load_saved_sweep(
        layout, meta.get("overrides", []), text, name, Path(tempfile.mkdtemp(prefix="raysweep-resume-"))
    )
    copy = sweep.path
    check_meta_matches(meta, sweep.spec.task, layout.meta)
    if text != given.path.read_text() or list(meta.get("overrides", [])) != given.overrides:
        log.warning("--resume uses the experiment's saved space file and overrides, not the ones given now")
    sweep.path = given.path if text == given.path.read_text() else copy
    return sweep


def resume_command(space: str, name: str, storage_root: str) -> str:
    return (
        f"raysweep tune {shlex.quote(space)} --resume --name {shlex.quote(name)} --storage {shlex.quote(storage_root)}"
    )


def write_back_after_loss(layout: ExperimentLayout, meta_text: str, space_text: str) -> Optional[str]:
    """Tune's last snapshot wrote the histories it still held back into a folder that had vanished: make it an
    experiment again (meta, space copy) so it can be collected. None when done, else why not (one sentence)."""
    try:
        if not storage.exists(layout.root) or not sessions.trial_folders(layout.root):
            return "Nothing could be written back."
        storage.write_text_atomic(layout.space_copy, space_text)
        storage.write_text_atomic(layout.meta, meta_text)
    except (OSError, UserError) as exc:
        return f"Nothing could be written back ({exc})."
    return None
