"""`raysweep env`: versions, devices and the Ray address, as a block to paste into a bug report."""

from __future__ import annotations

import os
import platform
import sys


def run() -> None:
    import optuna
    import ray
    import torch

    import raysweep
    from raysweep.sweep.runner import git_commit

    lines = [
        f"raysweep: {raysweep.__version__} (commit {git_commit() or 'unknown'})",
        f"python: {sys.version.split()[0]} ({platform.platform()})",
        f"torch: {torch.__version__}; CUDA build: {torch.version.cuda or 'none'}; "
        f"CUDA available: {torch.cuda.is_available()}",
        f"GPUs: {', '.join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())) or 'none'}",
        f"ray: {ray.__version__}; optuna: {optuna.__version__}",
        f"CPUs: {os.cpu_count()}",
        f"RAY_ADDRESS: {os.environ.get('RAY_ADDRESS', '(unset: raysweep tune starts a local instance)')}",
        f"RAY_AUTH_MODE: {os.environ.get('RAY_AUTH_MODE', '(unset)')}",
    ]
    for name in ("timm", "transformers", "open_clip", "pyarrow", "pandas", "scipy", "numpy", "pydantic"):
        try:
            module = __import__(name)
            lines.append(f"{name}: {getattr(module, '__version__', '?')}")
        except ImportError:
            lines.append(f"{name}: not installed")
    print("```\n" + "\n".join(lines) + "\n```")
