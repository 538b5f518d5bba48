"""QPIC + HQM as a sweepable task: HOI detection on HICO-DET (docs/hqm.md) or V-COCO (`data.dataset: vcoco`)."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn

from raysweep import progress
from raysweep.config_tree import with_updates
from raysweep.data import hicodet, vcoco
from raysweep.data.synth.hicodet import ensure_synthetic_hicodet
from raysweep.data.synth.vcoco import ensure_synthetic_vcoco
from raysweep.data.vcoco_official import find_official_files, load_official_ground_truth
from raysweep.errors import ConfigError, DataError
from raysweep.metrics.hicodet import evaluate_hicodet
from raysweep.metrics.vcoco import evaluate_vcoco
from raysweep.tasks.base import Task, TaskState, TrainingParts
from raysweep.tasks.common import schedules
from raysweep.tasks.common.splits import stratified_holdout
from raysweep.tasks.hqm.alternation import hard_branch
from raysweep.tasks.hqm.card import CARD
from raysweep.tasks.hqm.checkpoint import load_pretrained
from raysweep.tasks.hqm.config import HqmConfig
from raysweep.tasks.hqm.criterion import SetCriterion, build_criterion
from raysweep.tasks.hqm.data import HicoDetTestSet, HicoDetTrainSet, collate, targets_to
from raysweep.tasks.hqm.model import build_model
from raysweep.tasks.hqm.postprocess import postprocess_hoi
from raysweep.tasks.hqm.transforms import eval_transforms, train_transforms
from raysweep.tasks.hqm.vcoco import NUM_OBJECT_CLASSES, VcocoTrainSet, detections_for_records

log = logging.getLogger(__name__)

# Fixed keys logged by every train_step (the loop all-reduces them, so every rank must send the same set).
LOG_KEYS = ("loss_obj_ce", "loss_verb_ce", "loss_sub_bbox", "loss_obj_bbox", "loss_sub_giou", "loss_obj_giou",
            "obj_cardinality_error")


def param_groups(model: nn.Module, lr_backbone: float) -> list[dict]:
    """DETR's two AdamW groups: everything trainable outside the backbone at the base lr, the backbone at its own."""
    main = [p for n, p in model.named_parameters() if "backbone" not in n and p.requires_grad]
    backbone = [p for n, p in model.named_parameters() if "backbone" in n and p.requires_grad]
    groups = [{"params": main}]
    if backbone:
        groups.append({"params": backbone, "lr": lr_backbone})
    return groups


