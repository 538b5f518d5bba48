"""DEFR's two-stage HOI detection on HICO-DET (docs/defr_detection.md): a trained recognition net scores detector pairs.

Per test image of a HICO-DET folder (QPIC's layout): its offline detections (`detection_format`) are paired
(`detection_pairs`: threshold, class-wise NMS, caps), the image goes once through the net's shared blocks and each
pair through its last blocks under the pair's CLS mask (`detection_mask`), sigmoid(logits) of the object's classes
are combined with the detection scores (the prior / the rescoring), and the image's pairs become one prediction
dict in raysweep's HICO-DET format, which `raysweep eval hico-det` (and `evaluate_hicodet`) score.

Plain PyTorch; `detect_hicodet` is the library entry point, `raysweep detect hico-det` its command.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import functional as TF

from raysweep.data.hicodet import IMAGE_DIRS, NUM_VERBS, HicoDetAnnotations, coco_id_to_index
from raysweep.errors import DataError
from raysweep.tasks.defr.detection_config import DetectionConfig
from raysweep.tasks.defr.detection_format import Detections
from raysweep.tasks.defr.detection_mask import PairScorer, cls_marks
from raysweep.tasks.defr.detection_pairs import HoiClassMap, PairingOptions, pair_scores, pair_up

log = logging.getLogger(__name__)

DEFAULT_DETECTIONS = "detections/test2015.json"  # under the HICO-DET root; the synthetic generator writes it


def class_map_from_annotations(annotations: HicoDetAnnotations, num_classes: int) -> HoiClassMap:
    """Model class c = the records' hoi_category_id c + 1, with its (verb, object) read from the records."""
    triplets: dict[int, tuple[int, int]] = {}
    for records, name in ((annotations.train, "trainval_hico.json"), (annotations.test, "test_hico.json")):
        for rec in records:
            for hoi in rec["hoi_annotation"]:
                if "hoi_category_id" not in hoi:
                    raise DataError(f"{annotations.root}/annotations/{name}: hoi entries carry no hoi_category_id; "
                                    f"DEFR's class c is hoi_category_id c + 1, so it is needed")
                c = int(hoi["hoi_category_id"]) - 1
                if c >= num_classes:
                    raise DataError(f"{annotations.root}/annotations/{name}: hoi_category_id {c + 1} but the model "
                                    f"has {num_classes} classes; the checkpoint does not fit this dataset")
                obj = coco_id_to_index(rec["annotations"][hoi["object_id"]]["category_id"])
                triplets[c] = (int(hoi["category_id"]) - 1, obj)
    return HoiClassMap.from_triplets(num_classes, triplets)


def load_image(path: Path, size: int, normalisation: tuple[Sequence[float], Sequence[float]],
               resize: str) -> tuple[torch.Tensor, int, int]:
    """RGB image -> ([3, size, size] normalised, width, height). "bilinear" normalises then resizes the tensor
    (the reference's detection dataset); "bicubic" resizes with PIL first (DEFR's training transform)."""
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: cannot read the image ({type(exc).__name__}: {exc})") from None
    width, height = img.size
    mean, std = normalisation
    if resize == "bicubic":
        img = img.resize((size, size), Image.BICUBIC)
        return TF.normalize(TF.to_tensor(img), mean, std), width, height
    tensor = TF.normalize(TF.to_tensor(img), mean, std)
    tensor = F.interpolate(tensor[None], size=(size, size), mode="bilinear", align_corners=False)[0]
    return tensor, width, height


def image_predictions(scorer: PairScorer, image: torch.Tensor, width: int, height: int, det: Detections,
                      class_map: HoiClassMap, cfg: DetectionConfig) -> dict[str, np.ndarray]:
    """One image's prediction dict in raysweep's HICO-DET format from its detections.

    Only pairs whose object label has classes are scored (others could only score 0). Boxes are written as cache.py
    writes them: 0-based inclusive pixels, (x1, y1, x2 - 1, y2 - 1) of the continuous detection box.
    """
    options = PairingOptions(cfg.score_thresh, cfg.nms_thresh, cfg.max_human, cfg.max_object)
    pairs = pair_up(det.boxes, det.labels, det.scores, options)
    has_classes = np.array([len(class_map.classes_of(pairs.labels[j])) > 0 for j in pairs.object_index], dtype=bool)
    hi, oi = pairs.human_index[has_classes], pairs.object_index[has_classes]
    verb_scores = np.zeros((len(hi), NUM_VERBS), dtype=np.float32)
    if len(hi):
        device = next(scorer.parameters()).device
        with torch.no_grad():
            tokens = scorer.image_tokens(image[None].to(device))[0]
            marks = cls_marks(pairs.boxes[hi], pairs.boxes[oi], width, height, scorer.grid)
            logits = torch.cat([scorer.pair_logits(tokens, marks[s:s + cfg.pair_batch]).float().cpu()
                                for s in range(0, len(hi), cfg.pair_batch)])
        probabilities = torch.sigmoid(logits.double()).numpy()
        for obj in np.unique(pairs.labels[oi]):
            rows = np.flatnonzero(pairs.labels[oi] == obj)
            classes = class_map.classes_of(obj)
            scores = pair_scores(probabilities[np.ix_(rows, classes)], pairs.scores[hi[rows]], pairs.scores[oi[rows]],
                                 cfg.rescoring, cfg.prior_power, cfg.cache_exponents)
            verb_scores[np.ix_(rows, class_map.verbs[classes])] = scores
    boxes = pairs.boxes.copy()
    boxes[:, 2:] -= 1.0
    return {"boxes": boxes, "labels": pairs.labels.copy(), "verb_scores": verb_scores,
            "sub_ids": hi.astype(np.int64), "obj_ids": oi.astype(np.int64)}


