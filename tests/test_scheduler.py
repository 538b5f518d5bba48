"""Scheduler construction from the space file, and the rung rule of `RungScheduler`, on hand-computed cases.

Fast: builds the schedulers and feeds them results directly; no Ray instance is started.
"""

from __future__ import annotations

import pytest
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from support import write_space

from raysweep.spec.load import load_sweep
from raysweep.spec.rungs import geometric_rungs, rung_epochs
from raysweep.sweep.scheduler import RungScheduler, build_scheduler

DEFR = """\
task: defr
config:
  data: {image_size: 32, synth: {num_train: 10, num_test: 10, image_size: 32}}
  model: {width: 32, depth: 1, heads: 2}
  train: {epochs: 6}
search:
  optim.lr: {distribution: loguniform, low: 1.0e-4, high: 1.0e-2}
"""


def _sweep(tmp_path, *overrides, text=DEFR):
    return load_sweep(write_space(tmp_path, text), list(overrides))


def test_none_is_fifo_and_default_is_rays_asha_on_epoch(tmp_path) -> None:
    assert type(build_scheduler(_sweep(tmp_path, "scheduler.type=none"))) is FIFOScheduler
    asha = build_scheduler(_sweep(tmp_path, "scheduler.grace_period=1", "scheduler.reduction_factor=2"))
    assert isinstance(asha, ASHAScheduler)
    assert (asha._time_attr, asha._metric, asha._mode, asha._max_t) == ("epoch", "val.map", "max", 6)
    assert sorted(m for m, _ in asha._brackets[0]._rungs) == [1, 2, 4]  # grace * rf**k below max_t
    assert rung_epochs(_sweep(tmp_path)) is None


def test_explicit_milestones(tmp_path) -> None:
    sched = build_scheduler(_sweep(tmp_path, "scheduler.milestones=[2,5]", "scheduler.reduction_factor=3"))
    assert isinstance(sched, RungScheduler)
    assert sched._milestones == [2, 5] and sched._rf == 3 and sched._max_t == 6 and sched._metric == "val.map"


def test_rungs_after_a_multistep_drop(tmp_path) -> None:
    # drop after epoch 4 of 6: rungs at 4 + 1 = 5 (4 + 2 = 6 is the end, not a rung)
    sweep = _sweep(tmp_path, "optim.schedule=multistep", "optim.milestones=[2,4,9]",
                   "scheduler.rungs_after_lr_drop=true", "scheduler.grace_period=1")
    assert rung_epochs(sweep) == [5]
    assert build_scheduler(sweep)._milestones == [5]


def test_rungs_after_the_hqm_step_drop() -> None:
    sweep = load_sweep("search_spaces/hqm.yaml", ["scheduler.rungs_after_lr_drop=true", "scheduler.grace_period=2"])
    assert rung_epochs(sweep) == [30, 32]  # StepLR after 28 of 36 epochs: 28 + 2, 28 + 4 (28 + 8 = 36 is the end)
    assert geometric_rungs(28, 1, 3, 36) == [29, 31]  # 28 + 1, 28 + 3 (28 + 9 is past the end)
    assert geometric_rungs(0, 1, 2, 6) == [1, 2, 4]  # Ray's ASHA placement when started at 0


def _result(epoch: int, value: float | None, evaluated: bool = True) -> dict:
    return {"epoch": epoch, "val.map": value, "evaluated": evaluated}


class _Trial:
    def __init__(self, trial_id: str):
        self.trial_id = trial_id


def test_rung_rule_keeps_the_best_half_asynchronously() -> None:
    sched = RungScheduler([2], max_t=4, reduction_factor=2, metric="val.map", mode="max")
    go, stop = TrialScheduler.CONTINUE, TrialScheduler.STOP
    a, b, c, d = (_Trial(x) for x in "abcd")
    assert sched.on_trial_result(None, a, _result(1, 0.1)) == go  # before the rung: never stopped
    assert sched.on_trial_result(None, a, _result(2, 0.30)) == go  # first at the rung: nothing to compare with
    assert sched.on_trial_result(None, b, _result(2, 0.20)) == stop  # below the median of [0.30]
    assert sched.on_trial_result(None, c, _result(2, 0.40)) == go  # cutoff: median of [0.30, 0.20] = 0.25
    assert sched.cutoff(2) == pytest.approx(0.30)  # median of [0.30, 0.20, 0.40]
    assert sched.on_trial_result(None, d, _result(2, 0.29)) == stop
    assert sched.on_trial_result(None, c, _result(3, 0.0)) == go  # decided once per rung
    assert sched.on_trial_result(None, c, _result(4, 0.5)) == stop  # max_t


def test_rung_rule_waits_for_an_evaluated_epoch_and_handles_min() -> None:
    sched = RungScheduler([2, 4], max_t=10, reduction_factor=2, metric="loss", mode="min")
    a, b = _Trial("a"), _Trial("b")
    assert sched.decide("a", 2, 1.0) == TrialScheduler.CONTINUE
    # b's epoch 2 and 3 carry a stale value forward: not judged; epoch 5 is judged at rung 4, the highest passed
    assert sched.on_trial_result(None, b, {"epoch": 2, "loss": 9.0, "evaluated": False}) == TrialScheduler.CONTINUE
    assert sched.on_trial_result(None, b, {"epoch": 3, "loss": 9.0, "evaluated": False}) == TrialScheduler.CONTINUE
    assert sched.on_trial_result(None, b, {"epoch": 5, "loss": 0.5}) == TrialScheduler.CONTINUE
    assert sched._recorded == {2: {"a": -1.0}, 4: {"b": -0.5}}
    assert sched.on_trial_result(None, a, {"epoch": 4, "loss": 2.0}) == TrialScheduler.STOP  # worse than b at rung 4
