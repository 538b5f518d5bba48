"""The sweep's trial scheduler, from the space file's `scheduler:` section.

Default ASHA is Ray's `ASHAScheduler` on the workers' `epoch` (rungs at grace_period * reduction_factor**k). Rungs
placed by `milestones` or `rungs_after_lr_drop` (raysweep/spec/rungs.py) use `RungScheduler`: the same asynchronous
successive halving at the given epochs, deciding on evaluated epochs only, so that a schedule whose LR drops late
(QPIC / HQM: at 2/3 of training) is judged after its drop and not before.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional

import numpy as np
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from raysweep.spec.rungs import rung_epochs

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

    from raysweep.spec.load import Sweep

__all__ = ["RungScheduler", "build_scheduler"]


class RungScheduler(FIFOScheduler):
    """Asynchronous successive halving at explicit epochs: at each rung a trial continues only if its objective is
    in the best 1 / reduction_factor of the values recorded at that rung so far (Ray's ASHA rule, one bracket).

    A trial is judged at the first *evaluated* result at or past a rung (tasks that evaluate every k epochs carry
    the last value forward on the others), at the highest rung it has passed, once per rung. It is stopped at
    `max_t` epochs.
    """

    def __init__(
        self,
        milestones: list[int],
        max_t: int,
        reduction_factor: float = 2.0,
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        time_attr: str = "epoch",
    ):
        super().__init__()
        if not milestones or sorted(set(milestones)) != list(milestones):
            raise ValueError(f"milestones must be increasing, got {milestones}")
        self._milestones = list(milestones)
        self._max_t = max_t
        self._rf = reduction_factor
        self._metric, self._mode, self._time_attr = metric, mode, time_attr
        self._recorded: dict[int, dict[str, float]] = {m: {} for m in self._milestones}

    def set_search_properties(self, metric: Optional[str], mode: Optional[str], **spec) -> bool:
        if (self._metric and metric) or (self._mode and mode):
            return False
        self._metric = self._metric or metric
        self._mode = self._mode or mode
        return True

    def cutoff(self, milestone: int) -> Optional[float]:
        """The value (in `max` sense) a trial must reach at `milestone` to go on; None while nothing is recorded."""
        values = list(self._recorded[milestone].values())
        return float(np.nanpercentile(values, (1 - 1 / self._rf) * 100)) if values else None

    def decide(self, trial_id: str, epoch: int, value: float) -> str:
        """CONTINUE or STOP for a trial that reached `epoch` with objective `value` (evaluated)."""
        score = value if self._mode != "min" else -value
        passed = [m for m in self._milestones if m <= epoch]
        if passed and trial_id not in self._recorded[passed[-1]]:
            rung = passed[-1]
            cutoff = self.cutoff(rung)
            self._recorded[rung][trial_id] = score
            if cutoff is not None and score < cutoff:
                return TrialScheduler.STOP
        return TrialScheduler.STOP if epoch >= self._max_t else TrialScheduler.CONTINUE

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        epoch, value = result.get(self._time_attr), result.get(self._metric) if self._metric else None
        if epoch is None or value is None or not result.get("evaluated", True):
            return TrialScheduler.STOP if epoch is not None and epoch >= self._max_t else TrialScheduler.CONTINUE
        value = float(value)
        if not math.isfinite(value):
            return TrialScheduler.CONTINUE
        return self.decide(trial.trial_id, int(epoch), value)

    def debug_string(self) -> str:
        rungs = ", ".join(f"epoch {m}: {len(r)} recorded" for m, r in self._recorded.items())
        return f"RungScheduler({rungs})"


def build_scheduler(sweep: Sweep) -> TrialScheduler:
    """The scheduler `raysweep tune` hands Tune: FIFO, Ray's ASHA, or ASHA at the space file's own rungs."""
    sched = sweep.spec.scheduler
    if sched.type != "asha":
        return FIFOScheduler()
    rungs = rung_epochs(sweep)
    if rungs is None:
        return ASHAScheduler(
            time_attr="epoch",
            max_t=sweep.max_epochs,
            grace_period=sched.grace_period,
            reduction_factor=sched.reduction_factor,
            metric=sweep.metric,
            mode=sweep.mode,
        )
    return RungScheduler(
        rungs, max_t=sweep.max_epochs, reduction_factor=sched.reduction_factor, metric=sweep.metric, mode=sweep.mode
    )
