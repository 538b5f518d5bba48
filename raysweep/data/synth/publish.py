"""Write a generated dataset folder atomically: build it under a temporary name, mark it complete, rename.

A folder with a matching `.complete` marker is reused as is; two processes generating the same parameters at once
both succeed (the loser of the rename keeps the winner's identical copy); a failure leaves nothing behind.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable

from raysweep.errors import DataError

log = logging.getLogger(__name__)
MARKER = ".complete"


def read_marker(folder: Path) -> dict | None:
    try:
        return json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return None


def publish(out: Path, params: dict, write: Callable[[Path], None], what: str, *, overwrite: bool = False) -> Path:
    """`write(tmp_folder)` fills a fresh folder; it becomes `out` in one rename. Returns `out`."""
    out = Path(out)
    if out.exists():
        found = read_marker(out)
        if found == params:
            log.debug("%s already at %s", what, out)
            return out
        if not overwrite:
            problem = "is incomplete (no .complete marker)" if found is None else f"was generated with other parameters {found}"
            raise DataError(f"{out} {problem}; to regenerate it with {params} delete it, or pass --overwrite "
                            f"to `raysweep data synth` (overwrite=True in Python)")
        log.info("removing %s to regenerate it", out)
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    log.info("generating %s in %s", what, out)
    try:
        tmp.mkdir()
        write(tmp)
        (tmp / MARKER).write_text(json.dumps(params, sort_keys=True))
        try:
            os.rename(tmp, out)
        except OSError:
            # Another process renamed its copy first; same parameters mean the same bytes, so keep the winner's.
            if read_marker(out) != params:
                raise
            log.debug("%s: another process finished %s first", what, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out
