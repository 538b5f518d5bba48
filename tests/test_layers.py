"""The package's layers, read from every module's imports (top-level and function-local, parsed, not run).

    commands/, cli.py
    sweep/  results/        (never each other)
    experiment/             (the experiment on disk)
    spec/, tasks/, metrics/, data/
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "raysweep"
UPPER = ("spec", "sweep", "results", "experiment", "commands")


def layer(module: str) -> str:
    """`raysweep.sweep.runner` → `sweep`; `raysweep.cli` → `cli`; `raysweep` → ``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every raysweep module `path` imports, anywhere in the file (relative imports resolved)."""
    name = module_name(path)
    return imports_of(path.read_text(), name if path.name == "__init__.py" else name.rpartition(".")[0])


def imports_of(source: str, package: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # `from raysweep.sweep import storage`
    return {m for m in found if m == "raysweep" or m.startswith("raysweep.")}


def forbidden(importer: str, target: str) -> str | None:
    """Why `importer` (a layer) may not import `target` (a layer), or None."""
    if target == importer or target in ("", "errors", "progress", "safe_pickle"):
        return None
    if importer in ("tasks", "metrics", "data") and target in UPPER:
        return "task, metric and data code is below the sweep, results and experiment layers"
    if importer == "experiment" and target in ("sweep", "results", "commands", "tasks"):
        return "the experiment layer is below sweep and results and knows no task"
    if {importer, target} == {"sweep", "results"}:
        return "sweep writes an experiment and results reads it: they meet only in experiment/ and commands/"
    if target in ("commands", "cli") and importer not in ("commands", "cli"):
        return "only the CLI imports commands"
    return None


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_layer_is_known() -> None:
    known = {"", "cli", "config_tree", "errors", "progress", "safe_pickle", "spec", "tasks", "metrics", "data", "sweep", "results",
             "experiment", "commands"}
    assert {layer(module_name(p)) for p in MODULES} <= known


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_layers(path: Path) -> None:
    importer = layer(module_name(path))
    broken = [f"{target}: {why}" for target in sorted(imported(path))
              if (why := forbidden(importer, layer(target)))]
    assert not broken, f"{path.relative_to(PACKAGE.parent)} imports " + "; ".join(broken)


def test_the_rules_catch_a_violation() -> None:
    """The parser sees function-local and relative imports (so the test above can fail)."""
    targets = imports_of("def f():\n    from ..sweep import runner\n    import raysweep.commands.tune\n",
                         "raysweep.results")
    assert {"raysweep.sweep", "raysweep.sweep.runner", "raysweep.commands.tune"} <= targets
    assert forbidden("results", "sweep") and forbidden("results", "commands")
    assert forbidden("experiment", "tasks") and forbidden("metrics", "spec") and not forbidden("sweep", "experiment")
