"""The Ray Train worker loop: one DDP worker of one trial, driving any `Task`.

Ray-specific lines are few and marked `# ray:`; the rest is the plain PyTorch loop of `raysweep.tasks.base`, in four
steps: `restore` (from Train's last checkpoint), `train_epoch`, `evaluate_epoch` (each split through
`evaluate_split`) and `save_checkpoint`.
"""

from __future__ import annotations

import json
import logging
import math
import random
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from raysweep.config_tree import with_updates
from raysweep.experiment.layout import FAILURE_FILE, FAILURE_KEY, STATE_FILE
from raysweep.experiment.per_class import append_evaluation
from raysweep.sweep.checkpoints import load_resume_point, write_history
from raysweep.sweep.eval_offload import EvalOffload
from raysweep.tasks.base import Task, TaskState, TrainingParts
from raysweep.tasks.registry import get_task

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """RNG states as tensors and lists only, so the checkpoint loads with `weights_only=True`."""
    np_state: tuple[Any, ...] = tuple(np.random.get_state())
    return {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "gauss": float(np_state[4]),
        },
        "python": [list(random.getstate()[1]), random.getstate()[0], random.getstate()[2]],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    internal, version, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    inner = getattr(model, "module", model)  # DDP-wrapped or not
    return inner if isinstance(inner, torch.nn.Module) else model


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
    """Entry point given to `TorchTrainer`. `loop_config`: {"task", "config" (the trial's plain config tree, validated
    here), "metric", "cache_dir", "threads_per_worker", "trial_id", "per_class_path"}."""
    import ray.train  # ray: the session API
    import ray.train.torch  # ray: device + DDP helpers

    ctx = ray.train.get_context()  # ray
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    threads = int(loop_config.get("threads_per_worker") or 0)
    if threads > 0:
        torch.set_num_threads(threads)
    task = make_task(loop_config["task"], loop_config["config"], Path(loop_config["cache_dir"]))
    seed = task.train_section(task.config).seed
    seed_everything(seed)  # same model init on every rank (DDP also broadcasts rank 0's weights)
    device = ray.train.torch.get_device()  # ray
    parts = task.build(device, rank, world)
    model = ray.train.torch.prepare_model(  # ray: DDP wrap (no-op for one worker) and move to device
        parts.model, parallel_strategy_kwargs={"find_unused_parameters": parts.find_unused_parameters}
    )
    train_loader, eval_loaders = make_loaders(parts, rank, world, seed)

    progress, failure = restore(ray.train.get_checkpoint(), model, parts, device, rank, task.epochs)  # ray
    if failure is not None:  # failed for good before, or nothing left to resume from
        _report_failure(rank, failure, progress.history)
        return
    if progress.start_epoch == 0:
        seed_everything(seed + 1000 * rank)  # independent augmentation streams per worker

    selection_split = next(iter(eval_loaders))
    offload = EvalOffload.create(
        task, parts, task.config, loop_config, rank, world, device, selection_split, progress.history
    )  # train.eval_overlap: scoring beside the next epoch's training
    for epoch in range(progress.start_epoch, task.epochs):
        metrics, failure_reason = train_epoch(task, model, parts, train_loader, epoch, device, world)
        if offload is not None:  # the previous epoch was scored while this one trained: report it now
            progress.selection_metrics = offload.settle(progress.selection_metrics)
        if failure_reason is not None:
            _report_failure(rank, {"epoch": epoch + 1, "epochs_total": task.epochs, FAILURE_KEY: failure_reason})
            return
        evaluated, test_due = due_splits(task, epoch, selection_split)
        if offload is not None and epoch < task.epochs - 1 and (evaluated or test_due):  # reported by the next settle
            if progress.resume_warning:
                metrics["resume_warning"], progress.resume_warning = progress.resume_warning, None
            offload.defer(epoch, metrics, model, eval_loaders, parts, evaluated, test_due, progress.selection_metrics)
            continue
        eval_started = time.perf_counter()
        evaluation = evaluate_epoch(task, model, parts, eval_loaders, epoch, rank, loop_config)
        if evaluation.selection is not None:
            progress.selection_metrics = evaluation.selection  # carried forward on epochs without evaluation
        metrics.update(evaluation.others)
        metrics.update(progress.selection_metrics)
        metrics["evaluated"] = evaluation.evaluated
        metrics["test_evaluated"] = evaluation.test_evaluated
        objective = loop_config.get("metric", "")
        parts.schedule.step_epoch(epoch, metrics.get(objective) if evaluation.evaluated else None)
        metrics["eval_time_s"] = time.perf_counter() - eval_started
        save_checkpoint(model, parts, epoch, metrics, progress, rank, world)


