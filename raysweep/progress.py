"""Progress bars and notices for the long single jobs (data synthesis, text embeddings, offline evaluation), shown
only where a person watches: the command's own process turns them on (Ray workers, which run the same code on cache
hits, never do), and only when stderr is a terminal, so logs, pipes and the one-line errors of bad input stay clean.
RAYSWEEP_PROGRESS=1 shows them anyway (e.g. in CI logs), =0 never. Plain tqdm on stderr; no ray, so task code may
use it."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterable, Iterator, Optional, TypeVar

T = TypeVar("T")
_shown = False


def enabled() -> bool:
    return _shown


def wanted() -> bool:
    """Whether this process should show progress: RAYSWEEP_PROGRESS=1/0, else whether stderr is a terminal."""
    setting = os.environ.get("RAYSWEEP_PROGRESS", "").strip().lower()
    if setting in ("1", "true", "yes", "always"):
        return True
    if setting in ("0", "false", "no", "never"):
        return False
    return sys.stderr.isatty()


def notice(text: str) -> None:
    """A one-line 'what is happening now' on stderr, where progress is wanted."""
    if wanted():
        print(text, file=sys.stderr, flush=True)


@contextlib.contextmanager
def shown(on: Optional[bool] = None) -> Iterator[None]:
    """Within this block `bar` draws and `enabled()` is true; `on=None`: where progress is wanted."""
    global _shown
    before, _shown = _shown, wanted() if on is None else on
    try:
        yield
    finally:
        _shown = before


def bar(iterable: Iterable[T], total: Optional[int] = None, desc: str = "", unit: str = "it") -> Iterable[T]:
    """`iterable` wrapped in a tqdm bar when progress is shown, else unchanged."""
    if not _shown:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)
