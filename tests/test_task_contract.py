"""The Task contract, exercised on DEFR with a tiny model: no Ray import, prepare, build, learn, reproduce."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from raysweep.sweep.worker import rng_state, seed_everything, set_rng_state
from raysweep.tasks.defr.config import DefrConfig
from raysweep.tasks.defr.task import DefrTask


def test_task_code_never_imports_ray_or_optuna() -> None:
    code = ("import sys, raysweep.tasks.defr.task, raysweep.tasks.defr.data, raysweep.metrics.hico, "
            "raysweep.data.synth.hico, raysweep.tasks.hqm.task, raysweep.tasks.hqm.checkpoint, "
            "raysweep.metrics.hicodet, raysweep.data.synth.hicodet\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'optuna'))\n"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[DefrConfig, Path]:
    cache = tmp_path_factory.mktemp("cache")
    config = DefrConfig.model_validate({
        "data": {"synth": {"num_train": 60, "num_test": 40, "image_size": 32}, "image_size": 32, "augment": False},
        "model": {"depth": 1, "patch_size": 8, "stem": "conv"},
        "classifier": {"log_scale": 2.3},
        "optim": {"lr": 3e-3, "schedule": "constant"},
        "train": {"epochs": 2, "batch_size": 20, "eval_batch_size": 40},
    })
    updates = DefrTask.prepare(config, cache)
    assert set(updates) == {"data.root"} and (Path(updates["data.root"]) / "anno.pkl").exists()
    assert DefrTask.prepare(config, cache) == updates  # idempotent: the cache is hit
    tree = config.model_dump(mode="json")
    tree["data"]["root"] = updates["data.root"]
    return DefrConfig.model_validate(tree), cache


def run_epochs(config: DefrConfig, cache: Path, epochs: int, seed: int = 0) -> tuple[list[float], DefrTask, object]:
    seed_everything(seed)
    task = DefrTask(config, cache)
    parts = task.build(torch.device("cpu"))
    sampler = DistributedSampler(parts.train_set, num_replicas=1, rank=0, shuffle=True, seed=seed)
    loader = DataLoader(parts.train_set, batch_size=parts.batch_size, sampler=sampler)
    losses = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for it, batch in enumerate(loader):
            loss, _ = task.train_step(parts.model, batch, epoch, it)
            parts.optimizer.zero_grad()
            loss.backward()
            parts.optimizer.step()
            parts.schedule.step_iteration(epoch + (it + 1) / len(loader))
            losses.append(float(loss))
    return losses, task, parts


def test_build_predict_evaluate_shapes(tiny) -> None:
    config, cache = tiny
    _, task, parts = run_epochs(config, cache, 1)
    loader = DataLoader(parts.eval_set, batch_size=16)
    outputs = {}
    with torch.no_grad():
        for batch in loader:
            indices, rows = task.predict(parts.model, batch)
            outputs.update(zip(indices, rows))
    assert sorted(outputs) == list(range(len(parts.eval_set)))
    assert outputs[0].shape == (34,)
    metrics = task.evaluate(outputs)
    assert set(metrics) == set(DefrTask.metric_names)
    assert all(0.0 <= v <= 1.0 for v in metrics.values() if not np.isnan(v))
    with pytest.raises(RuntimeError, match="missing"):
        task.evaluate({k: v for k, v in outputs.items() if k})


def test_training_overfits_a_small_set(tiny) -> None:
    config, cache = tiny
    losses, _, _ = run_epochs(config, cache, 12)
    first, last = np.mean(losses[:3]), np.mean(losses[-3:])
    assert last < 0.8 * first, (first, last)


def test_same_seed_same_weights_other_seed_differs(tiny) -> None:
    config, cache = tiny
    a, _, parts_a = run_epochs(config, cache, 1, seed=3)
    b, _, parts_b = run_epochs(config, cache, 1, seed=3)
    c, _, _ = run_epochs(config, cache, 1, seed=4)
    assert a == b and a != c
    for (name, x), (_, y) in zip(parts_a.model.state_dict().items(), parts_b.model.state_dict().items()):
        assert torch.equal(x, y), name


def test_rng_state_round_trips_through_weights_only_load(tmp_path: Path) -> None:
    seed_everything(5)
    state = rng_state()
    expected = (torch.rand(3), np.random.rand(3), __import__("random").random())
    torch.save({"rng": state}, tmp_path / "s.pt")
    seed_everything(99)
    set_rng_state(torch.load(tmp_path / "s.pt", weights_only=True)["rng"])
    again = (torch.rand(3), np.random.rand(3), __import__("random").random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1]) and expected[2] == again[2]
