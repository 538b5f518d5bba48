"""The task code on a CUDA GPU (skipped without one): DEFR and QPIC/HQM build, train, predict and evaluate on the
device, agree with the CPU on the first step, learn one batch, and DEFR's bf16 autocast runs.

CI has no GPU, so these run where one is lent (docs/benchmarks.md says when they last ran and on what).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from raysweep.sweep.worker import seed_everything
from raysweep.tasks.base import evaluate_in_process
from raysweep.tasks.defr.config import DefrConfig
from raysweep.tasks.defr.task import DefrTask
from raysweep.tasks.hqm.config import HqmConfig
from raysweep.tasks.hqm.task import HqmTask

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CUDA = torch.device("cuda")
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _exact_fp32():
    """TF32 would make CPU and GPU disagree in the third digit; the comparisons below are about the code, not it."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _with_root(config, updates):
    tree = config.model_dump(mode="json")
    tree["data"]["root"] = updates["data.root"]
    return type(config).model_validate(tree)


@pytest.fixture(scope="module")
def defr_config(tmp_path_factory) -> tuple[DefrConfig, Path]:
    cache = tmp_path_factory.mktemp("cache")
    config = DefrConfig.model_validate({
        "data": {"synth": {"num_train": 48, "num_test": 32, "image_size": 32}, "image_size": 32, "augment": False},
        "model": {"depth": 1, "patch_size": 8, "stem": "conv"},
        "classifier": {"init": "rand"},  # the text encoders are exercised on the CPU; this file is about the device
        "optim": {"lr": 3e-3, "schedule": "constant"},
        "train": {"epochs": 1, "batch_size": 16, "eval_batch_size": 32},
    })
    return _with_root(config, DefrTask.prepare(config, cache)), cache


@pytest.fixture(scope="module")
def hqm_config(tmp_path_factory) -> tuple[HqmConfig, Path]:
    cache = tmp_path_factory.mktemp("cache")
    config = HqmConfig.model_validate({
        "data": {"synth": {"num_train": 10, "num_test": 10, "image_size": 64, "pairs_per_image": [1.0, 0.0, 0.0]},
                 "augment": False, "train_scales": [64], "test_size": 64},
        "model": {"num_queries": 6, "d_model": 32, "nhead": 2, "dim_feedforward": 64, "tiny_width": 8},
        "optim": {"lr": 1e-3, "lr_backbone": 1e-3},
        "train": {"batch_size": 4, "eval_batch_size": 8},
    })
    return _with_root(config, HqmTask.prepare(config, cache)), cache


def _first_batch(parts):
    return next(iter(DataLoader(parts.train_set, batch_size=parts.batch_size, collate_fn=parts.collate_fn)))


def _first_loss(task_cls, config, cache, device) -> float:
    seed_everything(0)
    task = task_cls(config, cache)
    parts = task.build(device)
    parts.model.eval()  # no dropout: CPU and GPU see the same function
    loss, _ = task.train_step(parts.model, _first_batch(parts), 0, 0, parts.state)
    return loss.item()


def _overfit(task, parts, batch, steps: int) -> list[float]:
    parts.model.train()
    losses = []
    for it in range(steps):
        loss, _ = task.train_step(parts.model, batch, 0, it, parts.state)
        parts.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if parts.grad_clip_norm:
            torch.nn.utils.clip_grad_norm_(parts.model.parameters(), parts.grad_clip_norm)
        parts.optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(x) for x in losses)
    return losses


def test_defr_first_step_matches_the_cpu(defr_config):
    config, cache = defr_config
    cpu, gpu = _first_loss(DefrTask, config, cache, CPU), _first_loss(DefrTask, config, cache, CUDA)
    assert gpu == pytest.approx(cpu, rel=1e-4)


