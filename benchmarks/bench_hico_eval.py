"""Time `evaluate_hico` at full HICO test scale against a per-class loop of the same 11-point protocol.

Single-threaded on purpose (thread counts are fixed before NumPy loads). The loop version doubles as a
cross-check: both must give the same per-class APs to 1e-12 in both settings.

    python3 benchmarks/bench_hico_eval.py [--images 9658] [--classes 600] [--repeats 3]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from raysweep.metrics.hico import ELEVEN_POINT_THRESHOLDS, evaluate_hico, hico_labels  # noqa: E402

# Rough HICO test proportions: ~0.5% positive, ~0.3% ambiguous, ~8% negative with the object present, the rest
# object absent (-2).
LABEL_VALUES = (1, 0, -1, -2)
LABEL_PROBS = (0.005, 0.003, 0.08, 0.912)


def loop_ap(scores: np.ndarray, positives: np.ndarray, ignore: np.ndarray) -> np.ndarray:
    """DEFR's 11-point AP protocol written class by class, as a straightforward implementation would."""
    num_classes = scores.shape[1]
    ap = np.zeros(num_classes)
    for c in range(num_classes):
        order = np.argsort(-scores[:, c], kind="stable")
        pos, ign = positives[order, c], ignore[order, c]
        tp = (pos & ~ign).astype(np.float64)
        fp = (~pos & ~ign).astype(np.float64)
        if ign[0]:
            fp[0] = np.finfo(np.float64).eps
        tp, fp = np.cumsum(tp), np.cumsum(fp)
        num_gt = positives[:, c].sum()
        precision = tp / (tp + fp)
        recall = tp / (num_gt if num_gt > 0 else 1e-8)
        total = 0.0
        for t in ELEVEN_POINT_THRESHOLDS:
            reached = recall >= t
            total += precision[reached].max() if reached.any() else 0.0
        ap[c] = total / len(ELEVEN_POINT_THRESHOLDS)
    return ap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=9658)
    parser.add_argument("--classes", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    labels = rng.choice(LABEL_VALUES, size=(args.images, args.classes), p=LABEL_PROBS).astype(np.int8)
    scores = rng.standard_normal((args.images, args.classes)) + 1.5 * (labels == 1)  # informative logits
    print(f"{args.images} images x {args.classes} classes, positives {int((labels == 1).sum())}, single thread")

    fast_times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        result = evaluate_hico(scores, labels)
        fast_times.append(time.perf_counter() - start)

    masks = hico_labels(labels)
    start = time.perf_counter()
    loop_default = loop_ap(scores, masks.positives, ~masks.certain)
    loop_known = loop_ap(scores, masks.positives, ~(masks.known_obj & masks.certain))
    loop_time = time.perf_counter() - start

    np.testing.assert_allclose(result["per_class_ap"], loop_default, rtol=0, atol=1e-12)
    assert abs(result["known_object"] - loop_known.mean()) < 1e-12
    fast = min(fast_times)
    print(f"evaluate_hico (Default + Known-Object): best {fast:.3f} s of {args.repeats} "
          f"(all: {', '.join(f'{t:.3f}' for t in fast_times)})")
    print(f"per-class loop  (Default + Known-Object): {loop_time:.3f} s")
    print(f"speed-up: {loop_time / fast:.1f}x; per-class APs agree to 1e-12 "
          f"(Full {100 * result['full']:.2f}%, Known-Object {100 * result['known_object']:.2f}%)")


if __name__ == "__main__":
    main()