@dataclass
class TrialProgress:
    """Where a worker's trial stands between epochs: restored from a checkpoint, then advanced by each epoch."""

    start_epoch: int = 0
    selection_metrics: dict[str, Any] = field(default_factory=dict)  # the selection split's latest metrics
    history: list[dict[str, Any]] = field(default_factory=list)  # every epoch's report so far
    resume_warning: str | None = None  # said once in the next report: which unreadable checkpoint was skipped


@dataclass
class EpochEvaluation:
    """What one epoch's evaluation found: the selection split's metrics (None: not evaluated this epoch), the other
    splits' and the final ones, and which were due."""

    selection: dict[str, float] | None
    others: dict[str, float]
    evaluated: bool
    test_evaluated: bool


def make_task(name: str, config_tree: dict[str, Any], cache_dir: Path) -> Task:
    """The trial's task, its config validated once here and completed by the task's shared preparation (a cache hit
    after the sweep's own call, e.g. the embedded data's folder in `data.root`)."""
    task_cls = get_task(name)
    config = task_cls.config_model.model_validate(config_tree)
    updates = task_cls.prepare(config, cache_dir)
    return task_cls(with_updates(config, updates) if updates else config, cache_dir=cache_dir)


def make_loaders(parts: TrainingParts, rank: int, world: int, seed: int) -> tuple[DataLoader, dict[str, DataLoader]]:
    """The sharded training loader and {split: sharded eval loader}, the selection split first: validation when the
    config carves one out, else test (a fixed grid that reproduces a published test protocol)."""
    loader_kw: dict[str, Any] = dict(
        collate_fn=parts.collate_fn,
        num_workers=parts.num_loader_workers,
        persistent_workers=parts.num_loader_workers > 0,
        # page-locked batches, so the tasks' `.to(device, non_blocking=True)` copies overlap the GPU's work
        pin_memory=parts.state.device.type == "cuda",
    )
    train_sampler: DistributedSampler = DistributedSampler(
        parts.train_set, num_replicas=world, rank=rank, shuffle=True, seed=seed
    )
    train_loader = DataLoader(
        parts.train_set, batch_size=parts.batch_size, sampler=train_sampler, drop_last=False, **loader_kw
    )
    eval_loaders = {
        split: DataLoader(
            dataset,
            batch_size=parts.eval_batch_size,
            **loader_kw,
            sampler=DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=False),
        )
        for split, dataset in (("val", parts.val_set), ("test", parts.eval_set))
        if dataset is not None
    }
    return train_loader, eval_loaders