@pytest.mark.parametrize("amp", ["off", "bf16"])
def test_defr_learns_and_evaluates_on_the_gpu(defr_config, amp):
    config, cache = defr_config
    config = config.model_copy(update={"train": config.train.model_copy(update={"amp": amp})})
    seed_everything(0)
    task = DefrTask(config, cache)
    parts = task.build(CUDA)
    assert next(parts.model.parameters()).device.type == "cuda"
    losses = _overfit(task, parts, _first_batch(parts), 40)
    assert losses[-1] < 0.5 * losses[0]
    metrics = evaluate_in_process(task, parts)
    assert set(task.metric_names) <= set(metrics)
    assert all(0.0 <= metrics[k] <= 1.0 for k in task.metric_names)


def test_hqm_first_step_matches_the_cpu(hqm_config):
    config, cache = hqm_config
    cpu, gpu = _first_loss(HqmTask, config, cache, CPU), _first_loss(HqmTask, config, cache, CUDA)
    assert gpu == pytest.approx(cpu, rel=1e-4)


@pytest.mark.parametrize("gbs, amm", [(False, False), (True, True)])
def test_hqm_learns_and_evaluates_on_the_gpu(hqm_config, gbs, amm):
    config, cache = hqm_config
    config = config.model_copy(update={"hqm": config.hqm.model_copy(update={"gbs": gbs, "amm": amm})})
    seed_everything(0)
    task = HqmTask(config, cache)
    parts = task.build(CUDA)
    task.on_epoch_start(0)
    losses = _overfit(task, parts, _first_batch(parts), 60)
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5
    metrics = evaluate_in_process(task, parts)
    assert set(task.metric_names) <= set(metrics) and 0.0 <= metrics["map"] <= 1.0
    # ten synthetic test images hold no rare class: those columns are NaN by the protocol, the rest in [0, 1]
    assert all(math.isnan(metrics[k]) or 0.0 <= metrics[k] <= 1.0 for k in task.metric_names), metrics


@pytest.mark.parametrize("gbs, amm", [(False, False), (True, False), (False, True)])
def test_hqm_paper_size_model_steps_on_the_gpu(hqm_config, gbs, amm):
    """ResNet-50, d 256, 6 + 6 layers, 100 queries: one step, and every trainable parameter gets a gradient."""
    config, cache = hqm_config
    tree = config.model_dump(mode="json")
    tree["model"].update(backbone="resnet50", d_model=256, nhead=8, enc_layers=6, dec_layers=6,
                         dim_feedforward=2048, num_queries=100)
    tree["hqm"].update(gbs=gbs, amm=amm)
    task = HqmTask(HqmConfig.model_validate(tree), cache)
    parts = task.build(CUDA)
    task.on_epoch_start(0)
    loss, logs = task.train_step(parts.model, _first_batch(parts), 0, 0, parts.state)
    loss.backward()
    assert math.isfinite(loss.item()) and (logs["loss_hard"] > 0) == (gbs or amm)
    missing = [n for n, p in parts.model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing[:5]


def test_the_sweeps_loaders_pin_batches_for_a_gpu_trial(defr_config):
    from raysweep.sweep.worker import make_loaders

    config, cache = defr_config
    for device, pinned in ((CUDA, True), (CPU, False)):
        parts = DefrTask(config, cache).build(device)
        train_loader, eval_loaders = make_loaders(parts, rank=0, world=1, seed=0)
        assert train_loader.pin_memory is pinned and all(loader.pin_memory is pinned for loader in eval_loaders.values())
        if pinned:
            images = next(iter(train_loader))[0]
            assert images.is_pinned()


def test_hqm_bf16_first_step_is_close_to_fp32_and_learns(hqm_config):
    config, cache = hqm_config
    tree = config.model_dump(mode="json")
    tree["train"]["amp"] = "bf16"
    bf16_config = HqmConfig.model_validate(tree)
    fp32, bf16 = (_first_loss(HqmTask, c, cache, CUDA) for c in (config, bf16_config))
    assert bf16 == pytest.approx(fp32, rel=5e-2)
    seed_everything(0)
    task = HqmTask(bf16_config, cache)
    parts = task.build(CUDA)
    losses = _overfit(task, parts, _first_batch(parts), steps=30)
    assert min(losses[-5:]) < 0.8 * losses[0]
