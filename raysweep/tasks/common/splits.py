"""A deterministic validation split carved out of a training set, stratified over multi-label classes.

Hyper-parameters are selected on this split, never on the test set. It must be the same for every trial of a sweep
(it depends on the data and its own seed, not on the trial's training seed), and rare classes must keep positives on
both sides wherever they can: a class with two or more positive images gets at least one in validation and keeps at
least one in training.

The assignment is a simplified iterative stratification (Sechidis et al., 2011): classes are visited from the
rarest to the most frequent; each takes, from its still unassigned images in a seeded random order, what it still
needs to reach its validation quota (`round(fraction * count)`, at least 1, at most count - 1), and the rest of its
unassigned images go to training. Images without any positive are split by the fraction at the end.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def stratified_holdout(labels: Sequence[Sequence[int]], num_classes: int, fraction: float,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices), both sorted, disjoint, covering every image.

    labels[i]: the classes with a positive in image i (any iterable of ints in [0, num_classes)).
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"`0 < fraction < 1` must hold, but got fraction={fraction}")
    n = len(labels)
    sets = [sorted({int(c) for c in row}) for row in labels]
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)  # one shared random order: deterministic ties between images
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    members: list[list[int]] = [[] for _ in range(num_classes)]
    for image, classes in enumerate(sets):
        for c in classes:
            members[c].append(image)
    counts = np.array([len(m) for m in members])
    quota = np.where(counts >= 2, np.clip(np.round(fraction * counts), 1, counts - 1), 0).astype(np.int64)
    in_val = np.zeros(num_classes, dtype=np.int64)
    side = np.full(n, -1, dtype=np.int8)  # -1 unassigned, 0 train, 1 validation
    for c in sorted(range(num_classes), key=lambda k: (counts[k], k)):
        if counts[c] == 0:
            continue
        for image in sorted(members[c], key=lambda i: rank[i]):
            if side[image] != -1:
                continue
            # never take a class's last training positive (a class seen once stays in training)
            to_val = in_val[c] < quota[c] and all(in_val[k] < counts[k] - 1 for k in sets[image])
            side[image] = 1 if to_val else 0
            if to_val:
                for other in sets[image]:
                    in_val[other] += 1
    unlabelled = [i for i in order if side[i] == -1]
    cut = int(round(fraction * len(unlabelled)))
    side[unlabelled[:cut]] = 1
    side[unlabelled[cut:]] = 0
    return np.flatnonzero(side == 0), np.flatnonzero(side == 1)
