"""The Task contract, exercised on every registered task with a tiny model: no Ray import, a declared `train`
section, prepare, build, explicit state, learn, reproduce."""

from __future__ import annotations

import math
import pkgutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

import raysweep
from raysweep.config_tree import with_updates
from raysweep.sweep.worker import rng_state, seed_everything, set_rng_state
from raysweep.tasks.base import Task, TrainingParts, TrainSection
from raysweep.tasks.defr.task import DefrTask
from raysweep.tasks.registry import TASKS, get_task

# A tiny config per registered task (a new task adds its own here) and the epochs in which it visibly learns.
TINY: dict[str, tuple[dict[str, Any], int]] = {
    "defr": ({
        "data": {"synth": {"num_train": 60, "num_test": 40, "image_size": 32}, "image_size": 32, "augment": False},
        "model": {"depth": 1, "patch_size": 8, "stem": "conv"},
        "classifier": {"log_scale": 2.3},
        "optim": {"lr": 3e-3, "schedule": "constant"},
        "train": {"epochs": 2, "batch_size": 20, "eval_batch_size": 40},
    }, 12),
    "hqm": ({
        "data": {"synth": {"num_train": 12, "num_test": 10, "image_size": 48, "objects": ["ball", "dog"]},
                 "train_scales": [48], "max_size": 64, "crop_resize_scales": [48], "crop_min": 32, "crop_max": 48,
                 "test_size": 48, "test_max_size": 64},
        "model": {"num_queries": 4, "d_model": 16, "nhead": 2, "dim_feedforward": 32, "tiny_width": 8,
                  "enc_layers": 1, "dec_layers": 1},
        "optim": {"lr": 1e-3, "lr_backbone": 1e-3},
        "train": {"epochs": 2, "batch_size": 6, "eval_batch_size": 10},
    }, 6),
}
NO_RAY_PACKAGES = ("raysweep.tasks", "raysweep.metrics", "raysweep.data")


def no_ray_modules() -> list[str]:
    """Every module of the task, metric and data packages, found from the package itself."""
    names = []
    for package in NO_RAY_PACKAGES:
        folder = Path(raysweep.__file__).parent.joinpath(*package.split(".")[1:])
        names.append(package)
        names += [info.name for info in pkgutil.walk_packages([str(folder)], prefix=package + ".")]
    return names


def test_every_registered_task_has_a_tiny_config() -> None:
    assert set(TINY) == set(TASKS)


def test_task_code_never_imports_ray_or_optuna() -> None:
    modules = no_ray_modules()
    assert {"raysweep.tasks.base", "raysweep.tasks.defr.task", "raysweep.tasks.hqm.task",
            "raysweep.metrics.hico", "raysweep.data.synth.hicodet"} <= set(modules)
    code = (f"import importlib, sys\nfor name in {modules!r}:\n    importlib.import_module(name)\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'optuna'))\n"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_config_declares_a_train_section(name: str) -> None:
    task_cls = get_task(name)
    config = task_cls.config_model.model_validate(TINY[name][0])
    section = task_cls.train_section(config)
    assert isinstance(section, TrainSection)
    task = task_cls(config)
    assert task.epochs == section.epochs == 2
    assert [task.should_evaluate(e) for e in range(4)] == [(e + 1) % section.eval_every == 0 for e in range(4)]
    every_second = task_cls(with_updates(config, {"train.eval_every": 1, "train.test_every": 2}))
    assert [every_second.should_evaluate_test(e) for e in range(4)] == [False, True, False, True]
    never_early = task_cls(with_updates(config, {"train.test_every": 0}))
    assert not any(never_early.should_evaluate_test(e) for e in range(4))


@pytest.fixture(scope="module", params=sorted(TASKS))
def tiny(request, tmp_path_factory) -> tuple[type[Task], Any, Path, int]:
    task_cls = get_task(request.param)
    tree, learn_epochs = TINY[request.param]
    cache = tmp_path_factory.mktemp(f"cache-{request.param}")
    config = task_cls.config_model.model_validate(tree)
    updates = task_cls.prepare(config, cache)
    assert set(updates) == {"data.root"} and Path(updates["data.root"]).is_dir()
    assert task_cls.prepare(config, cache) == updates  # idempotent: the cache is hit
    return task_cls, with_updates(config, updates), cache, learn_epochs


def run_epochs(task_cls: type[Task], config: Any, cache: Path, epochs: int,
               seed: int = 0) -> tuple[list[float], Task, TrainingParts]:
    seed_everything(seed)
    task = task_cls(config, cache)
    parts = task.build(torch.device("cpu"))
    sampler = DistributedSampler(parts.train_set, num_replicas=1, rank=0, shuffle=True, seed=seed)
    loader = DataLoader(parts.train_set, batch_size=parts.batch_size, sampler=sampler, collate_fn=parts.collate_fn)
    losses = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        task.on_epoch_start(epoch)
        for it, batch in enumerate(loader):
            loss, _ = task.train_step(parts.model, batch, epoch, it, parts.state)
            parts.optimizer.zero_grad()
            loss.backward()
            parts.optimizer.step()
            parts.schedule.step_iteration(epoch + (it + 1) / len(loader))
            losses.append(float(loss))
        parts.schedule.step_epoch(epoch, None)
    return losses, task, parts


def test_build_predict_evaluate_with_explicit_state(tiny) -> None:
    task_cls, config, cache, _ = tiny
    _, _, parts = run_epochs(task_cls, config, cache, 1)
    # a fresh instance that never built anything: everything train_step / predict / evaluate need is in parts.state
    task = task_cls(config, cache)
    batch = next(iter(DataLoader(parts.train_set, batch_size=parts.batch_size, collate_fn=parts.collate_fn)))
    loss, logs = task.train_step(parts.model, batch, 0, 0, parts.state)
    assert loss.requires_grad and math.isfinite(float(loss)) and all(math.isfinite(v) for v in logs.values())
    parts.model.eval()
    outputs = {}
    with torch.no_grad():
        for batch in DataLoader(parts.eval_set, batch_size=parts.eval_batch_size, collate_fn=parts.collate_fn):
            indices, rows = task.predict(parts.model, batch, parts.state)
            outputs.update(zip(indices, rows))
    assert sorted(outputs) == list(range(len(parts.eval_set)))
    metrics = task.evaluate(outputs, "test", parts.state)
    assert task_cls.metric_names[0] in metrics and set(metrics) <= set(task_cls.metric_names)
    assert all(0.0 <= v <= 1.0 for v in metrics.values() if not np.isnan(v))
    columns = task.per_class_results(parts.state)
    assert columns is not None and len(columns["class_index"]) == len(columns["ap"]) == len(columns["n_train"])
    with pytest.raises(RuntimeError, match="missing"):
        task.evaluate({k: v for k, v in outputs.items() if k}, "test", parts.state)


def test_training_lowers_the_loss(tiny) -> None:
    task_cls, config, cache, learn_epochs = tiny
    losses, _, _ = run_epochs(task_cls, config, cache, learn_epochs)
    first, last = np.mean(losses[:3]), np.mean(losses[-3:])
    assert last < 0.8 * first, (first, last)


def test_same_seed_same_weights_other_seed_differs(tiny) -> None:
    task_cls, config, cache, _ = tiny
    a, _, parts_a = run_epochs(task_cls, config, cache, 1, seed=3)
    b, _, parts_b = run_epochs(task_cls, config, cache, 1, seed=3)
    c, _, _ = run_epochs(task_cls, config, cache, 1, seed=4)
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