def detect_hicodet(net: torch.nn.Module, annotations: HicoDetAnnotations, detections: dict[str, Detections],
                   cfg: DetectionConfig, image_size: int, normalisation: tuple[Sequence[float], Sequence[float]],
                   device: Optional[torch.device] = None, progress: bool = False) -> list[dict[str, np.ndarray]]:
    """Predictions for every record of `annotations.test` (aligned with test_hico.json) with a DEFR net."""
    device = device or torch.device("cpu")
    was_training = net.training
    net.eval()
    scorer = PairScorer(net, cfg.mask_layers, cfg.mask_mode).to(device)
    class_map = class_map_from_annotations(annotations, net.classifier.num_classes)
    folder = annotations.root / IMAGE_DIRS["test"]
    records: Any = annotations.test
    if progress:
        from tqdm import tqdm

        records = tqdm(records, desc="DEFR detection", unit="img")
    predictions = []
    for rec in records:
        det = detections.get(rec["file_name"], Detections.empty())
        if len(det.scores) == 0 or not (det.scores >= cfg.score_thresh).any():
            predictions.append(_empty_prediction())
            continue
        image, width, height = load_image(folder / rec["file_name"], image_size, normalisation, cfg.resize)
        predictions.append(image_predictions(scorer, image, width, height, det, class_map, cfg))
    net.train(was_training)
    return predictions


def _empty_prediction() -> dict[str, np.ndarray]:
    return {"boxes": np.zeros((0, 4)), "labels": np.zeros(0, dtype=np.int64),
            "verb_scores": np.zeros((0, NUM_VERBS), dtype=np.float32), "sub_ids": np.zeros(0, dtype=np.int64),
            "obj_ids": np.zeros(0, dtype=np.int64)}


def detection_metrics(result: dict) -> dict[str, float]:
    """`evaluate_hicodet`'s result as flat metrics: det.map, det.map_rare, det.map_non_rare, det.map_ko, ...
    (a group without classes is NaN)."""
    out = {}
    for setting, prefix in (("default", "det.map"), ("known_object", "det.map_ko")):
        for group, suffix in (("full", ""), ("rare", "_rare"), ("non_rare", "_non_rare")):
            value = result[setting][group]
            out[prefix + suffix] = float("nan") if value is None else float(value)
    return out


def predictions_as_json(predictions: list[dict[str, np.ndarray]]) -> list[dict[str, list]]:
    """The prediction list as plain lists for `json.dump` (the layout `raysweep eval hico-det --pred` reads)."""
    return [{key: np.asarray(value).tolist() for key, value in pred.items()} for pred in predictions]


# ---- inside a sweep: the `detection:` block of a DEFR config ----------------------------------------------------------
def prepare_detection(config: Any, cache_dir: Path) -> dict[str, Any]:
    """Checks and shared data for an enabled `detection:` block, before any trial starts; dotted config updates.

    detection.anno_dir null: the embedded synthetic HICO-DET with its detection views is generated into the cache,
    and both data.root (DEFR trains on its recognition view) and detection.anno_dir point at it.
    """
    from raysweep.data.hicodet import load_hicodet
    from raysweep.errors import ConfigError

    det = config.detection
    if not det.enabled:
        return {}
    if det.anno_dir is None:
        if config.data.root is not None:
            raise ConfigError(f"detection.anno_dir is null, which means the embedded synthetic HICO-DET that DEFR then "
                              f"trains on, but data.root is {config.data.root!r}; give detection.anno_dir (a HICO-DET "
                              f"root) or set data.root to null")
        from raysweep.data.synth.detections import ensure_synthetic_detection_set

        root = str(ensure_synthetic_detection_set(cache_dir, config.data.synth, det.synth))
        return {"data.root": root, "detection.anno_dir": root}
    annotations = load_hicodet(det.anno_dir)  # one DataError naming the file when it is not a HICO-DET root
    source = Path(det.detections) if det.detections else annotations.root / DEFAULT_DETECTIONS
    if not source.exists():
        raise DataError(f"detection.detections {str(source)!r}: no such file or folder; give a raysweep detection "
                        f"JSON file or a folder of per-image <stem>.json files")
    return {}


def final_detection_metrics(net: torch.nn.Module, config: Any, device: torch.device) -> dict[str, float]:
    """det.map, det.map_rare, ... of a trained DEFR net under `config.detection` (its protocol)."""
    from raysweep.data.hicodet import load_hicodet
    from raysweep.metrics.hicodet import evaluate_hicodet
    from raysweep.tasks.defr.backbones import normalisation_for
    from raysweep.tasks.defr.data import NORMALISATION
    from raysweep.tasks.defr.detection_format import load_detections

    det = config.detection
    annotations = load_hicodet(det.anno_dir)
    source = Path(det.detections) if det.detections else annotations.root / DEFAULT_DETECTIONS
    detections = load_detections(source, [rec["file_name"] for rec in annotations.test])
    norm = config.data.normalisation if config.data.normalisation != "auto" else normalisation_for(config.model)
    predictions = detect_hicodet(net, annotations, detections, det, config.data.image_size, NORMALISATION[norm],
                                 device)
    return detection_metrics(evaluate_hicodet(annotations, predictions, det.protocol))
