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

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from raysweep.data.vcoco import ACTIONS, MAX_ROLES, NUM_ACTIONS
from raysweep.errors import DataError
from raysweep.metrics.hicodet_predictions import load_predictions

__all__ = ["VcocoDetections", "detections_from_dicts", "detections_to_dicts", "load_predictions", "AGENT_KEYS",
           "ROLE_KEYS"]

AGENT_KEYS: tuple[str, ...] = tuple(f"{a}_agent" for a, _ in ACTIONS)
# (key, action index, role slot) for the 25 role pairs
ROLE_KEYS: tuple[tuple[str, int, int], ...] = tuple(
    (f"{a}_{r}", ai, ri) for ai, (a, roles) in enumerate(ACTIONS) for ri, r in enumerate(roles))


@dataclass
class VcocoDetections:
    """All detections as arrays, in submission order. NaN scores mark absent (action, role) entries."""

    image_ids: np.ndarray  # [D] int64 (COCO image ids)
    person_boxes: np.ndarray  # [D, 4] float64
    agent_scores: np.ndarray  # [D, 26] float64
    role_boxes: np.ndarray  # [D, 26, 2, 4] float64 (NaN for actions / slots without that role)
    role_scores: np.ndarray  # [D, 26, 2] float64 (NaN for actions / slots without that role)

    def __len__(self) -> int:
        return len(self.image_ids)

    @classmethod
    def empty(cls, n: int = 0) -> "VcocoDetections":
        return cls(image_ids=np.zeros(n, dtype=np.int64), person_boxes=np.zeros((n, 4)),
                   agent_scores=np.full((n, NUM_ACTIONS), np.nan),
                   role_boxes=np.full((n, NUM_ACTIONS, MAX_ROLES, 4), np.nan),
                   role_scores=np.full((n, NUM_ACTIONS, MAX_ROLES), np.nan))

    @classmethod
    def concatenate(cls, parts: Sequence["VcocoDetections"]) -> "VcocoDetections":
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                     ("image_ids", "person_boxes", "agent_scores", "role_boxes", "role_scores")))


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
        out.agent_scores[:, a] = _column(dets, key, 1, source)
    for key, a, r in ROLE_KEYS:
        col = _column(dets, key, 5, source).reshape(n, 5)
        out.role_boxes[:, a, r] = col[:, :4]
        out.role_scores[:, a, r] = col[:, 4]
    return out


def detections_to_dicts(dets: VcocoDetections) -> list[dict]:
    """The official structure (floats; NaN stays NaN) -- what `raysweep eval vcoco` reads back."""
    out = []
    for i in range(len(dets)):
        d: dict[str, Any] = {"image_id": int(dets.image_ids[i]), "person_box": dets.person_boxes[i].tolist()}
        for a, key in enumerate(AGENT_KEYS):
            d[key] = float(dets.agent_scores[i, a])
        for key, a, r in ROLE_KEYS:
            d[key] = [*dets.role_boxes[i, a, r].tolist(), float(dets.role_scores[i, a, r])]
        out.append(d)
    return out