@dataclass
class HqmState(TaskState):
    """What `HqmTask.build` hands its steps: the set criterion (matcher + weighted losses) on the device."""

    criterion: SetCriterion
    amp: str = "off"

    def autocast(self) -> Any:
        """bf16 autocast on a GPU when `train.amp: bf16`, else a context that does nothing."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16,
                              enabled=self.amp == "bf16" and self.device.type == "cuda")


class HqmTask(Task):
    card = CARD
    config: HqmConfig

    # ---- shared, once per sweep ---------------------------------------------------------------------------
    @classmethod
    def prepare(cls, config: HqmConfig, cache_dir: Path) -> dict[str, Any]:
        """Generate the embedded synthetic HICO-DET when `data.root` is null; validate the annotations."""
        updates: dict[str, Any] = {}
        if config.model.pretrained and not Path(config.model.pretrained).is_file():
            raise ConfigError(f"model.pretrained: no such file {config.model.pretrained!r}; give the path of a "
                              f"DETR / QPIC / HQM checkpoint (.pth)")
        if config.data.root is None:
            ensure = ensure_synthetic_vcoco if config.data.dataset == "vcoco" else ensure_synthetic_hicodet
            root = ensure(cache_dir, config.data.synth, progress=progress.enabled())
            updates["data.root"] = str(root)
            config = with_updates(config, updates)
        task = cls(config, cache_dir)
        task.annotations  # fails early on malformed annotations
        if config.data.dataset == "vcoco" and config.eval.vcoco_ground_truth == "official":
            task.vcoco_ground_truth  # noqa: B018 - and on missing or malformed official files
        if config.model.pretrained:
            num_objects, num_verbs = task.head_sizes
            check_pretrained_once(config, num_objects, num_verbs, cache_dir)
        return updates

    # ---- per trial ----------------------------------------------------------------------------------------
    @cached_property
    def annotations(self):
        if self.config.data.root is None:
            raise RuntimeError("data.root is unresolved: HqmTask.prepare must run first")
        if self.config.data.dataset == "vcoco":
            return vcoco.load_vcoco(Path(self.config.data.root))
        return hicodet.load_hicodet(Path(self.config.data.root))

    @cached_property
    def splits(self) -> dict[str, Any]:
        """Annotation views whose `train` is what the model trains on and whose `test` is what a split evaluates:
        {"train", "test"} and, with data.validation, "val" (a stratified holdout of the training images).

        Rare / non-rare membership always counts the full training set, as the published split defines it."""
        ann, d = self.annotations, self.config.data
        if not d.validation:
            return {"train": ann, "test": ann}
        keys: dict[tuple[int, int], int] = {}
        labels = []
        for record in ann.train:
            labels.append([keys.setdefault(pair, len(keys)) for pair in hoi_classes(record)])
        train_idx, val_idx = stratified_holdout(labels, len(keys), d.val_fraction, d.val_seed)
        train = [ann.train[i] for i in train_idx]
        val = [ann.train[i] for i in val_idx]
        return {"train": replace(ann, train=train), "val": replace(ann, test=val), "test": ann}

    @property
    def head_sizes(self) -> tuple[int, int]:
        """(object classes without no-object, verb classes): 80 / 117 on HICO-DET, 81 (80 + missing) / 29 on V-COCO."""
        num_verbs, num_objects = self.annotations.correct_mat.shape
        if self.config.data.dataset == "vcoco":
            num_objects = NUM_OBJECT_CLASSES
        return num_objects, num_verbs

    @cached_property
    def vcoco_ground_truth(self):
        """The V-COCO test ground truth the evaluator reads (eval.vcoco_ground_truth)."""
        if self.config.eval.vcoco_ground_truth == "official":
            root = Path(self.config.data.root)
            files = find_official_files(root) or find_official_files(root / "official")
            if files is None:
                raise DataError(f"eval.vcoco_ground_truth: official, but {str(root)!r} (or its official/ folder) "
                                f"lacks vcoco_test.json, instances_vcoco_all_2014.json and vcoco_test.ids")
            return load_official_ground_truth(*files)
        return vcoco.ground_truth_from_records(self.annotations.test)

    def build(self, device: torch.device, rank: int = 0, world_size: int = 1) -> TrainingParts:
        cfg, ann = self.config, self.annotations
        num_objects, num_verbs = self.head_sizes
        TrainSet: type[VcocoTrainSet] | type[HicoDetTrainSet]
        if cfg.data.dataset == "vcoco":
            IMAGE_DIRS, TrainSet = vcoco.IMAGE_DIRS, VcocoTrainSet
        else:
            IMAGE_DIRS, TrainSet = hicodet.IMAGE_DIRS, HicoDetTrainSet
        model = build_model(cfg, num_objects, num_verbs)
        if cfg.model.pretrained:
            self.load_report = load_pretrained(model, cfg.model.pretrained)
        model.to(device)
        criterion = build_criterion(cfg, num_objects).to(device)

        d, root = cfg.data, Path(cfg.data.root)
        splits = self.splits
        train_set = TrainSet(
            splits["train"].train, root / IMAGE_DIRS["train"],
            train_transforms(d.train_scales, d.max_size, d.crop_resize_scales, d.crop_min, d.crop_max,
                             d.color_jitter, d.augment),
            max_boxes=cfg.model.num_queries, num_verbs=num_verbs)
        eval_set = HicoDetTestSet(ann.test, root / IMAGE_DIRS["test"], eval_transforms(d.test_size, d.test_max_size))
        val_set = (HicoDetTestSet(splits["val"].test, root / IMAGE_DIRS["train"],
                                  eval_transforms(d.test_size, d.test_max_size)) if "val" in splits else None)

        o = cfg.optim
        optimizer = torch.optim.AdamW(param_groups(model, o.lr_backbone), lr=o.lr, weight_decay=o.weight_decay)
        return TrainingParts(
            model=model, optimizer=optimizer, schedule=schedules.step_drop(optimizer, o.lr_drop, 0.1),
            train_set=train_set, eval_set=eval_set, val_set=val_set, batch_size=cfg.train.batch_size,
            eval_batch_size=cfg.train.eval_batch_size, state=HqmState(device=device, criterion=criterion, amp=cfg.train.amp),
            collate_fn=collate,
            grad_clip_norm=o.clip_max_norm or None,
            # alternating branches (and GBS on a batch without pairs) leave some parameters without gradient
            find_unused_parameters=cfg.hqm.gbs or cfg.hqm.amm,
            num_loader_workers=d.loader_workers)

    def train_step(self, model: nn.Module, batch: Any, epoch: int, iteration: int,
                   state: HqmState) -> tuple[torch.Tensor, Mapping[str, float]]:
        samples, targets = batch[0].to(state.device, non_blocking=True), targets_to(batch[1], state.device)
        h = self.config.hqm
        branch = hard_branch(h.gbs, h.amm, h.alternation, iteration)
        with state.autocast():
            outputs = model(samples, targets, branch)
        outputs = as_float(outputs)
        criterion = state.criterion
        losses = criterion(outputs, targets)
        total = criterion.weighted_total(losses)
        hard = [criterion.weight_of(k) * v for k, v in losses.items() if k.startswith(("loss_gt_", "loss_occ_"))]
        values = torch.stack([losses[k].detach() for k in LOG_KEYS]
                             + [sum(hard).detach() if hard else total.new_zeros(())]).tolist()
        logs = dict(zip(LOG_KEYS + ("loss_hard",), values))
        return total, logs

    @torch.no_grad()
    def predict(self, model: nn.Module, batch: Any, state: HqmState) -> tuple[Sequence[int], Sequence[Any]]:
        samples, metas = batch[0].to(state.device, non_blocking=True), batch[1]
        with state.autocast():
            outputs = as_float(model(samples))
        orig_sizes = torch.stack([m["orig_size"] for m in metas]).to(state.device)
        return [int(m["index"]) for m in metas], postprocess_hoi(outputs, orig_sizes)

    def evaluate(self, outputs: Mapping[int, Any], split: str, state: TaskState) -> dict[str, float]:
        annotations = self.splits[split]
        n = len(annotations.test)
        missing = [i for i in range(n) if i not in outputs]
        if missing:
            raise RuntimeError(f"{split} evaluation is missing {len(missing)} of {n} images (first: {missing[0]})")
        if self.config.data.dataset == "vcoco":
            return self.evaluate_vcoco([outputs[i] for i in range(n)], split)
        result = evaluate_hicodet(annotations, [outputs[i] for i in range(n)], self.config.eval.protocol)

        def value(v: float | None) -> float:  # a group without classes (e.g. no rare class) has no mean
            return math.nan if v is None else float(v)

        state.per_class = _per_class_columns(result["per_class"])
        default, ko = result["default"], result["known_object"]
        return {"map": value(default["full"]), "map_rare": value(default["rare"]),
                "map_non_rare": value(default["non_rare"]), "ko_map": value(ko["full"]),
                "ko_map_rare": value(ko["rare"]), "ko_map_non_rare": value(ko["non_rare"])}

    def evaluate_vcoco(self, predictions: Sequence[Any], split: str = "test") -> dict[str, float]:
        """Official agent / role AP of the post-processed queries (one official detection per query). The
        validation split's ground truth always comes from its records (the official files cover test only)."""
        records = self.splits[split].test
        truth = self.vcoco_ground_truth if split == "test" else vcoco.ground_truth_from_records(records)
        result = evaluate_vcoco(truth, detections_for_records(records, predictions, self.annotations.correct_mat))
        m = result.means
        return {"map": m["role_ap_s1"], "role_ap_s1": m["role_ap_s1"], "role_ap_s2": m["role_ap_s2"],
                "agent_ap": m["agent_ap"]}

    def num_samples(self, batch: Any) -> int:
        return len(batch[0])


