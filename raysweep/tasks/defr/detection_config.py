"""The `detection:` block of a DEFR config: DEFR's two-stage HOI detection on HICO-DET (docs/defr_detection.md).

Off by default. When `enabled`, each trial's final model is also evaluated on detection (`det.map`, ...); the same
fields drive `raysweep detect hico-det`. Defaults are the reference's (hoi_detection/configs/defaults.yaml and
test.py), quirks included; each quirk is an option.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from raysweep.tasks.config_base import StrictModel


class SynthDetectionsConfig(StrictModel):
    """How the embedded default's detections are derived from the synthetic HICO-DET ground truth."""

    box_noise: float = Field(0.06, ge=0.0, le=1.0)  # std of each box edge's shift, as a fraction of the box size
    miss_rate: float = Field(0.05, ge=0.0, le=1.0)  # fraction of GT boxes the "detector" misses
    duplicates: float = Field(0.3, ge=0.0, le=1.0)  # fraction of GT boxes with a lower-scoring near-duplicate
    false_positives: float = Field(2.0, ge=0.0, le=50.0)  # mean number of random boxes per image


class DetectionConfig(StrictModel):
    enabled: bool = False
    # HICO-DET root in QPIC's layout (annotations/, images/test2015). null: the embedded synthetic HICO-DET, on whose
    # training images (their image-level "recognition view") DEFR is then trained; data.root must be null too.
    anno_dir: Optional[str] = None
    # Detection JSON file (raysweep's format) or a folder of per-image <stem>.json files (the reference's layout).
    # null: <anno_dir>/detections/test2015.json, which the synthetic generator writes.
    detections: Optional[str] = None
    protocol: Literal["official", "qpic"] = "official"
    # Pair generation (reference: 0.2, 0.5, 15, 15; the same threshold for humans and objects).
    score_thresh: float = Field(0.2, ge=0.0, le=1.0)
    nms_thresh: float = Field(0.5, ge=0.0, le=1.0)
    max_human: int = Field(15, ge=1)
    max_object: int = Field(15, ge=1)
    # "additive_one": the reference as coded (its bool mask is added as +1.0 to the CLS logits outside the boxes);
    # "hard": what the paper describes (-inf outside the two boxes).
    mask_mode: Literal["additive_one", "hard"] = "additive_one"
    mask_layers: int = Field(1, ge=1)  # the last k blocks run under the pair mask (test.py: 1; defaults.yaml: 6)
    # "cache": eval/cache.py's σ^i · d_h^h · d_o^o with cache_exponents (h, o, i), which the reference's official
    # numbers went through; "test": test.py's σ · (d_h · d_o)^prior_power.
    rescoring: Literal["cache", "test"] = "cache"
    prior_power: float = Field(2.8, ge=0.0)
    cache_exponents: tuple[float, float, float] = (6.0, 3.0, 1.0)
    # "bilinear": the reference's detection-time resize (tensor, align_corners False); "bicubic": the PIL bicubic
    # resize the classifier was trained with.
    resize: Literal["bilinear", "bicubic"] = "bilinear"
    pair_batch: int = Field(64, ge=1)  # pairs per masked forward
    synth: SynthDetectionsConfig = SynthDetectionsConfig()
