"""`raysweep_meta.json`: what a sweep was started with (name, task, overrides, objective) and the versions it ran;
with the space copy beside it, the experiment's own sweep.

Written when the first trial starts; read by `--resume` (the experiment's own space file and overrides win) and by
`collect` (the results carry the versions). Its types are checked on reading, so later reads cannot fail.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

from raysweep.errors import UserError
from raysweep.experiment import storage
from raysweep.experiment.layout import SPACE_COPY, ExperimentLayout
from raysweep.spec.load import Sweep, load_sweep

VERSIONED = ("raysweep", "torch", "ray", "optuna", "git_commit")  # the `version.*` columns of the results


def git_commit() -> Optional[str]:
    """The commit of the raysweep checkout in use, or None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return ""


def torch_version() -> str:
    """torch's own version string, which carries the build (e.g. `2.14.1+cu130`; the package metadata may not), read
    from its `version.py` without importing torch: the sweep's process never loads it (raysweep/tasks/card.py)."""
    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        return ""
    try:
        tree = ast.parse(Path(spec.origin).with_name("version.py").read_text())
    except (OSError, SyntaxError):
        return _version("torch")
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.value, ast.Constant)):
            continue
        target = node.targets[0]
        if isinstance(target, ast.Name) and target.id == "__version__":
            return str(node.value.value)
    return _version("torch")


def versions() -> dict[str, str]:
    """raysweep, torch, ray, optuna, the commit and Python (ray and optuna from their package metadata; torch's own
    string, which carries the build, e.g. `+cu130`)."""
    import raysweep

    return {
        "raysweep": raysweep.__version__,
        "torch": torch_version(),
        "ray": _version("ray"),
        "optuna": _version("optuna"),
        "git_commit": git_commit() or "",
        "python": sys.version.split()[0],
    }


def meta_text(
    *,
    name: str,
    task: str,
    space_file: str,
    overrides: list[str],
    metric: str,
    mode: str,
    selection: Any,
    num_trials: int,
) -> str:
    """The text of a new experiment's meta file (created now, with this process's versions)."""
    return json.dumps(
        {
            "name": name,
            "task": task,
            "space_file": space_file,
            "overrides": overrides,
            "metric": metric,
            "mode": mode,
            "selection": selection,
            "num_trials": num_trials,
            "created": time.time(),
            "versions": versions(),
        },
        indent=2,
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:79] + "…"


def expect(value: Any, types: type | tuple[type, ...], where: str, what: str) -> Any:
    """`value` when it has one of `types` (a bool is not an int here), else a UserError naming the file and key."""
    types = types if isinstance(types, tuple) else (types,)
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
        raise UserError(f"{where}: {what} is {_short(value)}, expected {names}")
    return value


def parse_meta(meta: Any, where: str) -> dict[str, Any]:
    """raysweep_meta.json, its types checked (name, task, overrides, versions) so later reads cannot fail."""
    expect(meta, dict, where, "the file")
    expect(meta.get("name"), (str, type(None)), where, "'name'")
    expect(meta.get("task"), (str, type(None)), where, "'task'")
    expect(meta.get("space_file"), (str, type(None)), where, "'space_file'")
    overrides = expect(meta.get("overrides", []), list, where, "'overrides'")
    for i, item in enumerate(overrides):
        expect(item, str, where, f"'overrides'[{i}]")
    found = expect(meta.get("versions", {}), dict, where, "'versions'")
    for key, value in found.items():
        expect(value, (str, type(None)), where, f"'versions'.{key}")
    return meta


def check_meta_matches(meta: dict[str, Any], task: str, where: str) -> None:
    """The meta was written for this experiment's saved space file; a folder whose files disagree is not resumed or
    collected (--resume also unpickles Tune's tuner.pkl from it, so the folder must be one raysweep wrote)."""
    if meta.get("task") is not None and meta["task"] != task:
        raise UserError(
            f"{where}: 'task' is {meta['task']!r} but the experiment's {SPACE_COPY} is for task "
            f"{task!r}; this folder was not written by one raysweep sweep: refusing to use it"
        )


def load_saved_sweep(
    layout: ExperimentLayout,
    overrides: list[str],
    text: Optional[str] = None,
    file_name: str = "space.yaml",
    folder: Optional[Path] = None,
) -> Sweep:
    """The sweep of the experiment's own space copy (`text`, else read from the folder) with `overrides`.

    The copy is loaded from a local file `file_name` in `folder` (kept: the sweep may read it again), or in a
    temporary folder removed afterwards; an error names the experiment's copy, not the local file."""
    text = storage.read_text(layout.space_copy) if text is None else text
    with contextlib.ExitStack() as stack:
        where = folder or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        path = where / file_name
        path.write_text(text)
        try:
            return load_sweep(path, overrides)
        except UserError as err:
            raise UserError(str(err).replace(str(path), layout.space_copy)) from None
