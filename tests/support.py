"""Helpers shared by the test modules: the CLI in-process and as a subprocess, space files, a scripted trial."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """`raysweep ARGV` in this process: (exit code, stdout, stderr)."""
    from raysweep.cli import main

    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out = capsys.readouterr()
    return code, out.out, out.err


def run_cli_process(args: list[str], cwd: Path, timeout: float = 600,
                    check: bool = True) -> subprocess.CompletedProcess:
    """`python -m raysweep.cli ARGS` as its own process (a real `raysweep tune`); with `check`, a non-zero exit fails
    the test with the end of both streams."""
    env = {**os.environ, "RAY_DEDUP_LOGS": "0", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", "raysweep.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"raysweep {' '.join(args)} exited {proc.returncode}\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-3000:]}")
    return proc


def write_space(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


class FixedTrial:
    """Stands in for optuna.Trial in the define-by-run function: answers each suggest from a table and records what
    was asked."""

    def __init__(self, answers):
        self.answers, self.asked = answers, []

    def suggest_categorical(self, name, choices):
        self.asked.append(name)
        assert self.answers[name] in choices
        return self.answers[name]

    def suggest_float(self, name, low, high, log=False, step=None):
        self.asked.append(name)
        return self.answers[name]
