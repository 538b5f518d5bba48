"""Overlapped evaluation (sweep/eval_offload.py) against inline evaluation: the same worker loop on a tiny DEFR, epoch
by epoch, with the scoring in a real Ray actor. Train runs in its local mode (the loop in this process, reports
recorded), so no Train controller starts; the scorer is a real actor on a real local Ray."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from raysweep.sweep.eval_offload import overlap_wanted, schedule_needs_metric
from raysweep.tasks.base import LRSchedule
from raysweep.tasks.common import schedules

TIMING = {"epoch_time_s", "images_per_s", "eval_time_s"}
EPOCHS = 4


@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


class RecordingTrainFnUtils:
    """Ray Train's local-mode utilities (the loop runs in this process) keeping every report and a copy of each
    checkpoint folder, and starting from `resume_from` (a copied checkpoint) like a relaunched worker."""

    @staticmethod
    def make(folder: Path, resume_from: Path | None = None):
        from ray.train import Checkpoint
        from ray.train.v2._internal.execution.train_fn_utils import LocalTrainFnUtils

        class Recording(LocalTrainFnUtils):
            def __init__(self):
                super().__init__(experiment_name="eval-offload-test")
                self.reports: list[tuple[dict, Path | None]] = []

            def report(self, metrics, checkpoint=None, **kwargs):
                copy = None
                if checkpoint is not None:
                    copy = folder / f"checkpoint_{len(self.reports):03d}"
                    shutil.copytree(checkpoint.path, copy)
                self.reports.append((dict(metrics), copy))

            def get_checkpoint(self):
                return Checkpoint.from_directory(str(resume_from)) if resume_from is not None else None

        return Recording()


def _run(tmp: Path, cache: Path, overlap, resume_from: Path | None = None, tag: str = "run") -> list:
    from ray.train.v2._internal.execution.train_fn_utils import set_train_fn_utils

    from raysweep.sweep.worker import train_loop_per_worker

    folder = tmp / tag
    folder.mkdir()
    utils = RecordingTrainFnUtils.make(folder, resume_from)
    set_train_fn_utils(utils)
    config = {  # DEFR on a tiny synthetic HICO: even untrained scores give a mAP above 0
        "data": {"root": None, "validation": True, "val_fraction": 0.25, "image_size": 32,
                 "synth": {"num_train": 40, "num_test": 20, "image_size": 32, "seed": 0}},
        "classifier": {"init": "rand"},
        "optim": {"schedule": "multistep", "milestones": [2]},
        "train": {"epochs": EPOCHS, "batch_size": 8, "eval_batch_size": 16, "eval_every": 1, "test_every": 2,
                  "eval_overlap": overlap},
    }
    try:
        train_loop_per_worker({"task": "defr", "config": config, "seed": 0, "metric": "val.map",
                               "cache_dir": str(cache), "threads_per_worker": 1, "trial_id": "t0",
                               "per_class_path": str(folder / "per_class.parquet")})
    finally:
        set_train_fn_utils(None)  # this process is no Train worker for the tests after this one
    return utils.reports


def _values(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in TIMING}


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every test here runs torch on one thread (conftest.py)."""


def test_overlapped_evaluation_reports_the_inline_history_and_resumes(local_ray, tmp_path, caplog):
    import pandas as pd

    cache = tmp_path / "cache"
    inline = _run(tmp_path, cache, False, tag="inline")
    with caplog.at_level("WARNING", logger="raysweep.sweep.eval_offload"):
        overlapped = _run(tmp_path, cache, True, tag="overlapped")
    assert not [r for r in caplog.records if "scoring inline" in r.getMessage()]  # the actor scored every split

    # every epoch once, in order, each with its own numbers: the history the inline loop reports
    assert [m["epoch"] for m, _ in inline] == [m["epoch"] for m, _ in overlapped] == [1, 2, 3, 4]
    for (a, _), (b, _) in zip(inline, overlapped, strict=True):
        assert _values(a) == _values(b)
    assert [m["test_evaluated"] for m, _ in overlapped] == [False, True, False, True]  # train.test_every: 2
    assert all("test.map" in m for m, _ in overlapped[1::2]) and not any("test.map" in m for m, _ in overlapped[::2])
    assert all(m["evaluated"] for m, _ in overlapped) and all(path is not None for _, path in overlapped)
    assert any(m["val.map"] > 0 for m, _ in inline)  # numbers worth comparing, not all zeros
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "inline" / "per_class.parquet"),
                                  pd.read_parquet(tmp_path / "overlapped" / "per_class.parquet"))

    # the checkpoint of epoch 2 holds epoch 2's state and scores: resuming from it reproduces epochs 3 and 4
    from raysweep.sweep.checkpoints import read_history

    checkpoint = overlapped[1][1]
    assert [h["epoch"] for h in read_history(checkpoint / "history.json")] == [1, 2]
    state = torch.load(checkpoint / "state.pt", weights_only=True)
    assert state["epoch"] == 1 and state["metrics"]["val.map"] == overlapped[1][0]["val.map"]
    resumed = _run(tmp_path, cache, True, resume_from=checkpoint, tag="resumed")
    assert [m["epoch"] for m, _ in resumed] == [3, 4]
    for (a, _), (b, _) in zip(overlapped[2:], resumed, strict=True):
        assert _values(a) == _values(b)


class _Custom(LRSchedule):
    def step_epoch(self, epoch: int, metric: float | None) -> None:
        pass


def test_overlap_falls_back_to_inline_where_the_schedule_reads_the_objective():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.1)
    step, plateau = schedules.step_drop(optimizer, 2), schedules.plateau(optimizer)
    assert not schedule_needs_metric(step) and not schedule_needs_metric(schedules.constant())
    assert schedule_needs_metric(plateau) and schedule_needs_metric(_Custom())  # unknown: assumed to read it
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert overlap_wanted(True, cpu, step) and overlap_wanted("true", cpu, step)
    assert not overlap_wanted(True, cpu, plateau) and not overlap_wanted("auto", gpu, plateau)
    assert overlap_wanted("auto", gpu, step) and not overlap_wanted("auto", cpu, step)
    assert not overlap_wanted(False, gpu, step)
