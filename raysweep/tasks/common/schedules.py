"""Learning-rate schedules behind the loop's two hooks (`raysweep.tasks.base.LRSchedule`)."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import (CosineAnnealingWarmRestarts, LambdaLR, MultiStepLR, ReduceLROnPlateau,
                                      StepLR)

from raysweep.tasks.base import LRSchedule


class PerIteration(LRSchedule):
    """Stepped after every optimiser step with the fractional epoch (DEFR's cosine restarts: `step(epoch + it/n)`)."""

    def step_iteration(self, epoch_float: float) -> None:
        self.scheduler.step(epoch_float)


class PerIterationCount(LRSchedule):
    """A LambdaLR over iterations: `step()` after every optimiser step."""

    def step_iteration(self, epoch_float: float) -> None:
        self.scheduler.step()


class PerEpoch(LRSchedule):
    def step_epoch(self, epoch: int, metric: float | None) -> None:
        self.scheduler.step()


class OnPlateau(LRSchedule):
    """ReduceLROnPlateau on the objective; epochs without evaluation do not count."""

    def step_epoch(self, epoch: int, metric: float | None) -> None:
        if metric is not None:
            self.scheduler.step(metric)


def cosine_restarts(optimizer: torch.optim.Optimizer, t0_epochs: int) -> LRSchedule:
    """lr(t) = base · ½(1 + cos(π (t mod T0)/T0)), t the fractional epoch (DEFR's default scheduler)."""
    return PerIteration(CosineAnnealingWarmRestarts(optimizer, T_0=t0_epochs, T_mult=1, eta_min=0.0))


def cosine_warmup(optimizer: torch.optim.Optimizer, iters_per_epoch: int, epochs: int, warmup_epochs: float) -> LRSchedule:
    """Linear warm-up over `warmup_epochs`, then half a cosine to 0 at the last iteration."""
    total = max(1, iters_per_epoch * epochs)
    warm = int(round(warmup_epochs * iters_per_epoch))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return PerIterationCount(LambdaLR(optimizer, factor))


def cosine(optimizer: torch.optim.Optimizer, iters_per_epoch: int, epochs: int) -> LRSchedule:
    return cosine_warmup(optimizer, iters_per_epoch, epochs, 0.0)


def multistep(optimizer: torch.optim.Optimizer, milestones: tuple[int, ...], gamma: float) -> LRSchedule:
    return PerEpoch(MultiStepLR(optimizer, milestones=list(milestones), gamma=gamma))


def step_drop(optimizer: torch.optim.Optimizer, step_epochs: int, gamma: float = 0.1) -> LRSchedule:
    """QPIC/HQM's StepLR: ×gamma every `step_epochs` epochs."""
    return PerEpoch(StepLR(optimizer, step_size=step_epochs, gamma=gamma))


def plateau(optimizer: torch.optim.Optimizer, mode: str = "max", factor: float = 0.5, patience: int = 2,
            threshold: float = 3e-3) -> LRSchedule:
    """DEFR's plateau scheduler settings: mode max on test mAP, factor 0.5, patience 2, threshold 3e-3 absolute."""
    return OnPlateau(ReduceLROnPlateau(optimizer, mode=mode, factor=factor, patience=patience, threshold=threshold,
                                       threshold_mode="abs"))


def constant() -> LRSchedule:
    return LRSchedule(None)
