"""V-COCO detections in the official evaluator's per-detection structure: reading, validating, flattening.

One dict per detection (QPIC's `generate_vcoco_official.py` writes one per query, 100 per image):

    {"image_id": 42, "person_box": [x1, y1, x2, y2],
     "<action>_agent": score,                    # all 26 actions
     "<action>_<role>": [x1, y1, x2, y2, score]} # all 25 (action, role) pairs, point_instr included

Boxes are in original-image pixels. A NaN score (JSON `NaN` or null) means "no detection for this action/role"; a
role box of four NaN (or four zeros) means "no role object" (what Scenario 1 asks for when the GT has none). Every
key must be present, as the official evaluator requires; extra keys are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from raysweep.data.vcoco import ACTIONS, NUM_ACTIONS, ROLE_PAIRS
from raysweep.errors import DataError
from raysweep.metrics.hicodet_predictions import load_predictions

__all__ = [
    "AGENT_KEYS",
    "ROLE_KEYS",
    "VcocoDetections",
    "detections_from_dicts",
    "detections_to_dicts",
    "load_predictions",
]

AGENT_KEYS: tuple[str, ...] = tuple(f"{a}_agent" for a, _ in ACTIONS)
# (key, action index, role slot) for the 25 role pairs, in ROLE_PAIRS order
ROLE_KEYS: tuple[tuple[str, int, int], ...] = tuple((f"{ACTIONS[a][0]}_{ACTIONS[a][1][r]}", a, r) for a, r in ROLE_PAIRS)
NUM_ROLE_PAIRS = len(ROLE_PAIRS)


@dataclass
class VcocoDetections:
    """All detections as arrays, in submission order. NaN scores mark absent (action, role) entries.

    Action-major (one contiguous column per action / role pair), so the evaluator's per-action gathers stay cheap at
    QPIC's 100 detections per image.
    """

    image_ids: np.ndarray  # [D] int64 (COCO image ids)
    person_boxes: np.ndarray  # [D, 4] float64
    agent_scores: np.ndarray  # [26, D] float64
    role_boxes: np.ndarray  # [25, D, 4] float64, role pairs in ROLE_PAIRS order
    role_scores: np.ndarray  # [25, D] float64

    def __len__(self) -> int:
        return len(self.image_ids)

    @classmethod
    def empty(cls, n: int = 0) -> VcocoDetections:
        return cls(image_ids=np.zeros(n, dtype=np.int64), person_boxes=np.zeros((n, 4)),
                   agent_scores=np.full((NUM_ACTIONS, n), np.nan),
                   role_boxes=np.full((NUM_ROLE_PAIRS, n, 4), np.nan),
                   role_scores=np.full((NUM_ROLE_PAIRS, n), np.nan))

    @classmethod
    def concatenate(cls, parts: Sequence[VcocoDetections]) -> VcocoDetections:
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, f) for p in parts], axis=axis) for f, axis in
                     (("image_ids", 0), ("person_boxes", 0), ("agent_scores", 1), ("role_boxes", 1),
                      ("role_scores", 1))))


def _column(dets: Sequence[Mapping], key: str, width: int, source: str) -> np.ndarray:
    """[D, width] float64 from one key of every dict; None becomes NaN. Errors name the detection and key."""
    try:
        values = [d[key] for d in dets]
    except (KeyError, TypeError, IndexError):
        for i, d in enumerate(dets):  # find the culprit (errors only)
            if not isinstance(d, Mapping):
                raise DataError(f"{source}: detection {i}: expected a dict, got {type(d).__name__}") from None
            if key not in d:
                raise DataError(f"{source}: detection {i}: missing key {key!r} (every detection needs image_id, "
                                f"person_box, the 26 '<action>_agent' and the 25 '<action>_<role>' keys)") from None
        raise
    try:
        arr = np.array(values, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.shape != ((len(values), width) if width > 1 else (len(values),)):
        for i, v in enumerate(values):  # find the culprit (slow path, errors only)
            try:
                row = np.array(v if v is not None else np.nan, dtype=np.float64)
            except (TypeError, ValueError):
                row = None
            if row is None or row.shape != ((width,) if width > 1 else ()):
                shape = f"a list of {width} numbers" if width > 1 else "a number (or null / NaN)"
                raise DataError(f"{source}: detection {i}: {key!r} = {v!r} must be {shape}")
        raise DataError(f"{source}: {key!r} is not a rectangular numeric column")  # pragma: no cover
    return arr


def detections_from_dicts(dets: Any, source: str = "predictions") -> VcocoDetections:
    """Validate a list of official-structure detection dicts and flatten it (see the module docstring)."""
    if not isinstance(dets, (list, tuple)):
        raise DataError(f"{source}: expected a list of detection dicts (one per detected person), got "
                        f"{type(dets).__name__}")
    n = len(dets)
    out = VcocoDetections.empty(n)
    if n == 0:
        return out
    ids = _column(dets, "image_id", 1, source)
    bad = ~np.isfinite(ids) | (ids != np.round(ids))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{source}: detection {i}: image_id = {dets[i]['image_id']!r} must be an integer")
    out.image_ids = ids.astype(np.int64)
    out.person_boxes = _column(dets, "person_box", 4, source).reshape(n, 4)
    bad = ~np.isfinite(out.person_boxes).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{source}: detection {i}: person_box = {dets[i]['person_box']!r} must be four finite "
                        f"numbers")
    for a, key in enumerate(AGENT_KEYS):
        out.agent_scores[a] = _column(dets, key, 1, source)
    for k, (key, _, _) in enumerate(ROLE_KEYS):
        col = _column(dets, key, 5, source).reshape(n, 5)
        out.role_boxes[k] = col[:, :4]
        out.role_scores[k] = col[:, 4]
    return out


def detections_to_dicts(dets: VcocoDetections) -> list[dict]:
    """The official structure (floats; NaN stays NaN) -- what `raysweep eval vcoco` reads back."""
    out = []
    for i in range(len(dets)):
        d: dict[str, Any] = {"image_id": int(dets.image_ids[i]), "person_box": dets.person_boxes[i].tolist()}
        for a, key in enumerate(AGENT_KEYS):
            d[key] = float(dets.agent_scores[a, i])
        for k, (key, _, _) in enumerate(ROLE_KEYS):
            d[key] = [*dets.role_boxes[k, i].tolist(), float(dets.role_scores[k, i])]
        out.append(d)
    return out
