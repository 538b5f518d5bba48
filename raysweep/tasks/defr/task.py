"""DEFR as a sweepable task: HICO multi-label recognition with a language-initialised classifier."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from raysweep import progress
from raysweep.config_tree import with_updates
from raysweep.data.synth.hico import ensure_synthetic_hico
from raysweep.errors import DataError
from raysweep.metrics.hico import FEW_SHOT_KS, defr_few_shot_lists, evaluate_hico, few_shot_classes, hico_labels
from raysweep.tasks.base import Task, TaskState, TrainingParts
from raysweep.tasks.common import schedules
from raysweep.tasks.common.splits import stratified_holdout
from raysweep.tasks.defr.backbones import check_local_weights, normalisation_for
from raysweep.tasks.defr.card import CARD
from raysweep.tasks.defr.config import DefrConfig
from raysweep.tasks.defr.data import (
    HicoDataset,
    build_transforms,
    load_hico_annotations,
    load_vocabulary,
    rebalance_indices,
    scan_image_files,
)
from raysweep.tasks.defr.detection import final_detection_metrics, prepare_detection
from raysweep.tasks.defr.embeddings import text_embeddings
from raysweep.tasks.defr.few_shot import few_shot_lists_for
from raysweep.tasks.defr.losses import build_loss, wbce_pos_weight
from raysweep.tasks.defr.model import build_defr_net
from raysweep.tasks.defr.prompts import class_prompts
from raysweep.tasks.defr.text_tower import resolve_text_encoder

log = logging.getLogger(__name__)


@dataclass
class DefrState(TaskState):
    """What `DefrTask.build` hands its steps: the loss and each split's labels (rows: images, columns: classes)."""

    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    labels: dict[str, np.ndarray]  # "train" (what the model trained on), "test" and, with validation, "val"
    amp: str = "off"

    def autocast(self) -> Any:
        """bf16 autocast on a GPU when `train.amp: bf16`, else a context that does nothing."""
        if self.amp == "bf16" and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return torch.autocast("cpu", enabled=False)


