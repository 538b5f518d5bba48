"""V-COCO agent AP and role AP (Scenario 1 and 2) as the official `vsrl_eval.py` defines them, vectorised.

What the official evaluator does, and what this module reproduces (docs/hqm.md, "V-COCO", has worked examples):
  * per detection, the person box is matched to the argmax-IoU GT person of its image (+1 pixel IoU, first index on
    ties); if that person is ignored (not V-COCO annotated, or a crowd), the detection is skipped: no TP, no FP;
  * agent AP of action a: detections with a non-NaN `<a>_agent` score; TP iff the matched person does a, IoU >= 0.5
    and that person is not yet covered for (image, a); otherwise FP (duplicates included);
  * role AP of (a, r): scores are the 5th element of `<a>_<r>`; additionally the role box must overlap the GT role
    object with IoU >= 0.5. When the GT person has no role object for (a, r): Scenario 1 counts the role as right
    only for a predicted box of four zeros or four NaN, Scenario 2 always. A NaN box against a real GT object fails.
    The object class is never checked. npos is per action (all persons doing a, with or without role object);
  * within an image, detections are taken in descending score order (ties: later detection first, numpy's
    `argsort()[::-1]` on small arrays); the AP ranking is the reversed stable argsort of the scores in that
    per-image order (the official default quicksort is unstable for large arrays; only exact score ties differ);
  * VOC all-point AP (not 11-point); detections, IoU, cumulative TP / FP, recall and precision in float32 like the
    official code (`numerics="float32"`, the default), or everything in float64 (`numerics="float64"`, exact);
  * means: the official print is nansum(agent AP) / 26 and nanmean over the 25 role APs; the papers' role AP leaves
    point-instr out (the mean of the other 24, QPIC's `thesis_map_indices`), which is `role_ap_s1` / `role_ap_s2`.

Where the official code crashes, this module answers: an (action, role) without any recorded detection gets AP 0
(the official `np.amax` of an empty array raises); one without positives gets NaN (its `assert` fails), left out of
the means; a detection in an image without any GT person is a false positive (the official argmax of an empty array
raises). Detections whose image is not in the ground truth are ignored, as officially.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from raysweep.data.vcoco import (
    ACTION_NAMES,
    NUM_ACTIONS,
    POINT_INSTR,
    ROLE_PAIR_NAMES,
    ROLE_PAIRS,
    VcocoGroundTruth,
)
from raysweep.errors import ConfigError
from raysweep.metrics.vcoco_predictions import VcocoDetections

NUMERICS = ("float32", "float64")
SCENARIOS = (1, 2)
IOU_THRESHOLD = 0.5
_NOT_POINT = np.array([i for i in range(len(ROLE_PAIRS)) if i != POINT_INSTR])


@dataclass
class VcocoResult:
    """Per-action agent APs, per-(action, role) role APs for both scenarios, and their means (fractions)."""

    agent_ap: np.ndarray  # [26]; NaN where the action has no positive
    role_ap: dict[int, np.ndarray]  # scenario -> [25] in ROLE_PAIRS order
    npos: np.ndarray  # [26]
    numerics: str
    ground_truth: str
    num_images: int
    num_detections: int  # detections whose image is in the ground truth
    means: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-ready: the means plus per-action and per-role APs (null for NaN)."""
        def value(x: float) -> float | None:
            return None if np.isnan(x) else float(x)

        return {
            **{k: value(v) for k, v in self.means.items()},
            "ground_truth": self.ground_truth, "numerics": self.numerics, "num_images": self.num_images,
            "num_detections": self.num_detections,
            "agent_ap_per_action": {n: value(x) for n, x in zip(ACTION_NAMES, self.agent_ap)},
            "role_ap_per_role": {f"scenario_{s}": {n: value(x) for n, x in zip(ROLE_PAIR_NAMES, self.role_ap[s])}
                                 for s in SCENARIOS},
            "npos": {n: int(x) for n, x in zip(ACTION_NAMES, self.npos)},
        }