def restore(
    checkpoint: Any, model: torch.nn.Module, parts: TrainingParts, device: torch.device, rank: int, epochs: int
) -> tuple[TrialProgress, dict[str, Any] | None]:
    """Model, optimiser, schedule, epoch and RNG from Train's last checkpoint (`ray.train.get_checkpoint()`; None: a
    fresh start). Returns the progress and, when the trial cannot go on (it failed for good before, or no checkpoint
    is readable), the failure report to end it with."""
    if checkpoint is None:
        return TrialProgress(), None
    point = load_resume_point(checkpoint, device)  # falls back to an older checkpoint if this one is unreadable
    if point.failure is not None or point.unreadable:
        return TrialProgress(history=point.history), point.failure or {
            "epochs_total": epochs,
            FAILURE_KEY: point.warning(),
        }
    state = point.state
    assert state is not None
    _unwrap(model).load_state_dict(state["model"])
    parts.optimizer.load_state_dict(state["optimizer"])
    parts.schedule.load_state_dict(state["schedule"])
    set_rng_state(state["rng"][min(rank, len(state["rng"]) - 1)] if isinstance(state["rng"], list) else state["rng"])
    progress = TrialProgress(
        start_epoch=int(state["epoch"]) + 1,
        selection_metrics=dict(state.get("metrics", {})),
        history=point.history,
        resume_warning=point.warning(),
    )
    log.info("rank %d resumed from epoch %d", rank, progress.start_epoch)
    return progress, None


def train_epoch(
    task: Task,
    model: torch.nn.Module,
    parts: TrainingParts,
    loader: DataLoader,
    epoch: int,
    device: torch.device,
    world: int,
) -> tuple[dict[str, Any], str | None]:
    """One pass over this worker's shard: (the epoch's training metrics, averaged over all ranks; the reason training
    cannot go on, e.g. a NaN loss, else None)."""
    started = time.perf_counter()
    model.train()
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)
    task.on_epoch_start(epoch)
    loss_sum, steps, images = 0.0, 0, 0
    extra_sums: dict[str, float] = {}
    n_batches = len(loader)
    for it, batch in enumerate(loader):
        loss, logs = task.train_step(model, batch, epoch, it, parts.state)
        value = float(loss.detach())
        bad = not math.isfinite(value)
        if world > 1:  # every rank must stop at the same iteration, or DDP's all-reduce hangs
            bad = _all_reduce([float(bad)], device, op=dist.ReduceOp.MAX)[0] > 0
        if bad:
            return {}, f"loss became {value} at epoch {epoch + 1}, iteration {it + 1}"
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
    keys = sorted(extra_sums)
    totals = _all_reduce([loss_sum, steps, images] + [extra_sums[k] for k in keys], device)
    max_time = _all_reduce([train_time], device, op=dist.ReduceOp.MAX if dist.is_initialized() else None)[0]
    return {
        "epoch": epoch + 1,
        "epochs_total": task.epochs,
        "loss": totals[0] / max(totals[1], 1),
        "lr": parts.optimizer.param_groups[0]["lr"],
        "images_per_s": totals[2] / max(max_time, 1e-9),
        "epoch_time_s": max_time,
        **{f"train_{k}": totals[3 + i] / max(totals[1], 1) for i, k in enumerate(keys)},
    }, None


def due_splits(task: Task, epoch: int, selection_split: str) -> tuple[bool, bool]:
    """(the selection split is due after `epoch`, the test split is due): `should_evaluate` / `should_evaluate_test`,
    both after the last epoch; without validation the test split is the selection split."""
    last_epoch = epoch == task.epochs - 1
    evaluated = task.should_evaluate(epoch) or last_epoch
    test_due = last_epoch or (task.should_evaluate_test(epoch) if selection_split == "val" else evaluated)
    return evaluated, test_due


