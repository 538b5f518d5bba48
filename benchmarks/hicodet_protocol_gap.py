"""How far apart the two HICO-DET protocols land on the synthetic HICO-DET, for a simulated QPIC-like detector.

    python3 benchmarks/hicodet_protocol_gap.py [--out DIR] [--seed 0] [--num-train 600 --num-test 200 --size 128]

The detector is simulated (no training): per test image 100 queries in QPIC's post-processor layout. Each GT pair
gets a query with jittered boxes (the right object class 90 % of the time) and a high score for its verb, some of
them a lower-scored duplicate; the other queries are distractors with random boxes, objects from the vocabulary
and low scores, in GT-less images too. The numbers in docs/hicodet_protocols.md come from this script.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from raysweep.data.hicodet import NUM_VERBS, coco_id_to_index, load_hicodet  # noqa: E402
from raysweep.data.synth.hicodet import generate_hicodet  # noqa: E402
from raysweep.data.synth.vocabulary import COCO_CATEGORY_ID  # noqa: E402
from raysweep.metrics import hicodet as hicodet_metrics  # noqa: E402
from raysweep.metrics.hicodet import evaluate_hicodet  # noqa: E402


def simulated_predictions(test: list[dict], image_size: int, seed: int, n_queries: int = 100) -> list[dict]:
    rng = np.random.default_rng(seed)
    vocabulary = np.array(sorted(coco_id_to_index(c) for c in COCO_CATEGORY_ID.values()))
    preds = []
    for rec in test:
        boxes = np.sort(rng.uniform(0, image_size, (2 * n_queries, 2, 2)), axis=1).transpose(0, 2, 1).reshape(-1, 4)
        boxes = boxes[:, [0, 2, 1, 3]]  # x1, y1, x2, y2 from sorted x and y pairs
        labels = np.concatenate([np.zeros(n_queries, dtype=np.int64), rng.choice(vocabulary, n_queries)])
        obj_score = rng.uniform(0.02, 0.3, n_queries)
        verb_scores = rng.random((n_queries, NUM_VERBS)) ** 6 * obj_score[:, None]
        q = 0
        for hoi in rec["hoi_annotation"]:
            sub = np.array(rec["annotations"][hoi["subject_id"]]["bbox"], dtype=np.float64)
            obj = np.array(rec["annotations"][hoi["object_id"]]["bbox"], dtype=np.float64)
            label = coco_id_to_index(rec["annotations"][hoi["object_id"]]["category_id"])
            for copy in range(1 + (rng.random() < 0.3)):  # sometimes a duplicate query
                if q >= n_queries:
                    break
                scale = np.r_[sub[2:] - sub[:2], sub[2:] - sub[:2]] + 1
                boxes[q] = sub + rng.normal(0, 0.08, 4) * scale
                scale = np.r_[obj[2:] - obj[:2], obj[2:] - obj[:2]] + 1
                boxes[n_queries + q] = obj + rng.normal(0, 0.08, 4) * scale
                labels[n_queries + q] = label if rng.random() < 0.9 else rng.choice(vocabulary)
                obj_score[q] = rng.uniform(0.4, 1.0) * (0.6 if copy else 1.0)
                verb_scores[q] = rng.random(NUM_VERBS) ** 6 * obj_score[q]
                verb_scores[q, hoi["category_id"] - 1] = rng.uniform(0.2, 1.0) * obj_score[q]
                q += 1
        preds.append({"boxes": boxes.astype(np.float32), "labels": labels,
                      "verb_scores": verb_scores.astype(np.float32), "sub_ids": np.arange(n_queries),
                      "obj_ids": np.arange(n_queries, 2 * n_queries)})
    return preds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="where to write the synthetic set (default: temp)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-train", type=int, default=600)
    parser.add_argument("--num-test", type=int, default=200)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "hicodet"
        root = generate_hicodet(out, args.seed, args.num_train, args.num_test, args.size)
        ann = load_hicodet(root)
        preds = simulated_predictions(ann.test, args.size, args.seed)
        results = {p: evaluate_hicodet(ann, preds, p) for p in ("qpic", "official")}
        # Diagnostics: the official protocol with one difference removed at a time.
        annotated = [i for i, r in enumerate(ann.test) if r["hoi_annotation"]]
        subset = type(ann)(root=ann.root, train=ann.train, test=[ann.test[i] for i in annotated],
                           correct_mat=ann.correct_mat)
        without_empty = evaluate_hicodet(subset, [preds[i] for i in annotated], "official")
        official_thresholds = hicodet_metrics.OFFICIAL_RECALL_THRESHOLDS
        hicodet_metrics.OFFICIAL_RECALL_THRESHOLDS = hicodet_metrics.QPIC_RECALL_THRESHOLDS
        try:
            numpy_thresholds = evaluate_hicodet(ann, preds, "official")
        finally:
            hicodet_metrics.OFFICIAL_RECALL_THRESHOLDS = official_thresholds
    counts = results["qpic"]["class_counts"]
    print(f"synthetic HICO-DET seed {args.seed}: {args.num_train} train / {args.num_test} test images at "
          f"{args.size}px, {counts['full']} classes ({counts['rare']} rare); "
          f"{sum(not r['hoi_annotation'] for r in ann.test)} GT-less test images")
    print(f"{'protocol':<10}{'setting':<14}{'Full':>8}{'Rare':>8}{'Non-rare':>10}{'max recall':>12}{'detections':>12}")
    for protocol, result in results.items():
        for key, name in (("default", "Default"), ("known_object", "Known-Object")):
            row = result[key]
            print(f"{protocol:<10}{name:<14}{100 * row['full']:>8.2f}{100 * row['rare']:>8.2f}"
                  f"{100 * row['non_rare']:>10.2f}{100 * row['mean_max_recall']:>12.2f}"
                  f"{result['num_detections'][key]:>12}")
    for key, name in (("default", "Default"), ("known_object", "Known-Object")):
        gap = {g: 100 * (results["official"][key][g] - results["qpic"][key][g]) for g in ("full", "rare", "non_rare")}
        print(f"official - qpic, {name}: Full {gap['full']:+.2f}, Rare {gap['rare']:+.2f}, "
              f"Non-rare {gap['non_rare']:+.2f} mAP points")
    base = results["official"]["default"]["full"]
    print(f"diagnostics (Default Full, official): without the GT-less images "
          f"{100 * (without_empty['default']['full'] - base):+.2f}, with np.arange thresholds "
          f"{100 * (numpy_thresholds['default']['full'] - base):+.2f} mAP points")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
