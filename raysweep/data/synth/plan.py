"""Which HOI classes each synthetic image shows: a long-tailed training split and a balanced test split.

Shared by the synthetic HICO (image labels) and a synthetic HICO-DET generator (boxes): both draw the planned
interactions with `render.render_scene`.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)

# Positive-image counts of the rarest training classes, so Few@1 / Few@5 / Few@10 are non-empty (3 / 7 / 10 classes).
TAIL_COUNTS: tuple[int, ...] = (1, 1, 1, 2, 3, 4, 5, 7, 8, 10)
HEAD_MIN = 11  # every other class has more than 10 training positives
PAIRS_PER_IMAGE_P: tuple[float, float, float] = (0.4, 0.4, 0.2)  # probability of 1, 2, 3 interactions in an image
TEST_MIN_POSITIVES = 3


def long_tail_counts(num_classes: int, total: int, max_count: int, rng: np.random.Generator) -> np.ndarray:
    """Positive count per class: the `TAIL_COUNTS` for the rarest classes, a Zipf (1/rank) share of the rest.

    Which class gets which rank is a random permutation. Counts sum to `total` when the budget allows and never
    exceed `max_count` (a class appears at most once per image). Too small a budget for the tail + `HEAD_MIN` rule
    falls back to a plain Zipf over all classes (no Few@k guarantee), which only tiny datasets need.
    """
    rank_to_class = rng.permutation(num_classes)
    counts_by_rank = np.zeros(num_classes, dtype=np.int64)
    n_tail = min(len(TAIL_COUNTS), num_classes)
    n_head = num_classes - n_tail
    spare = total - sum(TAIL_COUNTS[-n_tail:]) - HEAD_MIN * n_head
    if n_tail == len(TAIL_COUNTS) and spare >= 0:
        weights = 1.0 / np.arange(1, n_head + 1)
        head = HEAD_MIN + np.floor(spare * weights / weights.sum()).astype(np.int64)
        head[: total - sum(TAIL_COUNTS) - int(head.sum())] += 1  # the rounding remainder goes to the top ranks
        counts_by_rank[:n_head] = head
        counts_by_rank[n_head:] = sorted(TAIL_COUNTS, reverse=True)
    else:
        weights = 1.0 / np.arange(1, num_classes + 1)
        counts_by_rank[:] = np.maximum(1, np.floor(total * weights / weights.sum()))
        log.debug("synthetic data too small for the Few@k tail (total %d pairs); using a plain Zipf", total)
    counts_by_rank = np.minimum(counts_by_rank, max_count)
    counts = np.zeros(num_classes, dtype=np.int64)
    counts[rank_to_class] = counts_by_rank
    return counts


def balanced_counts(num_classes: int, total: int, max_count: int, rng: np.random.Generator) -> np.ndarray:
    """Near-equal positive count per class summing to `total` (the remainder to random classes)."""
    counts = np.full(num_classes, total // num_classes, dtype=np.int64)
    counts[rng.choice(num_classes, size=total % num_classes, replace=False)] += 1
    if counts.min() < TEST_MIN_POSITIVES:
        log.warning(
            "synthetic test split: %d images give only %d..%d positives per class (want >= %d)",
            max_count, counts.min(), counts.max(), TEST_MIN_POSITIVES,
        )  # fmt: skip
    return np.minimum(counts, max_count)


def pack(counts: np.ndarray, capacity: np.ndarray, rng: np.random.Generator) -> list[list[int]]:
    """Distribute counts[c] copies of each class over images with `capacity[i]` slots, at most once per image.

    Classes are placed most frequent first, each copy into a random image with free slots (weighted by the free
    slots). A copy that finds no image is dropped (rare; only when the budget is tiny); an image left empty gets a
    random class, so every image shows at least one interaction.
    """
    n = len(capacity)
    free = capacity.astype(np.int64).copy()
    has = np.zeros((n, len(counts)), dtype=bool)
    order = sorted(range(len(counts)), key=lambda c: (-counts[c], c))
    dropped = 0
    for c in order:
        for _ in range(int(counts[c])):
            ok = (free > 0) & ~has[:, c]
            if not ok.any():
                dropped += 1
                continue
            p = np.where(ok, free, 0).astype(np.float64)
            i = int(rng.choice(n, p=p / p.sum()))
            has[i, c] = True
            free[i] -= 1
    for i in np.flatnonzero(~has.any(axis=1)):
        has[i, int(rng.integers(len(counts)))] = True
    if dropped:
        log.debug("pack: %d class copies found no image with a free slot", dropped)
    images = [np.flatnonzero(row).tolist() for row in has]
    for row in images:  # drawing order inside an image is random, not class order
        rng.shuffle(row)
    return images


def plan_split(num_images: int, num_classes: int, long_tail: bool, rng: np.random.Generator,
               pairs_per_image_p: Sequence[float] = PAIRS_PER_IMAGE_P) -> list[list[int]]:
    """Class indices shown in each image: k distinct classes with probability pairs_per_image_p[k - 1]."""
    capacity = rng.choice(np.arange(1, len(pairs_per_image_p) + 1), size=num_images, p=list(pairs_per_image_p))
    total = int(capacity.sum())
    if long_tail:
        counts = long_tail_counts(num_classes, total, num_images, rng)
    else:
        counts = balanced_counts(num_classes, total, num_images, rng)
    return pack(counts, capacity, rng)
