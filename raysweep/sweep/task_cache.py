"""The task's once-per-sweep preparation (embedded data, caches), run before any trial starts, in a child process.

Preparing imports the task's code (torch, torchvision, the text encoder) and may hold a dataset generator or an
encoder in memory; the sweep's own process lives as long as the sweep and needs none of it (it reads the task's card,
`raysweep.tasks.card`). So `prepare_task` runs the preparation in a child Python that exits when it is done; bad
input there still ends as one line and exit code 2 here (the child hands its error back through a file).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional, cast

from raysweep import errors
from raysweep.spec.load import Sweep
from raysweep.tasks.config_base import TaskConfig

DEFAULT_CACHE = "~/.cache/raysweep"


def cache_dir(sweep: Sweep) -> Path:
    return Path(os.path.expanduser(sweep.spec.storage.cache_dir or DEFAULT_CACHE))


def prepare_task(sweep: Sweep, in_child: Optional[bool] = None) -> None:
    """Prepare once for every combination of the task's `prepare_keys` the search can pick (e.g. each text encoder
    × prompt template), in a child process (see the module docstring). `in_child=None`: in a child unless this
    process already holds the task's code (a test, `raysweep embed`), where a child would only import it again.

    Workers run the preparation again (a cache hit) and apply its config updates themselves, so trial configs keep
    the user's values (e.g. `data.root: null` for the embedded data) and nodes without this machine's cache still
    work.
    """
    from raysweep.sweep.console import preparing
    from raysweep.sweep.prepare import prepare_combinations

    combinations = prepare_combinations(sweep)
    if in_child is None:
        in_child = sweep.card.task_class.split(":")[0] not in sys.modules
    with preparing(
        f"task {sweep.spec.task!r}: data and caches for {len(combinations)} setting(s) of "
        f"{', '.join(sweep.card.prepare_keys)} in {cache_dir(sweep)}"
    ):
        if in_child:
            _prepare_in_child(sweep)
        else:
            prepare_in_process(sweep, combinations)


def _prepare_in_child(sweep: Sweep) -> None:
    """`python -m raysweep.sweep.task_cache` on the sweep's space file and overrides; its UserError raised here."""
    package_root = str(Path(__file__).resolve().parents[2])  # the raysweep this process runs, also in the child
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)}
    with tempfile.TemporaryDirectory(prefix="raysweep-prepare-") as tmp:
        error_file = Path(tmp) / "error.json"
        cmd = [sys.executable, "-m", "raysweep.sweep.task_cache", str(sweep.path), str(error_file), *sweep.overrides]
        returncode = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL).returncode
        if returncode == 0:
            return
        if error_file.is_file():
            failure = json.loads(error_file.read_text())
            kind = getattr(errors, failure["kind"], errors.UserError)
            raise kind(failure["message"])
    raise RuntimeError(f"the task's preparation process ended with exit code {returncode} (its output is above)")


def prepare_in_process(sweep: Sweep, combinations: Optional[list[dict[str, Any]]] = None) -> None:
    """The preparation itself, in this process (imports the task's code)."""
    from raysweep.sweep.prepare import prepare_combinations

    task_cls = sweep.task_cls
    for combination in prepare_combinations(sweep) if combinations is None else combinations:
        task_cls.prepare(cast(TaskConfig, sweep.config_for(combination)), cache_dir(sweep))


def _child(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="raysweep.sweep.task_cache")
    parser.add_argument("space")
    parser.add_argument("error_file")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    from raysweep import progress
    from raysweep.spec.load import load_sweep

    try:
        with progress.shown():  # bars where the parent shows them: the same stderr, the same RAYSWEEP_PROGRESS
            prepare_in_process(load_sweep(args.space, args.overrides))
    except errors.UserError as exc:
        Path(args.error_file).write_text(json.dumps({"kind": type(exc).__name__, "message": str(exc)}))
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
