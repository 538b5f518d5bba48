"""Which hard-positive branch runs in a training iteration (HQM's per-iteration training forward)."""

from __future__ import annotations

import random
from typing import Optional


def hard_branch(gbs: bool, amm: bool, alternation: str, iteration: int,
                rng: Optional[random.Random] = None) -> Optional[str]:
    """"gbs", "amm" or None (QPIC) for 0-based `iteration` within the epoch.

    With both branches on, "ajl" gives GBS, AMM, GBS, ... and every epoch starts with GBS (HQM's flags start as
    [shift, occ] = [True, False] each epoch and swap after every iteration); "random" picks either, 50/50.
    """
    if gbs and amm:
        if alternation == "ajl":
            return "gbs" if iteration % 2 == 0 else "amm"
        if alternation == "random":
            return "gbs" if (rng or random).random() < 0.5 else "amm"
        raise ValueError(f"unknown alternation {alternation!r}; allowed: ajl, random")
    if gbs:
        return "gbs"
    return "amm" if amm else None
