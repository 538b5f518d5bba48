"""How much HICO AP moves with the order of tied scores when logits are rounded to bf16 (as under `train.amp: bf16`).

A HICO-sized test set (9,658 images x 600 classes, HICO's label proportions, a long tail of test positives per
class with DEFR's Few@1 classes among the rarest) is scored by two simulated heads:
- "cosine": DEFR's cosine classifier, logits = e^4.61 * cos (about 100 * cos, |logit| up to ~60);
- "linear": a BCE-style linear head, logits of a few units.
Each is evaluated on float32 logits and on the same logits rounded to bf16 (8 significant bits), with the tie rules of
`raysweep.metrics.hico` (index, pessimistic, optimistic) and with random tie orders (the images shuffled, then index
order; what an unstable sort such as DEFR's torch.argsort amounts to). Numbers are mAP in %, in docs/defr.md.

    python3 benchmarks/hico_tie_sensitivity.py [--random-orders 10] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from raysweep.metrics.hico import defr_few_shot_lists, evaluate_hico

NUM_IMAGES, NUM_CLASSES = 9658, 600
KEYS = ("full", "few@1", "few@10", "known_object")


def make_labels(rng: np.random.Generator) -> np.ndarray:
    """[N, C] in {1, 0, -1, -2}: per-class positive counts long-tailed (Few@1 classes get 1..4, Few@10 ones up to
    ~20); about 0.4% ambiguous and 8% negative-with-object, the rest object absent."""
    counts = np.clip(np.round(rng.lognormal(mean=3.0, sigma=1.3, size=NUM_CLASSES)), 5, 2000).astype(int)
    lists = defr_few_shot_lists()
    counts[lists["few@10"]] = rng.integers(1, 21, size=len(lists["few@10"]))
    counts[lists["few@1"]] = rng.integers(1, 5, size=len(lists["few@1"]))
    labels = rng.choice(np.array([0, -1, -2]), size=(NUM_IMAGES, NUM_CLASSES), p=[0.004, 0.08, 0.916])
    for c, n in enumerate(counts):
        labels[rng.choice(NUM_IMAGES, size=n, replace=False), c] = 1
    return labels


def make_logits(labels: np.ndarray, head: str, rng: np.random.Generator) -> np.ndarray:
    """float32 logits [N, C] whose positives score higher on average, tuned to a Full mAP in the 40s-50s."""
    positive = labels == 1
    if head == "cosine":
        cos = rng.normal(0.0, 0.06, size=labels.shape) + np.where(positive, 0.18, 0.0)
        return (np.exp(4.61) * cos).astype(np.float32)
    return (rng.normal(-6.0, 1.6, size=labels.shape) + np.where(positive, 4.8, 0.0)).astype(np.float32)


def to_bf16(x: np.ndarray) -> np.ndarray:
    return torch.from_numpy(x).to(torch.bfloat16).float().numpy()


def tied_share(scores: np.ndarray) -> float:
    """Fraction of (image, class) scores equal to another image's score for the same class."""
    ranked = np.sort(scores, axis=0)
    equal_next = ranked[1:] == ranked[:-1]
    tied = np.zeros_like(ranked, dtype=bool)
    tied[1:] |= equal_next
    tied[:-1] |= equal_next
    return float(tied.mean())


def summarise(name: str, scores: np.ndarray, labels: np.ndarray, orders: int, rng: np.random.Generator) -> None:
    rules = {rule: evaluate_hico(scores, labels, ties=rule) for rule in ("index", "pessimistic", "optimistic")}
    shuffled = []
    for _ in range(orders):
        perm = rng.permutation(NUM_IMAGES)
        shuffled.append(evaluate_hico(scores[perm], labels[perm]))
    print(f"\n{name}: {100 * tied_share(scores):.1f}% of scores tied within their class")
    print(f"{'metric':<14}{'index':>9}{'pess.':>9}{'optim.':>9}{'random min':>12}{'random max':>12}"
          f"{'max |dAP| one class':>22}")
    for key in KEYS:
        values = [100 * r[key] for r in shuffled]
        print(f"{key:<14}{100 * rules['index'][key]:>9.3f}{100 * rules['pessimistic'][key]:>9.3f}"
              f"{100 * rules['optimistic'][key]:>9.3f}{min(values):>12.3f}{max(values):>12.3f}", end="")
        if key == "full":
            spread = np.asarray(rules["optimistic"]["per_class_ap"]) - np.asarray(rules["pessimistic"]["per_class_ap"])
            print(f"{100 * spread.max():>22.3f}")
        else:
            print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--random-orders", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    labels = make_labels(rng)
    print(f"{NUM_IMAGES} images x {NUM_CLASSES} classes; DEFR Few@k lists; mAP in %")
    for head in ("cosine", "linear"):
        logits = make_logits(labels, head, rng)
        summarise(f"{head} head, float32", logits, labels, args.random_orders, rng)
        summarise(f"{head} head, bf16-rounded", to_bf16(logits), labels, args.random_orders, rng)
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
