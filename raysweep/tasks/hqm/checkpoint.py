"""Load pretrained weights into `HoiDetector`: DETR checkpoints (converted as QPIC does), QPIC- and HQM-layout files.

Conversion from DETR (as QPIC's `convert_parameters.py` does it): backbone / transformer / query_embed / input_proj
keep their names; the single `bbox_embed` is copied into both `sub_bbox_embed` and `obj_bbox_embed`;
`obj_class_embed` takes the rows of `class_embed` at the 80 valid COCO ids followed by DETR's no-object row 91;
`verb_class_embed` (and GBS's `query_embed_sp`) stay freshly initialised. HQM's "inside" layout
(`detr-r50-pre_inside.pth`) is the same with the heads under `transformer.decoder.`; files of either layout
load into a model of either layout.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import nn

from raysweep.data.hicodet import VALID_COCO_IDS
from raysweep.errors import ConfigError, DataError

from .model import HEAD_NAMES

log = logging.getLogger(__name__)

DETR_NO_OBJECT_ROW = 91
_HQM_PREFIX = "transformer.decoder."


@dataclass
class LoadReport:
    """What `load_pretrained` did, by model key (file keys for `ignored`)."""

    source_layout: str
    loaded: list[str] = field(default_factory=list)  # copied under the same name
    converted: list[str] = field(default_factory=list)  # duplicated, re-indexed or renamed from another layout
    fresh: list[str] = field(default_factory=list)  # model keys the file does not provide (kept at init)
    ignored: list[str] = field(default_factory=list)  # file keys the model has no use for

    def summary(self) -> str:
        return (f"{self.source_layout} checkpoint: {len(self.loaded)} keys loaded, {len(self.converted)} converted, "
                f"{len(self.fresh)} left fresh ({', '.join(self.fresh) or '-'}), {len(self.ignored)} ignored")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A checkpoint's state dict (its `model` entry if it has one), loaded with weights_only=True.

    DETR's training checkpoints also pickle their argparse Namespace under `args`; that one class is allowed.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"model.pretrained: no such file {str(path)!r}; give the path of a DETR/QPIC/HQM .pth")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the file is not a usable checkpoint
        raise DataError(f"{path}: cannot be read as a PyTorch checkpoint with weights_only=True ({e})") from e
    sd = obj.get("model", obj) if isinstance(obj, Mapping) else None
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise DataError(f"{path}: expected a state dict or a dict with a 'model' state dict")
    sd = dict(sd)
    if sd and all(k.startswith("module.") for k in sd):  # saved from a DDP-wrapped model
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def detect_layout(sd: Mapping[str, torch.Tensor]) -> str:
    """'detr', 'hqm', 'qpic' or 'unknown' from the head keys present."""
    if "class_embed.weight" in sd:
        return "detr"
    if _HQM_PREFIX + "obj_class_embed.weight" in sd:
        return "hqm"
    if "obj_class_embed.weight" in sd:
        return "qpic"
    return "unknown"


def detr_to_qpic(sd: Mapping[str, torch.Tensor], num_obj_classes: int = 80,
                 valid_ids: Sequence[int] = VALID_COCO_IDS) -> tuple[dict[str, torch.Tensor], list[str]]:
    """QPIC's convert_parameters: -> (QPIC-layout dict, the keys it created). class_embed / bbox_embed are dropped.

    The object classifier is only converted when the model has the 80 COCO classes, or 81 (V-COCO's 80 + missing,
    whose row is inserted fresh before no-object); otherwise it stays fresh.
    """
    out = {k: v for k, v in sd.items() if not k.startswith(("class_embed.", "bbox_embed."))}
    made = []
    for k, v in sd.items():
        if k.startswith("bbox_embed."):
            for head in ("sub_bbox_embed", "obj_bbox_embed"):
                out[head + k[len("bbox_embed"):]] = v.clone()
                made.append(head + k[len("bbox_embed"):])
    if num_obj_classes == len(valid_ids) and "class_embed.weight" in sd:
        idx = torch.tensor(list(valid_ids) + [DETR_NO_OBJECT_ROW])
        for p in ("weight", "bias"):
            out[f"obj_class_embed.{p}"] = sd[f"class_embed.{p}"][idx].clone()
            made.append(f"obj_class_embed.{p}")
    elif num_obj_classes == len(valid_ids) + 1 and "class_embed.weight" in sd:
        # V-COCO (`convert_parameters.py --dataset vcoco`): one fresh row, PyTorch's Linear default init, for the
        # "missing object" class between the 80 COCO rows and the no-object row.
        weight, bias = sd["class_embed.weight"], sd["class_embed.bias"]
        fresh = nn.Linear(weight.shape[1], 1)
        rows = torch.tensor(list(valid_ids))
        no_object = torch.tensor([DETR_NO_OBJECT_ROW])
        out["obj_class_embed.weight"] = torch.cat([weight[rows], fresh.weight.detach().to(weight.dtype),
                                                   weight[no_object]]).clone()
        out["obj_class_embed.bias"] = torch.cat([bias[rows], fresh.bias.detach().to(bias.dtype), bias[no_object]])
        made += ["obj_class_embed.weight", "obj_class_embed.bias"]
    elif "class_embed.weight" in sd:
        log.warning("DETR's class_embed covers the 80 COCO classes but the model has %d object classes; "
                    "obj_class_embed is left fresh", num_obj_classes)
    return out, made


def _rename_key(key: str, source: str, target: str) -> str:
    if source == "qpic" and target == "hqm" and key.split(".")[0] in HEAD_NAMES:
        return _HQM_PREFIX + key
    if source == "hqm" and target == "qpic" and key.startswith(_HQM_PREFIX) \
            and key[len(_HQM_PREFIX):].split(".")[0] in HEAD_NAMES:
        return key[len(_HQM_PREFIX):]
    return key


def rename_layout(sd: Mapping[str, torch.Tensor], source: str, target: str) -> dict[str, torch.Tensor]:
    """Move the four heads between QPIC's top level and HQM's `transformer.decoder.` (no-op if layouts agree)."""
    return {_rename_key(k, source, target): v for k, v in sd.items()}


def load_pretrained(model: nn.Module, path: str | Path) -> LoadReport:
    """Load a DETR, QPIC- or HQM-layout checkpoint into `model` (a HoiDetector) and say what happened.

    Keys the model has but the file lacks stay at their init; file keys the model lacks are ignored (as with the
    references' strict=False). A shape mismatch on a shared key is an error, not a silent skip.
    """
    sd = read_state_dict(path)
    source = detect_layout(sd)
    target = getattr(model, "layout", "qpic")
    made: set[str] = set()
    consumed: list[str] = []  # DETR's own heads: used by the conversion, not loaded under their names
    if source == "detr":
        consumed = [k for k in sd if k.startswith(("class_embed.", "bbox_embed."))]
        sd, made_list = detr_to_qpic(sd, num_obj_classes=getattr(model, "num_obj_classes", 80))
        made = set(made_list)
    names = "qpic" if source in ("detr", "unknown") else source
    renamed = rename_layout(sd, names, target)
    # keys created by the DETR conversion or moved between layouts count as converted
    made = {_rename_key(k, names, target) for k in made} | {_rename_key(k, names, target) for k in sd
                                                            if _rename_key(k, names, target) != k}
    model_sd = model.state_dict()
    bad = [f"{k}: file {tuple(v.shape)} vs model {tuple(model_sd[k].shape)}" for k, v in renamed.items()
           if k in model_sd and v.shape != model_sd[k].shape]
    if bad:
        raise ConfigError(f"model.pretrained {str(path)!r}: shapes do not fit the configured model ("
                          + "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
                          + "). Match model.* (backbone, d_model, num_queries, ...) to the checkpoint")
    to_load = {k: v for k, v in renamed.items() if k in model_sd}
    if not to_load:
        raise ConfigError(f"model.pretrained {str(path)!r}: none of its {len(sd)} keys names a parameter of this "
                          "model; expected a DETR, QPIC or HQM checkpoint (keys like 'transformer.encoder...')")
    model.load_state_dict(to_load, strict=False)
    report = LoadReport(
        source_layout=source,
        loaded=sorted(k for k in to_load if k not in made),
        converted=sorted(k for k in to_load if k in made),
        fresh=[k for k in model_sd if k not in to_load],
        ignored=sorted(consumed + [k for k in renamed if k not in model_sd]),
    )
    log.info("model.pretrained %s: %s", path, report.summary())
    return report
