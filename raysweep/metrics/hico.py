"""HICO image-level HOI classification metrics, following DEFR's protocol.

Labels use HICO's four values: 1 positive, 0 ambiguous, -1 negative, -2 object not annotated (the original
anno.mat NaN). Scores are raw logits; only their order matters.

- Default setting: only ambiguous entries are ignored; -2 entries count as negatives.
- Known-Object: entries whose label is not in {1, -1} are ignored, i.e. each class is ranked only over images
  where its object is annotated.
- Few@k: mean of the Default APs over a fixed class list. On real HICO (600 classes) the default is DEFR's three
  hard-coded lists (shipped in `raysweep/data/defr_few_shot_classes.json`, source name "defr-lists"); on any other
  class set (the synthetic data) the lists are derived from training counts ("derived (<=k training images)").

All functions are plain NumPy, vectorised across classes: the full HICO test set (9,658 x 600) evaluates in a
fraction of a second on one core (see benchmarks/bench_hico_eval.py).
"""

from __future__ import annotations

import functools
import json
import math
from importlib import resources
from pathlib import Path
from typing import Literal, Mapping, NamedTuple, Sequence

import numpy as np

from raysweep.errors import DataError, did_you_mean

Interpolation = Literal["11point", "all_point"]
INTERPOLATIONS: tuple[str, ...] = ("11point", "all_point")

# How images with equal scores are ordered within a class's ranking (see `average_precision`).
TieRule = Literal["index", "pessimistic", "optimistic"]
TIE_RULES: tuple[str, ...] = ("index", "pessimistic", "optimistic")
TIE_DESCRIPTIONS: dict[str, str] = {
    "index": "broken by image index (lower index ranks first)",
    "pessimistic": "pessimistic (positives rank after the negatives they tie with: a lower bound over tie orders)",
    "optimistic": "optimistic (positives rank before the negatives they tie with: an upper bound over tie orders)",
}

FEW_SHOT_KS: tuple[int, ...] = (1, 5, 10)
FEW_SHOT_KEYS: tuple[str, ...] = tuple(f"few@{k}" for k in FEW_SHOT_KS)

# Where the Few@k class lists come from, as `few_shot_source` names it (e.g. for a table footer).
FEW_SHOT_DEFR = "defr-lists"
FEW_SHOT_DERIVED = "derived (<=k training images)"
# Names accepted instead of a lists file (`data.few_shot_lists`, `eval hico --few-shot-lists`).
FEW_SHOT_NAMED: tuple[str, ...] = ("defr", "derived")
# HICO's class count: DEFR's lists index these 600 classes, so they are the default exactly for 600-class data.
HICO_NUM_CLASSES = 600
_DEFR_LISTS_RESOURCE = "defr_few_shot_classes.json"

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


# The 11 recall thresholds of DEFR's 11-point interpolated AP.
ELEVEN_POINT_THRESHOLDS: np.ndarray = _torch_linspace_float64(0.0, 1.0, 11)


