"""Progress bars for the long single jobs (data synthesis, text embeddings, offline evaluation), shown only where a
person watches: the process that runs a command turns them on; Ray workers, which run the same code on cache hits,
never do. Plain tqdm on stderr; no ray, so task code may use it."""

from __future__ import annotations

import contextlib
from typing import Iterable, Iterator, Optional, TypeVar

T = TypeVar("T")
_shown = False


def enabled() -> bool:
    return _shown


@contextlib.contextmanager
def shown(on: bool = True) -> Iterator[None]:
    """Within this block, `bar` draws (and `enabled()` is true)."""
    global _shown
    before, _shown = _shown, on
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
