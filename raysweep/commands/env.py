"""`raysweep env`: versions, devices and the Ray address, as a block to paste into a bug report."""

from __future__ import annotations

import os
import platform
import re
import sys
from urllib.parse import parse_qsl, urlsplit

HIDDEN = "***"
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|CREDENTIAL|(^|_)KEY($|_)|AUTH(?!_MODE)", re.IGNORECASE)
_TOKEN_LIKE = re.compile(r"[A-Za-z0-9_\-+/=]{20,}")


def redact(value: str) -> str:
    """`value` with credentials hidden: URL userinfo (`ray://user:secret@host` → `ray://***@host`), query values
    of secret-named parameters, and token-like runs (hex of 32+ characters, or 20+ characters mixing upper case, lower
    case and digits), so the block can be pasted into a public bug report."""
    if "://" in value:
        parts = urlsplit(value)
        if "@" in parts.netloc:
            value = value.replace(parts.netloc, HIDDEN + "@" + parts.netloc.rsplit("@", 1)[1], 1)
        for key, item in parse_qsl(parts.query, keep_blank_values=True):
            if SECRET_NAME.search(key) and item:
                value = value.replace(f"{key}={item}", f"{key}={HIDDEN}")
    return _TOKEN_LIKE.sub(lambda m: HIDDEN if _looks_like_token(m.group(0)) else m.group(0), value)


def _looks_like_token(text: str) -> bool:
    if len(text) >= 32 and re.fullmatch(r"[0-9a-fA-F]+", text):
        return True
    return bool(re.search(r"[a-z]", text) and re.search(r"[A-Z]", text) and re.search(r"[0-9]", text))


def ray_environment() -> list[str]:
    """Every RAY_* variable as `NAME: value`, redacted; a secret-named one shows only that it is set."""
    lines = []
    for name in sorted(os.environ):
        if name.startswith("RAY_") and name not in ("RAY_ADDRESS", "RAY_AUTH_MODE"):
            lines.append(f"{name}: {'(set, hidden)' if SECRET_NAME.search(name) else redact(os.environ[name])}")
    return lines


def run() -> None:
    import optuna
    import ray
    import torch

    import raysweep
    from raysweep.experiment.meta import git_commit

    lines = [
        f"raysweep: {raysweep.__version__} (commit {git_commit() or 'unknown'})",
        f"python: {sys.version.split()[0]} ({platform.platform()})",
        f"torch: {torch.__version__}; CUDA build: {torch.version.cuda or 'none'}; "
        f"CUDA available: {torch.cuda.is_available()}",
        f"GPUs: {', '.join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())) or 'none'}",
        f"ray: {ray.__version__}; optuna: {optuna.__version__}",
        f"CPUs: {os.cpu_count()}",
        f"RAY_ADDRESS: {redact(os.environ.get('RAY_ADDRESS', '(unset: raysweep tune starts a local instance)'))}",
        f"RAY_AUTH_MODE: {redact(os.environ.get('RAY_AUTH_MODE', '(unset)'))}",
        *ray_environment(),
    ]
    for name in ("timm", "transformers", "open_clip", "pyarrow", "pandas", "scipy", "numpy", "pydantic"):
        try:
            module = __import__(name)
            lines.append(f"{name}: {getattr(module, '__version__', '?')}")
        except ImportError:
            lines.append(f"{name}: not installed")
    print("```\n" + "\n".join(lines) + "\n```")