def _per_class_columns(per_class: list[dict]) -> dict[str, list]:
    """The evaluator's per-class records as columns: Default and Known-Object AP, training/test counts, rare."""
    return {
        "class_index": list(range(len(per_class))),
        "class_name": [f"verb {c['verb_id']} object {c['object_coco_id']}" for c in per_class],
        "hoi_id": [-1 if c["hoi_id"] is None else int(c["hoi_id"]) for c in per_class],  # -1: not in the records
        "ap": [c["ap_default"] for c in per_class],
        "ap_known_object": [c["ap_known_object"] for c in per_class],
        "n_train": [c["n_train"] for c in per_class],
        "n_test": [c["n_test"] for c in per_class],
        "rare": [c["rare"] for c in per_class],
    }


def hoi_classes(record: Mapping[str, Any]) -> set[tuple[int, int]]:
    """The (verb id, object COCO id) classes annotated in one HICO-DET or V-COCO record (what the validation split
    stratifies on); an action without an object (V-COCO) counts as (verb, -1)."""
    boxes = record["annotations"]
    return {(int(h["category_id"]), int(boxes[h["object_id"]]["category_id"]) if 0 <= h["object_id"] < len(boxes)
             else -1) for h in record["hoi_annotation"]}


def check_pretrained_once(config: HqmConfig, num_objects: int, num_verbs: int, cache_dir: Path | None) -> None:
    """Load `model.pretrained` into the configured model on the CPU, so that a checkpoint that does not fit (other
    sizes, not a DETR / QPIC / HQM file) fails before any trial starts, with the load report logged. A marker in
    the cache (file path, size, mtime and model config) makes the trials' own `prepare` skip the repeat."""
    path = Path(config.model.pretrained)
    stat = path.stat()
    key = json.dumps([str(path.resolve()), stat.st_size, stat.st_mtime_ns, num_objects, num_verbs,
                      config.model.model_dump(mode="json")], sort_keys=True)
    marker = (Path(cache_dir) / "pretrained_checks" / hashlib.sha1(key.encode()).hexdigest()[:16]
              if cache_dir is not None else None)
    if marker is not None and marker.is_file():
        return
    report = load_pretrained(build_model(config, num_objects, num_verbs), path)
    # a DETR checkpoint has no verb head and no GBS query MLP: those start fresh by design, anything else is news
    unexpected = [k for k in report.fresh if "verb_class_embed" not in k and "query_embed_sp" not in k]
    if unexpected:
        log.warning("model.pretrained %s: %d parameters are not in the file and start from scratch (%s%s)", path,
                    len(unexpected), ", ".join(unexpected[:4]), ", ..." if len(unexpected) > 4 else "")
    if marker is not None:
        marker.parent.mkdir(parents=True, exist_ok=True)
        tmp = marker.with_name(f"{marker.name}.tmp-{os.getpid()}")
        tmp.write_text(report.summary())
        tmp.replace(marker)


def as_float(outputs: Any) -> Any:
    """The network's outputs (nested dicts and lists of tensors) with floating tensors in fp32: what the matcher,
    the losses and the post-processing compute on under bf16 autocast (a no-op in fp32)."""
    if isinstance(outputs, torch.Tensor):
        return outputs.float() if outputs.is_floating_point() else outputs
    if isinstance(outputs, dict):
        return {k: as_float(v) for k, v in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(as_float(v) for v in outputs)
    return outputs

