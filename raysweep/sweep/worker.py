"""The Ray Train worker loop: one DDP worker of one trial, driving any `Task`.

Ray-specific lines are few and marked `# ray:`; the rest is the plain PyTorch loop of `raysweep.tasks.base`.
"""

from __future__ import annotations

import json
import logging
import math
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from raysweep.experiment.layout import FAILURE_FILE, FAILURE_KEY, STATE_FILE
from raysweep.spec.load import set_path
from raysweep.sweep.checkpoints import load_resume_point, write_history
from raysweep.tasks.registry import get_task

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """RNG states as tensors and lists only, so the checkpoint loads with `weights_only=True`."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "python": [list(random.getstate()[1]), random.getstate()[0], random.getstate()[2]],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    internal, version, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def _all_reduce(values: list[float], device: torch.device, op=None) -> list[float]:
    if not (dist.is_available() and dist.is_initialized()):
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=op or dist.ReduceOp.SUM)
    return t.tolist()


def _gather_outputs(local: dict[int, Any]) -> dict[int, Any] | None:
    """All eval outputs on rank 0 (None elsewhere); DistributedSampler's padding duplicates collapse by index."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return local
    gathered: list[Any] | None = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(local, gathered, dst=0)
    if gathered is None:
        return None
    merged: dict[int, Any] = {}
    for part in gathered:
        merged.update(part)
    return merged


