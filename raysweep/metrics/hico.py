"""HICO image-level HOI classification metrics, following DEFR's protocol (spec §A.2, §D).

Labels use HICO's four values: 1 positive, 0 ambiguous, -1 negative, -2 object not annotated (the original
anno.mat NaN). Scores are raw logits; only their order matters.

- Default setting: only ambiguous entries are ignored; -2 entries count as negatives.
- Known-Object: entries whose label is not in {1, -1} are ignored, i.e. each class is ranked only over images
  where its object is annotated.
- Few@k: mean of the Default APs over a fixed class list (DEFR's hard-coded lists, or derived from training labels).

All functions are plain NumPy, vectorised across classes: the full HICO test set (9,658 x 600) evaluates in a
fraction of a second on one core (see benchmarks/bench_hico_eval.py).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal, Mapping, NamedTuple, Sequence

import numpy as np

from raysweep.errors import DataError, did_you_mean

Interpolation = Literal["11point", "all_point"]
INTERPOLATIONS: tuple[str, ...] = ("11point", "all_point")

FEW_SHOT_KS: tuple[int, ...] = (1, 5, 10)
FEW_SHOT_KEYS: tuple[str, ...] = tuple(f"few@{k}" for k in FEW_SHOT_KS)

# Label values of HICO's anno.mat as DEFR stores them in anno.pkl.
POSITIVE, AMBIGUOUS, NEGATIVE, UNKNOWN = 1, 0, -1, -2

# DEFR's rank-1 guard against 0/0 when the top-ranked entry is ignored: float64 machine epsilon.
_FIRST_FP_EPS = float(np.finfo(np.float64).eps)


def _torch_linspace_float64(start: float, end: float, steps: int) -> np.ndarray:
    """The values of `torch.linspace(start, end, steps, dtype=torch.float64)`, without importing torch.

    torch fills the first half as start + i*step and the second half as end - (steps-1-i)*step. For (0, 1, 11) this
    gives 0.30000000000000004 but exactly 0.6 and 0.7, unlike np.linspace / np.arange (0.6000000000000001 and
    0.7000000000000001). A recall of exactly 0.3 therefore fails t = 0.3; 0.6 and 0.7 pass.
    """
    step = (end - start) / (steps - 1)
    half = steps // 2
    i = np.arange(steps, dtype=np.float64)
    return np.where(i < half, start + i * step, end - (steps - 1 - i) * step)


# The 11 recall thresholds of DEFR's interpolated AP (spec §D.1 step 6).
ELEVEN_POINT_THRESHOLDS: np.ndarray = _torch_linspace_float64(0.0, 1.0, 11)


class HicoLabelMasks(NamedTuple):
    """Boolean [N, C] views of a HICO label matrix (spec §A.2)."""

    positives: np.ndarray  # label == 1
    known_obj: np.ndarray  # |label| == 1: object annotated with a definite HOI label
    certain: np.ndarray  # label != 0: not ambiguous


def hico_labels(labels: np.ndarray) -> HicoLabelMasks:
    """Split a HICO label matrix [N, C] with values in {1, 0, -1, -2} into its three boolean masks.

    NaN (the original anno.mat encoding of "object not annotated") is accepted and treated as -2.
    Raises ValueError for any other value.
    """
    labels = np.asarray(labels)
    if labels.dtype.kind == "f":
        unknown = np.isnan(labels)
        if unknown.any():
            labels = np.where(unknown, UNKNOWN, labels)
    elif labels.dtype.kind not in "iu":
        raise ValueError(f"HICO labels must be numeric, got dtype {labels.dtype}")
    if labels.dtype.kind == "f":
        bad = (labels != np.round(labels)) | (labels < UNKNOWN) | (labels > POSITIVE)
    else:
        bad = (labels < UNKNOWN) | (labels > POSITIVE)
    if bad.any():
        values = np.unique(labels[bad])[:5].tolist()
        raise ValueError(f"HICO labels must be in {{1, 0, -1, -2}} (or NaN for -2); found {values}")
    return HicoLabelMasks(
        positives=labels == POSITIVE,
        known_obj=np.abs(labels) == 1,
        certain=labels != AMBIGUOUS,
    )


def average_precision(
    scores: np.ndarray,
    positives: np.ndarray,
    ignore: np.ndarray | None = None,
    interpolation: Interpolation = "11point",
) -> np.ndarray:
    """Per-class AP [C] (float64) of scores [N, C] against boolean positives [N, C], skipping `ignore` [N, C].

    DEFR's protocol (spec §D.1), per class:
    - num_gt counts every positive, ignored or not (an ignored positive can never be recalled);
    - images are ranked by descending score. Ties: as a stable sort, so among equal scores the lower image index
      ranks first (DEFR's torch.argsort leaves tie order unspecified);
    - ignored entries pass through with tp = fp = 0; if the rank-1 entry is ignored its fp is set to float64 eps,
      so precision there is 0 instead of 0/0 (the eps stays in the cumulative FP count);
    - precision = TP / (TP + FP), recall = TP / num_gt; a class with num_gt = 0 has AP 0;
    - "11point": mean over t in torch.linspace(0, 1, 11) (float64) of max{precision_k : recall_k >= t}, where an
      empty set contributes 0. "all_point": area under the monotone precision envelope (the VOC2010+ AP), with
      the same ranking, ignore and num_gt rules.
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    scores = np.asarray(scores)
    positives = np.asarray(positives, dtype=bool)
    ignore = np.zeros_like(positives) if ignore is None else np.asarray(ignore, dtype=bool)
    if scores.ndim != 2 or positives.shape != scores.shape or ignore.shape != scores.shape:
        raise ValueError(
            "scores, positives and ignore must all be [N, C]; got "
            f"{scores.shape}, {positives.shape}, {ignore.shape}"
        )
    order = _descending_order(scores)
    pos_ranked = _ranked(positives, order)
    return _ap_from_ranked(pos_ranked, _ranked(ignore, order), positives.sum(axis=0), interpolation)


def _descending_order(scores: np.ndarray) -> np.ndarray:
    """Per-class ranking [C, N] of scores [N, C]: image indices by descending score, ties by ascending index.

    A fast unstable sort is exact wherever a row has no repeated score (the order is then unique); only rows
    with ties are re-sorted with a stable sort.
    """
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN, which cannot be ranked")
    negated = -np.ascontiguousarray(scores.T, dtype=np.float64)  # class-major: contiguous per-class rows
    order = np.argsort(negated, axis=1)
    ranked = np.take_along_axis(negated, order, axis=1)
    tied = (ranked[:, 1:] == ranked[:, :-1]).any(axis=1)
    if tied.any():
        order[tied] = np.argsort(negated[tied], axis=1, kind="stable")
    return order


def _ranked(mask: np.ndarray, order: np.ndarray) -> np.ndarray:
    """mask [N, C] reordered along a ranking [C, N]: out[c, k] = mask[order[c, k], c]."""
    return np.take_along_axis(np.ascontiguousarray(mask.T), order, axis=1)


def _ap_from_ranked(
    pos_ranked: np.ndarray, ign_ranked: np.ndarray, num_gt: np.ndarray, interpolation: str
) -> np.ndarray:
    """AP [C] from ranked class-major masks [C, N] (positives, ignored) and positives per class [C].

    Precision peaks only where a true positive arrives, and recall only changes there, so both interpolations
    need precision and recall at the (sparse) recalled positives alone: the j-th recalled positive of a class at
    rank r has TP = j and FP = r - (j - 1) - (ignored entries ranked before it), plus eps when rank 1 is ignored.
    """
    num_classes, n = pos_ranked.shape
    ap = np.zeros(num_classes, dtype=np.float64)
    cls, rank = np.nonzero(pos_ranked & ~ign_ranked)  # sorted by (class, rank)
    if cls.size == 0:
        return ap

    per_class = np.bincount(cls, minlength=num_classes)
    starts = np.cumsum(per_class) - per_class
    tp = np.arange(cls.size) - starts[cls] + 1
    keys = cls * n + rank
    # Count the entries of the sparser kind (ignored, or counted negatives) ranked before each recalled positive.
    n_ignored = int(ign_ranked.sum())
    n_negative = int(num_classes * n - n_ignored - cls.size)
    if n_ignored <= n_negative:
        ci, ri = np.nonzero(ign_ranked)
        other = ci * n + ri
        ignored_before = np.searchsorted(other, keys) - np.searchsorted(other, cls * n)
        fp_count = rank - (tp - 1) - ignored_before
    else:
        ci, ri = np.nonzero(~pos_ranked & ~ign_ranked)
        other = ci * n + ri
        fp_count = np.searchsorted(other, keys) - np.searchsorted(other, cls * n)
    fp = fp_count.astype(np.float64) + np.where(ign_ranked[cls, 0], _FIRST_FP_EPS, 0.0)
    tp = tp.astype(np.float64)
    precision = tp / (tp + fp)
    recall = tp / num_gt[cls]

    present = per_class > 0  # classes with at least one recalled positive; the others keep AP 0
    seg = starts[present]
    if interpolation == "11point":
        for t in ELEVEN_POINT_THRESHOLDS:
            ap[present] += np.maximum.reduceat(np.where(recall >= t, precision, 0.0), seg)
        ap /= len(ELEVEN_POINT_THRESHOLDS)
    else:
        envelope = _segment_suffix_max(precision, cls)
        ap[present] = np.add.reduceat(envelope, seg) / num_gt[present]
    return ap


def _segment_suffix_max(values: np.ndarray, segment: np.ndarray) -> np.ndarray:
    """out[j] = max(values[j'] for j' >= j with segment[j'] == segment[j]); `segment` sorted ascending. Exact.

    Values are replaced by their integer order codes, shifted so a later-processed segment always dominates,
    and a single running maximum runs over the reversed array.
    """
    uniq, code = np.unique(values, return_inverse=True)
    code = code.astype(np.int64)
    shift = (segment.max() - segment).astype(np.int64) * (len(uniq) + 1)
    running = np.maximum.accumulate((code + shift)[::-1])[::-1]
    return uniq[running - shift]


def few_shot_classes(train_labels: np.ndarray, k: int) -> np.ndarray:
    """Class indices with between 1 and k positive (label == 1) training images, ascending.

    train_labels [N_train, C] in {1, 0, -1, -2}. The rule is "<= k" (DEFR's abstract calls the Few@1 classes
    one-shot). Classes without any positive training image are excluded: nothing about them can be learnt from
    the training set, so they would measure zero-shot rather than few-shot transfer. Count on the unbalanced
    training set (before min_samples duplication). DEFR's own lists are hard-coded and their rule is unknown
    (spec §D.3); read them with `load_few_shot_lists` for comparability with the paper.
    """
    return _few_shot_from_counts(hico_labels(train_labels).positives.sum(axis=0), k)


def _few_shot_from_counts(positives_per_class: np.ndarray, k: int) -> np.ndarray:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return np.flatnonzero((positives_per_class >= 1) & (positives_per_class <= k))


def _mean_over(ap: np.ndarray, classes: Sequence[int]) -> float:
    return float(np.mean(ap[np.asarray(classes, dtype=np.int64)])) if len(classes) else math.nan


def evaluate_hico(
    test_scores: np.ndarray,
    test_labels: np.ndarray,
    train_labels: np.ndarray | None = None,
    few_shot_lists: Mapping[str, Sequence[int]] | None = None,
    interpolation: Interpolation = "11point",
) -> dict:
    """DEFR's HICO metrics, as fractions in [0, 1].

    test_scores [N_test, C] raw logits; test_labels [N_test, C] and train_labels [N_train, C] in {1, 0, -1, -2}.
    Few@k lists: `few_shot_lists` ({"few@1": [...], ...}) when given, else derived from `train_labels` with
    `few_shot_classes`; a Few@k whose list is missing or empty is NaN.

    Returns {"full", "few@1", "few@5", "few@10", "known_object": float, "per_class_ap": list[float] (Default
    setting), "few_shot_sizes": {"few@1": n, ...}}.
    """
    test_scores = np.asarray(test_scores)
    masks = hico_labels(test_labels)
    if test_scores.ndim != 2 or test_scores.shape != masks.positives.shape:
        raise ValueError(f"test_scores {test_scores.shape} and test_labels {masks.positives.shape} differ in shape")
    num_classes = test_scores.shape[1]

    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    # One ranking (and one ranked positives mask) serves both settings.
    order = _descending_order(test_scores)
    pos_ranked = _ranked(masks.positives, order)
    num_gt = masks.positives.sum(axis=0)
    ap_default = _ap_from_ranked(pos_ranked, _ranked(~masks.certain, order), num_gt, interpolation)
    ap_known = _ap_from_ranked(pos_ranked, _ranked(~(masks.known_obj & masks.certain), order), num_gt, interpolation)

    if few_shot_lists is not None:
        lists = {key: list(few_shot_lists.get(key, [])) for key in FEW_SHOT_KEYS}
        for key, classes in lists.items():
            bad = [i for i in classes if not 0 <= int(i) < num_classes]
            if bad:
                raise ValueError(f"{key} list has class indices outside [0, {num_classes}): {bad[:5]}")
    elif train_labels is not None:
        train_labels = np.asarray(train_labels)
        if train_labels.ndim != 2 or train_labels.shape[1] != num_classes:
            raise ValueError(f"train_labels must be [N_train, {num_classes}], got {train_labels.shape}")
        train_pos = hico_labels(train_labels).positives.sum(axis=0)
        lists = {f"few@{k}": _few_shot_from_counts(train_pos, k).tolist() for k in FEW_SHOT_KS}
    else:
        lists = {key: [] for key in FEW_SHOT_KEYS}

    result: dict = {"full": float(ap_default.mean()) if num_classes else math.nan}
    for key in FEW_SHOT_KEYS:
        result[key] = _mean_over(ap_default, lists[key])
    result["known_object"] = float(ap_known.mean()) if num_classes else math.nan
    result["per_class_ap"] = ap_default.tolist()
    result["few_shot_sizes"] = {key: len(lists[key]) for key in FEW_SHOT_KEYS}
    return result


# Spellings accepted for the Few@k keys of a lists file, e.g. "few@1", "few1", "few_1", "1".
def _few_key(raw: str) -> str | None:
    text = str(raw).strip().lower()
    for prefix in ("few@", "few_", "few-", "few"):
        if text.startswith(prefix):
            text = text[len(prefix):]
            break
    return f"few@{text}" if text in {str(k) for k in FEW_SHOT_KS} else None


def load_few_shot_lists(path: str | Path) -> dict[str, list[int]]:
    """Read Few@k class lists from JSON {"few@1": [...], "few@5": [...], "few@10": [...]} (0-based class indices).

    Keys may also be spelt "few1", "few_1" or "1". Keys that are absent give NaN for that Few@k. Raises DataError
    for a missing or unreadable file, an unknown key, or entries that are not non-negative integers.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: few-shot lists file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise DataError(f"{path}: cannot read few-shot lists as JSON ({exc})") from None
    if not isinstance(raw, dict) or not raw:
        raise DataError(f'{path}: expected a JSON object like {{"few@1": [...], "few@5": [...], "few@10": [...]}}')
    lists: dict[str, list[int]] = {}
    for raw_key, values in raw.items():
        key = _few_key(raw_key)
        if key is None:
            raise DataError(
                f"{path}: unknown key {raw_key!r}; allowed: {', '.join(FEW_SHOT_KEYS)}"
                f"{did_you_mean(raw_key, FEW_SHOT_KEYS)}"
            )
        if key in lists:
            raise DataError(f"{path}: {key} is given twice (key {raw_key!r})")
        if not isinstance(values, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values
        ):
            raise DataError(f"{path}: {raw_key!r} must be a list of non-negative integer class indices")
        lists[key] = list(values)
    return lists