class HicoLabelMasks(NamedTuple):
    """Boolean [N, C] views of a HICO label matrix (DEFR's `anno.pkl` label values)."""

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
    ties: TieRule = "index",
) -> np.ndarray:
    """Per-class AP [C] (float64) of scores [N, C] against boolean positives [N, C], skipping `ignore` [N, C].

    DEFR's protocol (11-point interpolated AP with an ignore mask), per class:
    - num_gt counts every positive, ignored or not (an ignored positive can never be recalled);
    - images are ranked by descending score. Ties (`ties`): "index" (default) as a stable sort, so among equal scores
      the lower image index ranks first (DEFR's torch.argsort leaves tie order unspecified); "pessimistic" ranks the
      tied negatives first, then the tied ignored entries, then the tied positives, which gives the lowest AP of any
      tie order; "optimistic" the reverse, the highest (both keep index order within each kind);
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
    order = _descending_order(scores, _tie_key(positives, ignore, ties))
    pos_ranked = _ranked(positives, order)
    return _ap_from_ranked(pos_ranked, _ranked(ignore, order), positives.sum(axis=0), interpolation)


def _tie_key(positives: np.ndarray, ignore: np.ndarray, ties: str) -> np.ndarray | None:
    """Secondary sort key [N, C] among equal scores (ascending ranks first); None for index order.

    Counted positives, ignored entries and counted negatives are disjoint kinds. Putting every tied positive after
    every tied negative (pessimistic) maximises each recalled positive's rank, hence minimises its precision and the
    AP of both interpolations; the reverse maximises them. Where tied ignored entries go changes no TP or FP count.
    """
    if ties not in TIE_RULES:
        raise ValueError(f"ties must be one of {TIE_RULES}, got {ties!r}")
    if ties == "index":
        return None
    counted_pos = positives & ~ignore
    key = np.where(ignore, 1, np.where(counted_pos, 2, 0)).astype(np.int8)  # pessimistic: negatives first
    return key if ties == "pessimistic" else (2 - key)


def _descending_order(scores: np.ndarray, tie_key: np.ndarray | None = None) -> np.ndarray:
    """Per-class ranking [C, N] of scores [N, C]: image indices by descending score, ties by ascending `tie_key`
    [N, C] when given, then by ascending index.

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
        if tie_key is None:
            order[tied] = np.argsort(negated[tied], axis=1, kind="stable")
        else:  # lexsort is stable: the last key is primary, and equal (score, key) pairs keep index order
            order[tied] = np.lexsort((np.ascontiguousarray(tie_key.T)[tied], negated[tied]), axis=-1)
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
    (docs/defr.md); read them with `load_few_shot_lists` for comparability with the paper.
    """
    return _few_shot_from_counts(hico_labels(train_labels).positives.sum(axis=0), k)


def _few_shot_from_counts(positives_per_class: np.ndarray, k: int) -> np.ndarray:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return np.flatnonzero((positives_per_class >= 1) & (positives_per_class <= k))


def _mean_over(ap: np.ndarray, classes: Sequence[int]) -> float:
    return float(np.mean(ap[np.asarray(classes, dtype=np.int64)])) if len(classes) else math.nan


def defr_few_shot_lists() -> dict[str, list[int]]:
    """DEFR's Few@1 / Few@5 / Few@10 class lists (49 / 125 / 162 of the 600 HICO classes, 0-based, ascending),
    read from the package data `raysweep/data/defr_few_shot_classes.json` (docs/defr.md)."""
    return {key: list(classes) for key, classes in _defr_lists_cached().items()}


@functools.lru_cache(maxsize=1)
def _defr_lists_cached() -> dict[str, tuple[int, ...]]:
    text = resources.files("raysweep.data").joinpath(_DEFR_LISTS_RESOURCE).read_text(encoding="utf-8")
    raw = json.loads(text)
    return {key: tuple(int(i) for i in raw["lists"][key]) for key in FEW_SHOT_KEYS}


def few_shot_source(num_classes: int | None, setting: str | None = None) -> str:
    """The name of the Few@k class lists an evaluation uses, for table footers and printed summaries.

    `setting` is `data.few_shot_lists` / `eval hico --few-shot-lists`: None (the default: DEFR's lists for 600-class
    HICO, else derived), "defr", "derived", or a lists file (named "file <path>"). With num_classes None (unknown)
    and no setting, the data is taken to be real HICO.
    """
    if setting is None:
        return FEW_SHOT_DEFR if num_classes in (None, HICO_NUM_CLASSES) else FEW_SHOT_DERIVED
    if setting == "defr":
        return FEW_SHOT_DEFR
    if setting == "derived":
        return FEW_SHOT_DERIVED
    return f"file {setting}"


def evaluate_hico(
    test_scores: np.ndarray,
    test_labels: np.ndarray,
    train_labels: np.ndarray | None = None,
    few_shot_lists: Mapping[str, Sequence[int]] | str | None = None,
    interpolation: Interpolation = "11point",
    few_shot_name: str | None = None,
    ties: TieRule = "index",
) -> dict:
    """DEFR's HICO metrics, as fractions in [0, 1].

    test_scores [N_test, C] raw logits; test_labels [N_test, C] and train_labels [N_train, C] in {1, 0, -1, -2}.
    Few@k lists (`few_shot_lists`): a mapping {"few@1": [...], ...} (named `few_shot_name`, default "given
    lists"); "defr" (DEFR's lists, 600 classes only); "derived" (from `train_labels` with `few_shot_classes`);
    None: "defr" when C = 600, else "derived". A Few@k whose list is missing or empty is NaN.
    `ties`: how equal scores are ordered (see `average_precision`); "pessimistic" / "optimistic" bound every
    metric over all tie orders.

    Returns {"full", "few@1", "few@5", "few@10", "known_object": float, "per_class_ap": list[float] (Default
    setting), "few_shot_sizes": {"few@1": n, ...}, "few_shot_source": str (see `few_shot_source`)}.
    """
    test_scores = np.asarray(test_scores)
    masks = hico_labels(test_labels)
    if test_scores.ndim != 2 or test_scores.shape != masks.positives.shape:
        raise ValueError(f"test_scores {test_scores.shape} and test_labels {masks.positives.shape} differ in shape")
    num_classes = test_scores.shape[1]

    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    num_gt = masks.positives.sum(axis=0)
    ignore_default, ignore_known = ~masks.certain, ~(masks.known_obj & masks.certain)
    if ties == "index":  # one ranking (and one ranked positives mask) serves both settings
        order = _descending_order(test_scores)
        pos_ranked = _ranked(masks.positives, order)
        ap_default = _ap_from_ranked(pos_ranked, _ranked(ignore_default, order), num_gt, interpolation)
        ap_known = _ap_from_ranked(pos_ranked, _ranked(ignore_known, order), num_gt, interpolation)
    else:  # the bound's tie order depends on what each setting ignores
        ap_default = average_precision(test_scores, masks.positives, ignore_default, interpolation, ties)
        ap_known = average_precision(test_scores, masks.positives, ignore_known, interpolation, ties)

    if few_shot_lists is None:
        few_shot_lists = "defr" if num_classes == HICO_NUM_CLASSES else "derived"
    if isinstance(few_shot_lists, str):
        if few_shot_lists not in FEW_SHOT_NAMED:
            raise ValueError(f"few_shot_lists must be a mapping or one of {FEW_SHOT_NAMED}, got {few_shot_lists!r}")
        source = few_shot_source(num_classes, few_shot_lists)
    else:
        source = few_shot_name or "given lists"
    if few_shot_lists == "defr":
        if num_classes != HICO_NUM_CLASSES:
            raise ValueError(f"DEFR's Few@k lists index the {HICO_NUM_CLASSES} HICO classes; the scores have "
                             f"{num_classes} classes")
        lists = defr_few_shot_lists()
    elif few_shot_lists == "derived":
        if train_labels is not None:
            train_labels = np.asarray(train_labels)
            if train_labels.ndim != 2 or train_labels.shape[1] != num_classes:
                raise ValueError(f"train_labels must be [N_train, {num_classes}], got {train_labels.shape}")
            train_pos = hico_labels(train_labels).positives.sum(axis=0)
            lists = {f"few@{k}": _few_shot_from_counts(train_pos, k).tolist() for k in FEW_SHOT_KS}
        else:
            lists = {key: [] for key in FEW_SHOT_KEYS}
            source = "none (no training labels to derive them from)"
    else:
        lists = {key: list(few_shot_lists.get(key, [])) for key in FEW_SHOT_KEYS}
        for key, classes in lists.items():
            bad = [i for i in classes if not 0 <= int(i) < num_classes]
            if bad:
                raise ValueError(f"{key} list has class indices outside [0, {num_classes}): {bad[:5]}")

    result: dict = {"full": float(ap_default.mean()) if num_classes else math.nan}
    for key in FEW_SHOT_KEYS:
        result[key] = _mean_over(ap_default, lists[key])
    result["known_object"] = float(ap_known.mean()) if num_classes else math.nan
    result["per_class_ap"] = ap_default.tolist()
    result["few_shot_sizes"] = {key: len(lists[key]) for key in FEW_SHOT_KEYS}
    result["few_shot_source"] = source
    result["ties"] = ties
    return result


# Spellings accepted for the Few@k keys of a lists file, e.g. "few@1", "few1", "few_1", "1".
def _few_key(raw: str) -> str | None:
    text = str(raw).strip().lower()
    for prefix in ("few@", "few_", "few-", "few"):
        if text.startswith(prefix):
            text = text[len(prefix):]
            break
    return f"few@{text}" if text in {str(k) for k in FEW_SHOT_KS} else None


def load_few_shot_lists(path: str | Path, num_classes: int | None = None,
                        origin: str | None = None) -> dict[str, list[int]]:
    """Read Few@k class lists from JSON {"few@1": [...], "few@5": [...], "few@10": [...]} (0-based class indices).

    Keys may also be spelt "few1", "few_1" or "1"; the project's own format ({"lists": {...}, ...}, as
    `raysweep/data/defr_few_shot_classes.json`) is read too. Keys that are absent give NaN for that Few@k.
    Raises DataError, one line naming the file, the list key and `origin` (the config key or option that named the
    file), for a missing or unreadable file, an unknown key, entries that are not integers, duplicates, or (given
    `num_classes`) indices outside [0, num_classes).
    """
    path = Path(path)
    where = f" ({origin})" if origin else ""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: few-shot lists file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise DataError(f"{path}: cannot read few-shot lists as JSON ({exc}){where}") from None
    if isinstance(raw, dict) and isinstance(raw.get("lists"), dict):
        raw = raw["lists"]
    if not isinstance(raw, dict) or not raw:
        raise DataError(f'{path}: expected a JSON object like {{"few@1": [...], "few@5": [...], "few@10": [...]}}'
                        f'{where}')
    lists: dict[str, list[int]] = {}
    for raw_key, values in raw.items():
        key = _few_key(raw_key)
        if key is None:
            raise DataError(
                f"{path}: unknown key {raw_key!r}; allowed: {', '.join(FEW_SHOT_KEYS)}"
                f"{did_you_mean(raw_key, FEW_SHOT_KEYS)}{where}"
            )
        if key in lists:
            raise DataError(f"{path}: {key} is given twice (key {raw_key!r}){where}")
        if not isinstance(values, list):
            raise DataError(f"{path}: {raw_key!r} must be a list of integer class indices, got "
                            f"{type(values).__name__}{where}")
        wrong = [v for v in values if not isinstance(v, int) or isinstance(v, bool)]
        if wrong:
            raise DataError(f"{path}: {raw_key!r} must hold integer class indices, found {wrong[0]!r}{where}")
        outside = [v for v in values if v < 0 or (num_classes is not None and v >= num_classes)]
        if outside:
            bounds = f"outside [0, {num_classes})" if num_classes is not None else "below 0"
            raise DataError(f"{path}: {key} has class indices {bounds}: {outside[:5]}{where}")
        seen: set[int] = set()
        repeated = sorted({v for v in values if v in seen or seen.add(v)})
        if repeated:
            raise DataError(f"{path}: {key} lists class indices more than once: {repeated[:5]}{where}")
        lists[key] = list(values)
    return lists