def _broadcast(obj: Any) -> Any:
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Entry point given to `TorchTrainer`. `loop_config`: {"task", "config", "seed"}."""
    import ray.train  # ray: the session API
    import ray.train.torch  # ray: device + DDP helpers

    ctx = ray.train.get_context()  # ray
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    threads = int(loop_config.get("threads_per_worker") or 0)
    if threads > 0:
        torch.set_num_threads(threads)
    task_cls = get_task(loop_config["task"])
    config = task_cls.config_model.model_validate(loop_config["config"])
    updates = task_cls.prepare(config, Path(loop_config["cache_dir"]))  # a cache hit after the sweep's own call
    if updates:
        tree = config.model_dump(mode="json")
        for key, value in updates.items():
            set_path(tree, key, value)
        config = task_cls.config_model.model_validate(tree)
    task = task_cls(config, cache_dir=Path(loop_config["cache_dir"]))
    seed = int(loop_config.get("seed", 0))
    seed_everything(seed)  # same model init on every rank (DDP also broadcasts rank 0's weights)
    device = ray.train.torch.get_device()  # ray
    parts = task.build(device, rank, world)
    model = ray.train.torch.prepare_model(  # ray: DDP wrap (no-op for one worker) and move to device
        parts.model, parallel_strategy_kwargs={"find_unused_parameters": parts.find_unused_parameters})
    train_sampler = DistributedSampler(parts.train_set, num_replicas=world, rank=rank, shuffle=True, seed=seed)
    loader_kw = dict(collate_fn=parts.collate_fn, num_workers=parts.num_loader_workers,
                     persistent_workers=parts.num_loader_workers > 0)
    train_loader = DataLoader(parts.train_set, batch_size=parts.batch_size, sampler=train_sampler, drop_last=False, **loader_kw)
    # The selection split comes first: validation when the config carves one out, else test (a fixed grid that
    # reproduces a published test protocol). Only its metrics carry forward to epochs without evaluation.
    eval_loaders = {split: DataLoader(dataset, batch_size=parts.eval_batch_size, **loader_kw,
                                      sampler=DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=False))
                    for split, dataset in (("val", parts.val_set), ("test", parts.eval_set)) if dataset is not None}
    selection_split = next(iter(eval_loaders))

    start_epoch, last_metrics, history, resume_warning = 0, {}, [], None
    checkpoint = ray.train.get_checkpoint()  # ray: set when resuming (restart or --resume)
    if checkpoint is not None:
        point = load_resume_point(checkpoint, device)  # falls back to an older checkpoint if this one is unreadable
        if point.failure is not None or point.unreadable:  # failed for good before, or nothing left to resume from
            _report_failure(rank, point.failure or {"epochs_total": task.epochs, FAILURE_KEY: point.warning()},
                            point.history)
            return
        state, history, resume_warning = point.state, point.history, point.warning()
        _unwrap(model).load_state_dict(state["model"])
        parts.optimizer.load_state_dict(state["optimizer"])
        parts.schedule.load_state_dict(state["schedule"])
        start_epoch = int(state["epoch"]) + 1
        last_metrics = dict(state.get("metrics", {}))
        set_rng_state(state["rng"][min(rank, len(state["rng"]) - 1)] if isinstance(state["rng"], list) else state["rng"])
        log.info("rank %d resumed from epoch %d", rank, start_epoch)
    else:
        seed_everything(seed + 1000 * rank)  # independent augmentation streams per worker

    epochs = task.epochs
    from raysweep.sweep.eval_offload import EvalOffload  # train.eval_overlap: scoring off the critical path

    offload = EvalOffload.create(task, parts, config, loop_config, rank, world, device, selection_split, history)
    for epoch in range(start_epoch, epochs):
        started = time.perf_counter()
        model.train()
        train_sampler.set_epoch(epoch)
        task.on_epoch_start(epoch)
        loss_sum, steps, images, extra_sums, failure = 0.0, 0, 0, {}, None
        n_batches = len(train_loader)
        for it, batch in enumerate(train_loader):
            loss, logs = task.train_step(model, batch, epoch, it)
            value = float(loss.detach())
            bad = not math.isfinite(value)
            if world > 1:  # every rank must stop at the same iteration, or DDP's all-reduce hangs
                bad = _all_reduce([float(bad)], device, op=dist.ReduceOp.MAX)[0] > 0
            if bad:
                failure = f"loss became {value} at epoch {epoch + 1}, iteration {it + 1}"
                break
            parts.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if parts.grad_clip_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), parts.grad_clip_norm)
            parts.optimizer.step()
            parts.schedule.step_iteration(epoch + (it + 1) / n_batches)
            loss_sum += value
            steps += 1
            images += task.num_samples(batch)
            for k, v in logs.items():
                extra_sums[k] = extra_sums.get(k, 0.0) + float(v)
        train_time = time.perf_counter() - started
        if offload is not None:  # the previous epoch was scored while this one trained: report it now
            last_metrics = offload.settle(last_metrics)
        if failure is not None:
            _report_failure(rank, {"epoch": epoch + 1, "epochs_total": task.epochs, FAILURE_KEY: failure})
            return
        keys = sorted(extra_sums)
        totals = _all_reduce([loss_sum, steps, images] + [extra_sums[k] for k in keys], device)
        max_time = _all_reduce([train_time], device, op=dist.ReduceOp.MAX if dist.is_initialized() else None)[0]
        metrics: dict[str, Any] = {
            "epoch": epoch + 1,
            "epochs_total": epochs,
            "loss": totals[0] / max(totals[1], 1),
            "lr": parts.optimizer.param_groups[0]["lr"],
            "images_per_s": totals[2] / max(max_time, 1e-9),
            "epoch_time_s": max_time,
            **{f"train_{k}": totals[3 + i] / max(totals[1], 1) for i, k in enumerate(keys)},
        }
        last_epoch = epoch == epochs - 1
        evaluated = task.should_evaluate(epoch) or last_epoch
        test_due = last_epoch or (task.should_evaluate_test(epoch) if selection_split == "val" else evaluated)
        if offload is not None and not last_epoch and (evaluated or test_due):  # reported by the next settle
            if resume_warning:
                metrics["resume_warning"], resume_warning = resume_warning, None
            offload.defer(epoch, metrics, model, eval_loaders, parts, evaluated, test_due, last_metrics)
            continue
        for split, loader in eval_loaders.items():
            if not (evaluated if split == selection_split else test_due):
                continue
            split_metrics = _evaluate_split(task, model, loader, split, rank)
            if rank == 0:
                save_per_class(loop_config, task, epoch + 1, split)
            if split == selection_split:
                last_metrics = split_metrics  # carried forward on epochs without evaluation
            else:
                metrics.update(split_metrics)
        if last_epoch:  # the task's once-only metrics of the final model on test data, e.g. DEFR's detection mAP
            final = _broadcast(task.final_metrics(_unwrap(model)) if rank == 0 else None)
            metrics.update({f"test.{k}": float(v) for k, v in (final or {}).items()})
        metrics.update(last_metrics)
        metrics["evaluated"] = evaluated
        metrics["test_evaluated"] = test_due
        objective = loop_config.get("metric", "")
        parts.schedule.step_epoch(epoch, metrics.get(objective) if evaluated else None)
        metrics["eval_time_s"] = time.perf_counter() - started - train_time

        state = {"model": _unwrap(model).state_dict(), "optimizer": parts.optimizer.state_dict(),
                 "schedule": parts.schedule.state_dict(), "epoch": epoch, "metrics": last_metrics}
        if resume_warning:  # once, on the first epoch after a fallback: result.json says which file was skipped
            metrics["resume_warning"], resume_warning = resume_warning, None
        history.append(metrics)
        rngs = _gather_rng(world)
        if rank == 0:
            with tempfile.TemporaryDirectory() as folder:
                torch.save({**state, "rng": rngs}, Path(folder) / STATE_FILE)
                write_history(folder, history)  # every epoch so far: fills what a killed sweep never synced
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))  # ray
        else:
            ray.train.report(metrics, checkpoint=None)  # ray: every worker reports (collective)


def save_per_class(loop_config: dict[str, Any], task: Any, epoch: int, split: str = "test") -> None:
    """Rank 0: the last evaluation's per-class results into the trial's per-class file (for plots). A failure to
    write is logged, never fatal: the metrics are what the sweep needs."""
    from raysweep.experiment.per_class import append_evaluation

    columns = task.per_class_results()
    path = loop_config.get("per_class_path")
    if not columns or not path:
        return
    try:
        append_evaluation(path, loop_config.get("trial_id", ""), epoch, columns, split=split)
    except Exception as exc:  # noqa: BLE001
        log.warning("per-class results of epoch %d not saved to %s: %s", epoch, path, exc)


def _evaluate_split(task: Any, model: torch.nn.Module, loader: DataLoader, split: str, rank: int) -> dict[str, float]:
    """`<split>.<metric>` for one split: every rank predicts its shard, rank 0 scores once, all ranks get the result."""
    model.eval()
    local: dict[int, Any] = {}
    with torch.no_grad():
        for batch in loader:
            indices, outputs = task.predict(model, batch)
            local.update({int(i): o for i, o in zip(indices, outputs)})
    gathered = _gather_outputs(local)
    scores = task.evaluate(gathered, split) if rank == 0 else None
    scores = _broadcast(scores)
    return {f"{split}.{k}": float(v) for k, v in scores.items() if isinstance(v, (int, float))}


def _report_failure(rank: int, metrics: dict[str, Any], history: list[dict[str, Any]] | None = None) -> None:
    """End the run with a reason instead of raising: a restart from the last checkpoint would only hit the same NaN.

    The reason travels as a checkpoint (Train's `Result.metrics` are those of the latest checkpoint), which the
    driver turns into a `TrialFailure`; a relaunched trial finds it and fails again at once.
    """
    import ray.train

    if rank == 0:
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / FAILURE_FILE).write_text(json.dumps(metrics))
            if history:  # the epochs before the failure, for raysweep collect (Train may delete older checkpoints)
                write_history(folder, history)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))
    else:
        ray.train.report(metrics, checkpoint=None)


def _gather_rng(world: int) -> list[dict[str, Any]]:
    """Every rank's RNG state, so a restart resumes each worker's augmentation stream."""
    mine = rng_state()
    if world == 1 or not dist.is_initialized():
        return [mine]
    states: list[Any] = [None] * world
    dist.all_gather_object(states, mine)
    return states
