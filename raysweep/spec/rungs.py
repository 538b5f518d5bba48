"""The epochs at which ASHA decides (its rungs), from the space file's `scheduler:` section and the task config.

Pure and Ray-free, so that `raysweep validate` and `raysweep tune` refuse an impossible placement before Ray starts;
raysweep/sweep/scheduler.py builds the scheduler from the same list.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from raysweep.errors import ConfigError

if TYPE_CHECKING:
    from raysweep.spec.load import Sweep

DROP_KEYS = ("optim.lr_drop", "optim.milestones", "optim.schedule")  # where a config states its LR drop


def geometric_rungs(start: int, grace_period: int, reduction_factor: float, max_t: int) -> list[int]:
    """start + grace_period * reduction_factor**k for k = 0, 1, ... below max_t (ASHA's placement, shifted)."""
    rungs: list[int] = []
    k = 0
    while True:
        epoch = start + int(round(grace_period * reduction_factor**k))
        if epoch >= max_t:
            return rungs
        if not rungs or epoch > rungs[-1]:
            rungs.append(epoch)
        k += 1


def lr_drop_epoch(sweep: Sweep) -> Optional[int]:
    """The last epoch after which the learning rate drops within training, or None: a StepLR every `optim.lr_drop`
    epochs (QPIC / HQM), or the last of `optim.milestones` under `optim.schedule: multistep` (DEFR)."""
    from raysweep.spec.load import get_path

    base, last = sweep.base_config, sweep.max_epochs
    step = get_path(base, "optim.lr_drop")
    if isinstance(step, int) and step >= 1:
        drops = list(range(step, last, step))
        return drops[-1] if drops else None
    if get_path(base, "optim.schedule") == "multistep":
        drops = [int(m) for m in get_path(base, "optim.milestones", ()) or () if int(m) < last]
        return max(drops) if drops else None
    return None


def rung_epochs(sweep: Sweep) -> Optional[list[int]]:
    """The rungs of an ASHA sweep that places them itself (`milestones`, `rungs_after_lr_drop`); None for Ray's
    default geometric placement. Raises ConfigError (one line, the space file's key) when no placement fits."""
    sched, path, last = sweep.spec.scheduler, sweep.path, sweep.max_epochs
    if sched.type != "asha":
        return None
    if sched.milestones is not None:
        if sched.milestones[-1] > last:
            raise ConfigError(
                f"{path}: scheduler.milestones: {sched.milestones} go past the last epoch ({last}, the "
                f"task's epochs or scheduler.max_t); rungs must be at most {last}"
            )
        return list(sched.milestones)
    if not sched.rungs_after_lr_drop:
        return None
    searched = sorted(k for k in sweep.params if k in DROP_KEYS)
    if searched:
        raise ConfigError(
            f"{path}: scheduler.rungs_after_lr_drop: search.{searched[0]} is searched, so trials drop "
            f"their LR at different epochs; give the rungs as scheduler.milestones: [..]"
        )
    drop = lr_drop_epoch(sweep)
    if drop is None:
        raise ConfigError(
            f"{path}: scheduler.rungs_after_lr_drop: the config drops no learning rate before epoch "
            f"{last} (optim.lr_drop, or optim.milestones with optim.schedule: multistep); give "
            f"scheduler.milestones: [..] or drop the key"
        )
    rungs = geometric_rungs(drop, sched.grace_period, sched.reduction_factor, last)
    if not rungs:
        raise ConfigError(
            f"{path}: scheduler.rungs_after_lr_drop: the LR drops after epoch {drop} of {last}, so "
            f"grace_period: {sched.grace_period} (counted from the drop) leaves no rung before the end; "
            f"lower scheduler.grace_period"
        )
    return rungs