def evaluate_epoch(
    task: Task,
    model: torch.nn.Module,
    parts: TrainingParts,
    loaders: dict[str, DataLoader],
    epoch: int,
    rank: int,
    loop_config: dict[str, Any],
) -> EpochEvaluation:
    """The splits due after `epoch` (the selection split on `should_evaluate`, test on `should_evaluate_test`, both
    after the last epoch), each scored by `evaluate_split`; after the last epoch also the task's final metrics."""
    last_epoch = epoch == task.epochs - 1
    selection_split = next(iter(loaders))
    evaluated, test_due = due_splits(task, epoch, selection_split)
    selection: dict[str, float] | None = None
    others: dict[str, float] = {}
    for split, loader in loaders.items():
        if not (evaluated if split == selection_split else test_due):
            continue
        split_metrics = evaluate_split(task, model, loader, split, rank, parts.state)
        if rank == 0:
            save_per_class(loop_config, task, parts.state, epoch + 1, split)
        if split == selection_split:
            selection = split_metrics
        else:
            others.update(split_metrics)
    if last_epoch:  # the task's once-only metrics of the final model on test data, e.g. DEFR's detection mAP
        final = _broadcast(task.final_metrics(_unwrap(model), parts.state) if rank == 0 else None)
        others.update({f"test.{k}": float(v) for k, v in (final or {}).items()})
    return EpochEvaluation(selection, others, evaluated, test_due)


def predict_shard(task: Task, model: torch.nn.Module, loader: DataLoader, state: TaskState) -> dict[int, Any]:
    """This rank's outputs over its shard of one split, by dataset index."""
    model.eval()
    local: dict[int, Any] = {}
    with torch.no_grad():
        for batch in loader:
            indices, outputs = task.predict(model, batch, state)
            local.update({int(i): o for i, o in zip(indices, outputs, strict=True)})
    return local


def evaluate_split(
    task: Task, model: torch.nn.Module, loader: DataLoader, split: str, rank: int, state: TaskState
) -> dict[str, float]:
    """`<split>.<metric>` for one split: every rank predicts its shard, rank 0 scores once, all ranks get the result.
    The one place the loop evaluates."""
    gathered = _gather_outputs(predict_shard(task, model, loader, state))
    scores = task.evaluate(gathered, split, state) if rank == 0 and gathered is not None else None
    scores = _broadcast(scores)
    return {f"{split}.{k}": float(v) for k, v in scores.items() if isinstance(v, (int, float))}


def save_checkpoint(
    model: torch.nn.Module,
    parts: TrainingParts,
    epoch: int,
    metrics: dict[str, Any],
    progress: TrialProgress,
    rank: int,
    world: int,
) -> None:
    """Report the epoch's metrics to Train with a checkpoint (rank 0 writes it: model, optimiser, schedule, epoch, the
    selection metrics carried forward, every rank's RNG, and the history so far)."""
    import ray.train  # ray: the session API

    state = {
        "model": _unwrap(model).state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "schedule": parts.schedule.state_dict(),
        "epoch": epoch,
        "metrics": progress.selection_metrics,
    }
    if progress.resume_warning:  # once, on the first epoch after a fallback: result.json says which file was skipped
        metrics["resume_warning"], progress.resume_warning = progress.resume_warning, None
    progress.history.append(metrics)
    rngs = _gather_rng(world)
    if rank == 0:
        with tempfile.TemporaryDirectory() as folder:
            torch.save({**state, "rng": rngs}, Path(folder) / STATE_FILE)
            write_history(folder, progress.history)  # every epoch so far: fills what a killed sweep never synced
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))  # ray
    else:
        ray.train.report(metrics, checkpoint=None)  # ray: every worker reports (collective)


def save_per_class(loop_config: dict[str, Any], task: Task, state: TaskState, epoch: int, split: str = "test") -> None:
    """Rank 0: the last evaluation's per-class results into the trial's per-class file (for plots)."""
    write_per_class(loop_config, task.per_class_results(state), epoch, split)


def write_per_class(loop_config: Mapping[str, Any], columns: Any, epoch: int, split: str) -> None:
    """Rank 0: one evaluation's per-class columns into the trial's per-class file. A failure to write is logged,
    never fatal: the metrics are what the sweep needs."""
    path = loop_config.get("per_class_path")
    if not columns or not path:
        return
    try:
        append_evaluation(path, loop_config.get("trial_id", ""), epoch, columns, split=split)
    except Exception as exc:  # noqa: BLE001
        log.warning("per-class results of epoch %d not saved to %s: %s", epoch, path, exc)


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