class DefrTask(Task):
    card = CARD
    config: DefrConfig

    # ---- shared, once per sweep ---------------------------------------------------------------------------
    @classmethod
    def prepare(cls, config: DefrConfig, cache_dir: Path) -> dict[str, Any]:
        """Generate the embedded synthetic HICO when `data.root` is null; compute the language embeddings.

        Also checks every file a trial would otherwise meet only after Ray started (data.root and its layout,
        few-shot lists, vocabulary, checkpoint path), so bad input fails here with one DataError / ConfigError.
        """
        updates: dict[str, Any] = prepare_detection(config, cache_dir)  # {} unless detection.enabled
        if config.data.root is None and "data.root" not in updates:
            root = ensure_synthetic_hico(cache_dir, config.data.synth, progress=progress.enabled())
            updates["data.root"] = str(root)
        elif config.data.root is not None and not Path(config.data.root).is_dir():
            raise DataError(f"data.root {config.data.root!r}: no such folder; give the folder holding anno.pkl and "
                            f"images/train2015, images/test2015 (or null for the embedded synthetic HICO)")
        config = with_updates(config, updates)
        task = cls(config, cache_dir)
        annotations = task.annotations  # validates anno.pkl before any trial starts
        images = Path(config.data.root) / "images"
        _check_image_folder(images / "train2015", annotations.files_train, config.data.max_bad_images)
        _check_image_folder(images / "test2015", annotations.files_test, config.data.max_bad_images)
        few_shot_lists_for(config.data.few_shot_lists, annotations.num_classes)  # a bad lists file fails here
        _check_weights_path(config)
        if config.classifier.init == "language":
            task.class_embeddings()  # cached on disk, so trials and workers only read it
        return updates

    # ---- per trial ----------------------------------------------------------------------------------------
    @cached_property
    def annotations(self):
        if self.config.data.root is None:
            raise RuntimeError("data.root is unresolved: DefrTask.prepare must run first")
        return load_hico_annotations(Path(self.config.data.root), self.config.data.allow_pickle)

    def class_names(self) -> list[tuple[str, str]]:
        if self.config.data.vocabulary:
            names = load_vocabulary(self.config.data.vocabulary)
        else:
            names = self.annotations.class_names
        num_classes = self.annotations.labels_train.shape[1]
        if names is None:
            raise DataError(f"{self.config.data.root}/anno.pkl: no usable hoi_list for prompts; give "
                            f"data.vocabulary (a JSON list of [verb, object] per class) or prompts.template=file:<path>")
        if len(names) != num_classes:
            raise DataError(f"class names: {len(names)} given but the dataset has {num_classes} classes")
        return names

    def class_embeddings(self) -> np.ndarray:
        template = self.config.prompts.template
        if template.startswith("file:"):
            names = [("", "")] * self.annotations.labels_train.shape[1]
        else:
            names = self.class_names()
        prompts = class_prompts(names, self.config.prompts)
        cache = self.cache_dir if self.cache_dir is not None else None
        encoder, weights = resolve_text_encoder(self.config.model, self.config.classifier)
        return text_embeddings(prompts, encoder, weights, cache)

    def _splits(self) -> dict[str, tuple[np.ndarray, np.ndarray, str]]:
        """{"train" | "val" | "test": (files, labels, image folder)}; "val" only with data.validation."""
        ann, data = self.annotations, self.config.data
        splits = {"test": (ann.files_test, ann.labels_test, "test2015")}
        if not data.validation:
            splits["train"] = (ann.files_train, ann.labels_train, "train2015")
            return splits
        positives = [np.flatnonzero(row == 1) for row in ann.labels_train]
        train_idx, val_idx = stratified_holdout(positives, ann.labels_train.shape[1], data.val_fraction,
                                                data.val_seed)
        splits["train"] = (ann.files_train[train_idx], ann.labels_train[train_idx], "train2015")
        splits["val"] = (ann.files_train[val_idx], ann.labels_train[val_idx], "train2015")
        return splits

    def build(self, device: torch.device, rank: int = 0, world_size: int = 1) -> TrainingParts:
        cfg = self.config
        splits = self._splits()
        train_files, train_labels, _ = splits["train"]
        num_classes = train_labels.shape[1]

        model = build_defr_net(cfg, num_classes, self.cache_dir, self.class_embeddings).to(device)

        norm = cfg.data.normalisation if cfg.data.normalisation != "auto" else normalisation_for(cfg.model)
        root = Path(cfg.data.root)
        targets = (train_labels == 1).astype(np.float32)
        indices = rebalance_indices(targets, cfg.data.min_samples)
        train_set = HicoDataset(root / "images" / "train2015", train_files, train_labels, indices,
                                build_transforms(cfg.data.image_size, True, norm, cfg.data))
        eval_transforms = build_transforms(cfg.data.image_size, False, norm, cfg.data)
        eval_sets = {name: HicoDataset(root / "images" / folder, files, labels, None, eval_transforms)
                     for name, (files, labels, folder) in splits.items() if name != "train"}
        for dataset in (train_set, *eval_sets.values()):
            if hasattr(dataset, "max_bad_fraction"):
                dataset.max_bad_fraction = cfg.data.max_bad_images

        pos_weight = wbce_pos_weight(targets[indices]).to(device) if cfg.loss.name == "wbce" else None
        loss_fn = build_loss(cfg.loss.name, pos_weight=pos_weight, focal_alpha=cfg.loss.focal_alpha,
                             focal_gamma=cfg.loss.focal_gamma)
        groups = model.param_groups(cfg.optim.backbone_lr_mult, cfg.optim.weight_decay,
                                    cfg.optim.no_decay_norm_bias, cfg.optim.lr)
        optimizer = torch.optim.AdamW(groups, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
        per_worker = -(-len(train_set) // world_size)
        iters = max(1, -(-per_worker // cfg.train.batch_size))
        state = DefrState(device=device, loss_fn=loss_fn, amp=cfg.train.amp,
                          labels={name: labels for name, (_, labels, _) in splits.items()})
        return TrainingParts(
            model=model, optimizer=optimizer, schedule=self._schedule(optimizer, iters), train_set=train_set,
            eval_set=eval_sets["test"], val_set=eval_sets.get("val"), batch_size=cfg.train.batch_size,
            eval_batch_size=cfg.train.eval_batch_size, state=state, grad_clip_norm=cfg.optim.grad_clip_norm,
            num_loader_workers=cfg.data.loader_workers)

    def _schedule(self, optimizer: torch.optim.Optimizer, iters_per_epoch: int):
        o = self.config.optim
        if o.schedule == "cosine_restarts":
            return schedules.cosine_restarts(optimizer, o.t0)
        if o.schedule == "cosine_warmup":
            return schedules.cosine_warmup(optimizer, iters_per_epoch, self.epochs, o.warmup_epochs)
        if o.schedule == "cosine":
            return schedules.cosine(optimizer, iters_per_epoch, self.epochs)
        if o.schedule == "multistep":
            return schedules.multistep(optimizer, o.milestones, o.gamma)
        if o.schedule == "plateau":
            return schedules.plateau(optimizer)
        return schedules.constant()

    def train_step(self, model: nn.Module, batch: Any, epoch: int, iteration: int,
                   state: DefrState) -> tuple[torch.Tensor, Mapping[str, float]]:
        images, targets = batch[0].to(state.device, non_blocking=True), batch[1].to(state.device, non_blocking=True)
        with state.autocast():
            logits = model(images)
        loss = state.loss_fn(logits.float(), targets)
        return loss, {}

    def predict(self, model: nn.Module, batch: Any, state: DefrState) -> tuple[Sequence[int], Sequence[Any]]:
        images, indices = batch[0].to(state.device, non_blocking=True), batch[-1]
        with state.autocast():
            logits = model(images)
        rows = logits.float().cpu().numpy()
        return [int(i) for i in indices], list(rows)

    def evaluate(self, outputs: Mapping[int, Any], split: str, state: DefrState) -> dict[str, float]:
        """Few@k classes: DEFR's lists on 600-class HICO, else those rare in the training images the model saw."""
        labels = state.labels[split]
        n = len(labels)
        missing = [i for i in range(n) if i not in outputs]
        if missing:
            raise RuntimeError(f"{split} evaluation is missing {len(missing)} of {n} images (first: {missing[0]})")
        scores = np.stack([outputs[i] for i in range(n)]).astype(np.float64)
        lists, source = few_shot_lists_for(self.config.data.few_shot_lists, scores.shape[1])
        result = evaluate_hico(scores, labels, state.labels["train"], few_shot_lists=lists, few_shot_name=source)
        named = {"defr": defr_few_shot_lists(), "derived": None}
        state.per_class = self._per_class_columns(result["per_class_ap"],
                                                  named[lists] if isinstance(lists, str) else lists, labels,
                                                  state.labels["train"])
        return {"map": result["full"], "map_few1": result["few@1"], "map_few5": result["few@5"],
                "map_few10": result["few@10"], "map_ko": result["known_object"]}

    def _per_class_columns(self, ap: Sequence[float], lists: Mapping[str, Sequence[int]] | None,
                           eval_labels: np.ndarray, train_labels: np.ndarray) -> dict[str, list]:
        """Default-setting AP per class with its positive training/eval images and its smallest Few@k list."""
        num_classes = len(ap)
        few_k: list[int | None] = [None] * num_classes
        for k in sorted(FEW_SHOT_KS, reverse=True):  # the smallest k wins
            members = lists.get(f"few@{k}", []) if lists is not None else few_shot_classes(train_labels, k)
            for c in members:
                few_k[int(c)] = k
        names = self.annotations.class_names
        return {
            "class_index": list(range(num_classes)),
            "class_name": [f"{v} {o}" for v, o in names] if names and len(names) == num_classes else
            [str(c) for c in range(num_classes)],
            "ap": [float(a) for a in ap],
            "n_train": hico_labels(train_labels).positives.sum(axis=0).astype(int).tolist(),
            "n_test": hico_labels(eval_labels).positives.sum(axis=0).astype(int).tolist(),
            "few_shot_k": few_k,
        }

    def num_samples(self, batch: Any) -> int:
        return int(batch[0].shape[0])

    def final_metrics(self, model: nn.Module, state: TaskState) -> dict[str, float]:
        """With `detection.enabled`: the final model on HICO-DET detection (det.map, det.map_rare, ...)."""
        if not self.config.detection.enabled:
            return {}
        net = getattr(model, "module", model)  # DDP-wrapped or not
        return final_detection_metrics(net, self.config, state.device)


# ---- checks run by DefrTask.prepare ---------------------------------------------------------------------------------
_IMAGES_CHECKED = 64


def _check_image_folder(folder: Path, files: Sequence[str], max_bad_images: float) -> None:
    """The image folder exists, and its files are there and not empty.

    Up to 64 evenly spaced files are looked at (a stat each), so a network file system is not walked per trial.
    When that is every file, more than data.max_bad_images of them missing or empty is fatal, as in training; in
    a sample, only all of them is (a wrong layout). Other unreadable images are counted during training.
    """
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder; data.root must hold images/train2015 and images/test2015 with "
                        f"the files anno.pkl names")
    if not len(files) or max_bad_images >= 1.0:
        return
    picks = np.unique(np.linspace(0, len(files) - 1, num=min(len(files), _IMAGES_CHECKED)).astype(int))
    sample = [str(files[i]) for i in picks]
    bad = scan_image_files(folder, sample)
    limit = max_bad_images * len(files) if len(sample) == len(files) else len(sample) - 1
    if len(bad) > limit:
        raise DataError(f"{folder}: {len(bad)} of {len(sample)} images are missing or empty (checked "
                        f"{', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}); data.root must hold the images "
                        f"anno.pkl names")


def _check_weights_path(config: DefrConfig) -> None:
    """A model.weights that names a local checkpoint must exist (hub downloads are tried by the trial)."""
    check_local_weights(config.model, config.data.image_size)