def iou_plus1(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """The official `get_overlap`, elementwise over aligned rows [K, 4] x [K, 4] -> [K], in the inputs' dtype.

    Inclusive-pixel convention: widths are x2 - x1 + 1; same operation order as the reference, so float32 inputs give
    the reference's float32 values bit for bit.
    """
    one = gt.dtype.type(1)
    zero = gt.dtype.type(0)
    iw = np.maximum(np.minimum(gt[:, 2], pred[:, 2]) - np.maximum(gt[:, 0], pred[:, 0]) + one, zero)
    ih = np.maximum(np.minimum(gt[:, 3], pred[:, 3]) - np.maximum(gt[:, 1], pred[:, 1]) + one, zero)
    inters = iw * ih
    union = ((pred[:, 2] - pred[:, 0] + one) * (pred[:, 3] - pred[:, 1] + one)
             + (gt[:, 2] - gt[:, 0] + one) * (gt[:, 3] - gt[:, 1] + one) - inters)
    with np.errstate(divide="ignore", invalid="ignore"):
        return inters / union


def voc_ap(rec: np.ndarray, prec: np.ndarray) -> float:
    """VOC2010 all-point AP: precision envelope from the right, summed over the points where recall changes.

    Sentinels (0 and 1 for recall, 0 and 0 for precision) are float64, so float32 inputs are widened as officially.
    """
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


@dataclass
class _Matched:
    """Detections of GT images (eligible = not skipped as an ignored person), with their person match."""

    det: np.ndarray  # [E] index into the detections
    image: np.ndarray  # [E] GT image index
    has_person: np.ndarray  # [E] the image has GT persons
    person: np.ndarray  # [E] global GT person row (valid where has_person)
    ovmax: np.ndarray  # [E] IoU with that person (dtype of the numerics)
    num_in_gt: int


def _match_persons(gt: VcocoGroundTruth, dets: VcocoDetections, ftype: type) -> _Matched:
    order = np.argsort(gt.image_ids, kind="stable")
    sorted_ids = gt.image_ids[order]
    pos = np.clip(np.searchsorted(sorted_ids, dets.image_ids), 0, max(len(sorted_ids) - 1, 0))
    found = (sorted_ids[pos] == dets.image_ids) if len(sorted_ids) else np.zeros(len(dets), dtype=bool)
    det = np.flatnonzero(found)
    image = order[pos[det]]
    counts = np.diff(gt.person_offset)[image]
    starts = np.cumsum(counts) - counts
    total = int(counts.sum())
    pair_det = np.repeat(np.arange(len(det)), counts)
    local = np.arange(total) - np.repeat(starts, counts)
    pair_person = np.repeat(gt.person_offset[image], counts) + local
    iou = iou_plus1(gt.person_boxes[pair_person].astype(ftype), dets.person_boxes[det[pair_det]].astype(ftype))
    has_person = counts > 0
    ovmax = np.zeros(len(det), dtype=ftype)
    person = np.zeros(len(det), dtype=np.int64)
    if total:
        ovmax[has_person] = np.maximum.reduceat(iou, starts[has_person])
        at_max = np.flatnonzero(iou == ovmax[pair_det])
        first_det, first = np.unique(pair_det[at_max], return_index=True)
        person[first_det] = pair_person[at_max[first]]
    ignored = has_person & (gt.actions[person] < 0).any(axis=1) if total else np.zeros(len(det), dtype=bool)
    keep = ~ignored
    return _Matched(det=det[keep], image=image[keep], has_person=has_person[keep], person=person[keep],
                    ovmax=ovmax[keep], num_in_gt=len(det))


def _ranking_base(m: _Matched) -> np.ndarray:
    """Eligible rows ordered by (image descending, detection ascending): the official ranking's tie order.

    The official code appends each image's detections in descending score order (ties: later detection first) and
    ranks them all with argsort()[::-1], so equal scores come out from the last image first and, inside an image,
    earlier detection first. A stable sort by descending score over this base order gives the same ranking.
    """
    return np.lexsort((m.det, -m.image))


def _ap(m: _Matched, base: np.ndarray, scores: np.ndarray, correct: np.ndarray, npos: int, ftype: type) -> float:
    """AP of one action (or role) given each eligible detection's score (NaN = none) and whether it would be a TP
    if its person were not yet covered."""
    if npos == 0:
        return float("nan")
    scores = scores.astype(ftype)
    valid = ~np.isnan(scores)
    if not valid.any():
        return 0.0
    order = base[valid[base]]
    order = order[np.argsort(-scores[order], kind="stable")]
    is_tp = np.zeros(len(scores), dtype=bool)
    hit = np.flatnonzero(valid & correct)
    if len(hit):
        # per GT person, the detection the official per-image loop reaches first: highest score, ties: later one
        first = hit[np.lexsort((-m.det[hit], -scores[hit], m.person[hit]))]
        is_tp[first[np.r_[True, m.person[first][1:] != m.person[first][:-1]]]] = True
    tp = is_tp[order].astype(ftype)
    tp_cum = np.cumsum(tp, dtype=ftype)
    fp_cum = np.cumsum(ftype(1) - tp, dtype=ftype)
    rec = tp_cum / ftype(npos)
    prec = tp_cum / np.maximum(tp_cum + fp_cum, ftype(np.finfo(np.float64).eps))
    return voc_ap(rec, prec)


def evaluate_vcoco(gt: VcocoGroundTruth, dets: VcocoDetections, *, numerics: str = "float32",
                   iou_threshold: float = IOU_THRESHOLD) -> VcocoResult:
    """Agent AP and Scenario 1 / 2 role AP of `dets` against `gt` (see the module docstring)."""
    if numerics not in NUMERICS:
        raise ConfigError(f"V-COCO numerics {numerics!r} is unknown; choose one of {', '.join(NUMERICS)} (float32: "
                          f"as the official evaluator, float64: exact)")
    ftype = np.float32 if numerics == "float32" else np.float64
    m = _match_persons(gt, dets, ftype)
    npos = gt.npos
    thr = ftype(iou_threshold)
    person_ok = m.has_person & (m.ovmax >= thr)
    does = np.zeros((len(m.det), NUM_ACTIONS), dtype=bool)
    does[m.has_person] = gt.actions[m.person[m.has_person]] == 1
    store = np.float32 if numerics == "float32" else np.float64  # the official stores APs in float32 arrays

    base = _ranking_base(m)
    agent_ap = np.array([_ap(m, base, dets.agent_scores[a][m.det], person_ok & does[:, a], int(npos[a]), ftype)
                         for a in range(NUM_ACTIONS)], dtype=store)
    role_ap = {s: np.zeros(len(ROLE_PAIRS), dtype=store) for s in SCENARIOS}
    for k, (a, r) in enumerate(ROLE_PAIRS):
        gt_role = (gt.role_boxes[m.person, a, r].astype(ftype) if len(gt.person_boxes)  # [E, 4], NaN = no role
                   else np.full((len(m.det), 4), np.nan, dtype=ftype))
        pred_role = dets.role_boxes[k][m.det].astype(ftype)
        no_gt_role = np.isnan(gt_role).all(axis=1)
        ov = iou_plus1(np.where(no_gt_role[:, None], ftype(0), gt_role), pred_role)
        role_match = ov >= thr
        right_person = person_ok & does[:, a]
        empty_pred = (pred_role == 0).all(axis=1) | np.isnan(pred_role).all(axis=1)
        for s in SCENARIOS:
            ok = np.where(no_gt_role, empty_pred if s == 1 else True, role_match)
            role_ap[s][k] = _ap(m, base, dets.role_scores[k][m.det], right_person & ok, int(npos[a]), ftype)

    means = summary_means(agent_ap, role_ap)
    return VcocoResult(agent_ap=agent_ap, role_ap=role_ap, npos=npos, numerics=numerics,
                       ground_truth=gt.source, num_images=gt.num_images, num_detections=m.num_in_gt, means=means)


def summary_means(agent_ap: np.ndarray, role_ap: dict[int, np.ndarray]) -> dict[str, float]:
    """The headline numbers from per-action / per-role APs (NaN entries left out, as nansum / nanmean do).

    agent_ap: the official print, nansum / 26; agent_ap_nanmean: the mean over actions with positives;
    role_ap_s{1,2}: the papers' mean over the 24 role pairs without point-instr; role_ap_s{1,2}_with_point: the
    official print, the mean over all 25.
    """
    means: dict[str, float] = {}
    with np.errstate(invalid="ignore"), _quiet_nanmean():
        means["agent_ap"] = float(np.nansum(agent_ap) / agent_ap.dtype.type(NUM_ACTIONS))
        means["agent_ap_nanmean"] = float(np.nanmean(agent_ap))
        for s in SCENARIOS:
            means[f"role_ap_s{s}"] = float(np.nanmean(role_ap[s][_NOT_POINT]))
            means[f"role_ap_s{s}_with_point"] = float(np.nanmean(role_ap[s]))
    return means


class _quiet_nanmean:
    """nanmean of an all-NaN slice is NaN by design here; silence its RuntimeWarning."""

    def __enter__(self) -> None:
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)
