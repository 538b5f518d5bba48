"""Write a generated dataset folder atomically: build it under a temporary name, mark it complete, rename.

A folder with a matching `.complete` marker is reused as is; two processes generating the same parameters at once
both succeed (the loser of the rename keeps the winner's identical copy); a failure leaves nothing behind. Also the
pieces every synthetic generator shares: the size checks, the per-image progress bar and the JPEG settings.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable

from PIL import Image

from raysweep.errors import ConfigError, DataError

log = logging.getLogger(__name__)
MARKER = ".complete"
JPEG_QUALITY = 95


def check_sizes(dataset: str, seed: int, num_train: int, num_test: int, image_size: int, *, min_test: int = 2,
                min_image_size: int = 32) -> None:
    """ConfigError naming `dataset` and the key for a split below its minimum, a tiny image size or a negative seed."""
    for key, value, low in (("num_train", num_train, 1), ("num_test", num_test, min_test),
                            ("image_size", image_size, min_image_size)):
        if int(value) < low:
            raise ConfigError(f"{dataset}: {key} must be >= {low}, got {value!r}")
    if int(seed) < 0:
        raise ConfigError(f"{dataset}: seed must be >= 0, got {seed!r}")


def per_image(items: Iterable, total: int, desc: str, progress: bool) -> Iterable:
    """`items`, behind a progress bar counting images when `progress`."""
    if not progress:
        return items
    from tqdm import tqdm

    return tqdm(items, total=total, desc=desc, unit="img")


def save_jpeg(image: Image.Image, path: Path) -> None:
    """Every synthetic image's encoding (no chroma subsampling): part of the bytes a seed reproduces."""
    image.save(path, format="JPEG", quality=JPEG_QUALITY, subsampling=0)


def write_records(path: Path, records: Any) -> None:
    """Records (QPIC layout, or the official V-COCO / COCO files) as compact JSON."""
    path.write_text(json.dumps(records, separators=(",", ":")))


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
