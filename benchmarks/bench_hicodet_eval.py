"""Vectorised HICO-DET evaluator versus a loop-style per-image reference, at full HICO-DET test scale, on one core.

    python3 benchmarks/bench_hicodet_eval.py                      # both protocols, 9,658 images, ~33k GT pairs
    python3 benchmarks/bench_hicodet_eval.py --images 500 --pairs 1700 --protocol qpic

The data are synthetic: a random valid correct matrix with 600 ones over 117 verbs x 80 objects (a HICO-like
vocabulary, not the real class list), long-tailed test and training counts (so rare and non-rare classes exist),
112 test images without annotation, and random predictions in QPIC's post-processor layout (100 queries, 200
boxes, [100, 117] verb scores, float32), about a third of them near-copies of GT pairs so true positives occur.

The references below are written here, loop by loop in the way QPIC's `hico_eval.py` and HO-RCNN's Matlab
script are structured (per image, per detection, per GT pair), not copied. The benchmark asserts that the
vectorised evaluator gives identical numbers (per-class APs and every summary value, compared with ==) and prints
both times and the ratio. The tests import `make_benchmark_data`, `reference_qpic` and `reference_official`.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from raysweep.data.hicodet import (  # noqa: E402
    NUM_OBJECTS,
    NUM_VERBS,
    HicoDetAnnotations,
    coco_id_to_index,
    index_to_coco_id,
    known_objects,
    triplet_counts,
)
from raysweep.metrics.hicodet import evaluate_hicodet  # noqa: E402

# ----------------------------------------------------------------------------------------------------------------
# Synthetic data at HICO-DET scale


def make_correct_mat(rng: np.random.Generator, n_classes: int = 600) -> np.ndarray:
    """Random [117, 80] bool with `n_classes` ones; every verb and every object takes part in some class."""
    mat = np.zeros((NUM_VERBS, NUM_OBJECTS), dtype=bool)
    mat[np.arange(NUM_VERBS), rng.integers(0, NUM_OBJECTS, NUM_VERBS)] = True
    for obj in np.flatnonzero(~mat.any(axis=0)):
        mat[rng.integers(0, NUM_VERBS), obj] = True
    free = np.flatnonzero(~mat.ravel())
    mat.ravel()[rng.choice(free, n_classes - int(mat.sum()), replace=False)] = True
    return mat


def _long_tail(rng: np.random.Generator, n: int, total: int, minimum: int) -> np.ndarray:
    weights = rng.lognormal(0.0, 1.6, n)
    return minimum + rng.multinomial(total - minimum * n, weights / weights.sum())


def _random_box(rng: np.random.Generator, width: int, height: int) -> list[int]:
    w, h = rng.integers(20, width // 2), rng.integers(20, height // 2)
    x, y = rng.integers(0, width - w), rng.integers(0, height - h)
    return [int(x), int(y), int(x + w), int(y + h)]


def make_benchmark_data(seed: int = 0, n_images: int = 9658, n_pairs: int = 33405, n_empty: int = 112,
                        n_classes: int = 600, n_queries: int = 100, width: int = 640,
                        height: int = 480) -> tuple[HicoDetAnnotations, list[dict]]:
    """In-memory annotations (test + train records, correct matrix) and aligned random predictions (float32)."""
    rng = np.random.default_rng(seed)
    correct = make_correct_mat(rng, n_classes)
    verbs, objects = np.nonzero(correct)
    n_classes = len(verbs)
    hoi_id = {(int(v), int(o)): i + 1 for i, (v, o) in enumerate(zip(verbs, objects))}

    # Test GT: long-tailed class counts, spread over the non-empty images (each gets at least one pair).
    pair_class = np.repeat(np.arange(n_classes), _long_tail(rng, n_classes, max(n_pairs, 2 * n_classes), 2))
    rng.shuffle(pair_class)
    filled = rng.permutation(n_images)[: n_images - n_empty]
    pair_image = np.concatenate([filled, rng.choice(filled, len(pair_class) - len(filled))])
    by_image = np.argsort(pair_image, kind="stable")
    bounds = np.searchsorted(pair_image[by_image], np.arange(n_images + 1))
    test = []
    for i in range(n_images):
        annotations, hois = [], []
        for c in pair_class[by_image[bounds[i]:bounds[i + 1]]]:
            verb, obj = int(verbs[c]), int(objects[c])
            previous = hois[-1] if hois else None
            if previous is not None and annotations[previous["object_id"]]["category_id"] == index_to_coco_id(obj) \
                    and rng.random() < 0.5:
                sub_id, obj_id = previous["subject_id"], previous["object_id"]  # another verb on the same pair
            else:
                annotations.append({"bbox": _random_box(rng, width, height), "category_id": 1})
                annotations.append({"bbox": _random_box(rng, width, height), "category_id": index_to_coco_id(obj)})
                sub_id, obj_id = len(annotations) - 2, len(annotations) - 1
            hois.append({"subject_id": sub_id, "object_id": obj_id, "category_id": verb + 1,
                         "hoi_category_id": hoi_id[(verb, obj)]})
        test.append({"file_name": f"HICO_test2015_{i + 1:08d}.jpg", "annotations": annotations,
                     "hoi_annotation": hois})

    # Training counts: about 23 % of the classes rare (< 10), as in HICO-DET's 138 / 600.
    train_counts = np.where(rng.random(n_classes) < 0.23, rng.integers(1, 10, n_classes),
                            rng.integers(10, 200, n_classes))
    train = []
    for c in range(n_classes):
        verb, obj = int(verbs[c]), int(objects[c])
        train.append({"file_name": f"HICO_train2015_{c + 1:08d}.jpg",
                      "annotations": [{"bbox": [0, 0, 10, 10], "category_id": 1},
                                      {"bbox": [5, 5, 20, 20], "category_id": index_to_coco_id(obj)}],
                      "hoi_annotation": [{"subject_id": 0, "object_id": 1, "category_id": verb + 1,
                                          "hoi_category_id": hoi_id[(verb, obj)]}] * int(train_counts[c])})
    annotations = HicoDetAnnotations(root=Path("<memory>"), train=train, test=test, correct_mat=correct)
    return annotations, [_random_prediction(rng, rec, n_queries, width, height) for rec in test]


def _random_prediction(rng: np.random.Generator, record: dict, n_queries: int, width: int, height: int) -> dict:
    """QPIC-style output: queries 0..n-1 own boxes n+q (subject q, object n+q); some copy GT pairs with jitter."""
    sub_boxes = np.array([_random_box(rng, width, height) for _ in range(n_queries)], dtype=np.float64)
    obj_boxes = np.array([_random_box(rng, width, height) for _ in range(n_queries)], dtype=np.float64)
    obj_labels = rng.integers(0, NUM_OBJECTS, n_queries)
    obj_scores = rng.uniform(0.05, 1.0, n_queries)
    verb_scores = rng.random((n_queries, NUM_VERBS)) ** 4 * obj_scores[:, None]
    boxes = record["annotations"]
    for q, hoi in enumerate(record["hoi_annotation"][: n_queries // 3]):
        sub, obj = boxes[hoi["subject_id"]], boxes[hoi["object_id"]]
        sub_boxes[q] = np.array(sub["bbox"]) + rng.normal(0, 6, 4)
        obj_boxes[q] = np.array(obj["bbox"]) + rng.normal(0, 6, 4)
        obj_labels[q] = coco_id_to_index(obj["category_id"]) if rng.random() < 0.9 else rng.integers(0, NUM_OBJECTS)
        verb_scores[q, hoi["category_id"] - 1] = rng.uniform(0.3, 1.0) * obj_scores[q]
    return {
        "boxes": np.concatenate([sub_boxes, obj_boxes]).astype(np.float32),
        "labels": np.concatenate([np.zeros(n_queries, dtype=np.int64), obj_labels]),
        "verb_scores": verb_scores.astype(np.float32),
        "sub_ids": np.arange(n_queries),
        "obj_ids": np.arange(n_queries, 2 * n_queries),
    }


# ----------------------------------------------------------------------------------------------------------------
# Loop-style references


def _gt_tables(annotations: HicoDetAnnotations, box_dtype):
    """Per image: boxes [(xyxy, label)], hois [(sub, obj, verb)]; classes in first-appearance order; GT counts."""
    images, classes, n_gt = [], [], {}
    for rec in annotations.test:
        boxes = [(tuple(box_dtype(x) for x in a["bbox"]), coco_id_to_index(a["category_id"]))
                 for a in rec["annotations"]]
        hois = [(h["subject_id"], h["object_id"], h["category_id"] - 1) for h in rec["hoi_annotation"]]
        for sub, obj, verb in hois:
            cls = (boxes[sub][1], boxes[obj][1], verb)
            if cls not in n_gt:
                n_gt[cls] = 0
                classes.append(cls)
            n_gt[cls] += 1
        images.append((boxes, hois))
    return images, classes, n_gt


def _iou_qpic_scalar(a: tuple, b: tuple) -> np.float32:
    """QPIC-style IoU of two float32 boxes: +1 areas, strict overlap test."""
    one = np.float32(1)
    sum_area = (a[2] - a[0] + one) * (a[3] - a[1] + one) + (b[2] - b[0] + one) * (b[3] - b[1] + one)
    left, right = max(a[1], b[1]), min(a[3], b[3])
    top, bottom = max(a[0], b[0]), min(a[2], b[2])
    if left >= right or top >= bottom:
        return np.float32(0)
    inter = (right - left + one) * (bottom - top + one)
    return inter / (sum_area - inter)


def _ap_loop(scores: list, tps: list, n_gt: int, thresholds, stable: bool, score_dtype) -> tuple[float, float]:
    if not tps:
        return 0.0, 0.0
    score = np.array(scores, dtype=score_dtype)
    order = np.argsort(-score, kind="stable") if stable else np.argsort(-score)
    tp = np.cumsum(np.array(tps)[order])
    fp = np.cumsum(1 - np.array(tps)[order])
    rec = tp / n_gt
    prec = tp / (fp + tp)
    ap = 0.0
    for t in thresholds:
        ap = ap + (np.max(prec[rec >= t]) if np.sum(rec >= t) > 0 else 0) / 11.0
    return float(ap), float(np.amax(rec))


def _summarise(classes: list, aps: dict, recalls: dict, rare: set, non_rare: set) -> dict:
    def mean(values):
        return float(np.mean(values)) if values else None

    return {"full": mean([aps[c] for c in classes]), "rare": mean([aps[c] for c in classes if c in rare]),
            "non_rare": mean([aps[c] for c in classes if c in non_rare]),
            "mean_max_recall": mean([recalls[c] for c in classes])}


def reference_qpic(annotations: HicoDetAnnotations, predictions: list[dict]) -> dict:
    """QPIC's protocol, one image and one detection at a time (Known-Object: our KO filter on its matches)."""
    images, classes, n_gt = _gt_tables(annotations, np.float32)
    class_set = set(classes)
    known = known_objects(annotations.test)
    found = {setting: defaultdict(lambda: ([], [])) for setting in ("default", "known_object")}
    correct = annotations.correct_mat
    for i, ((gt_boxes, gt_hois), pred) in enumerate(zip(images, predictions)):
        labels = np.asarray(pred["labels"])
        scores = np.asarray(pred["verb_scores"], dtype=np.float32)
        k = scores.shape[0]
        verbs = np.tile(np.arange(NUM_VERBS), k)
        subs = np.repeat(np.asarray(pred["sub_ids"]), NUM_VERBS)
        objs = np.repeat(np.asarray(pred["obj_ids"]), NUM_VERBS)
        masked = (scores.ravel() * correct[verbs, labels[objs]]).tolist()
        ranked = sorted(range(len(masked)), key=lambda j: masked[j], reverse=True)[:100]  # stable
        if not gt_boxes:
            continue  # QPIC means to count these as false positives, but its membership test never succeeds
        boxes = [tuple(np.float32(x) for x in b) for b in np.asarray(pred["boxes"], dtype=np.float32)]
        matches = defaultdict(dict)  # pred box -> {gt box: iou}
        for g, (gt_box, gt_label) in enumerate(gt_boxes):
            for p, box in enumerate(boxes):
                if labels[p] == gt_label:
                    iou = _iou_qpic_scalar(gt_box, box)
                    if iou >= 0.5:
                        matches[p][g] = float(iou)
        taken = [False] * len(gt_hois)
        for j in ranked:
            sub, obj, verb = int(subs[j]), int(objs[j]), int(verbs[j])
            best, best_overlap = None, 0.0
            for h, (gt_sub, gt_obj, gt_verb) in enumerate(gt_hois):
                if gt_verb == verb and gt_sub in matches[sub] and gt_obj in matches[obj]:
                    overlap = min(matches[sub][gt_sub], matches[obj][gt_obj])
                    if overlap > best_overlap:
                        best, best_overlap = h, overlap
            cls = (int(labels[sub]), int(labels[obj]), verb)
            if cls not in class_set:
                continue
            tp = 0
            if best is not None and not taken[best]:
                taken[best] = True
                tp = 1
            for setting in ("default", "known_object"):
                if setting == "known_object" and not known[i, cls[1]]:
                    continue
                found[setting][cls][0].append(masked[j])
                found[setting][cls][1].append(tp)
    counts = triplet_counts(annotations.train)
    rare = {c for c, n in counts.items() if n < 10}
    non_rare = {c for c, n in counts.items() if n >= 10}
    result = {}
    for setting in ("default", "known_object"):
        aps, recalls = {}, {}
        for cls in classes:
            scores_c, tps_c = found[setting][cls]
            aps[cls], recalls[cls] = _ap_loop(scores_c, tps_c, n_gt[cls], np.arange(0, 1.1, 0.1), False, np.float32)
        result[setting] = _summarise(classes, aps, recalls, rare, non_rare)
        result[f"ap_{setting}"] = [aps[c] for c in classes]
    return result


def _matlab_colon_0_01_1() -> list[float]:
    """0:0.1:1 as Matlab builds it: a + k*d for the first half, b - k*d for the second, (a+b)/2 in the middle."""
    out = [0.0] * 11
    for k in range(6):
        out[k] = 0.0 + k * 0.1
        out[10 - k] = 1.0 - k * 0.1
    out[5] = 0.5
    return out


def reference_official(annotations: HicoDetAnnotations, predictions: list[dict]) -> dict:
    """The HO-RCNN Matlab protocol, one class and one detection at a time."""
    images, classes, n_gt = _gt_tables(annotations, float)
    class_set = set(classes)
    known = known_objects(annotations.test)
    valid_verbs = {o: [v for v in range(NUM_VERBS) if (0, o, v) in class_set] for o in range(NUM_OBJECTS)}
    # Detection "files": per class, rows (image, subject box, object box, score) in submission order.
    detections = defaultdict(list)
    for i, pred in enumerate(predictions):
        boxes = np.asarray(pred["boxes"], dtype=np.float64).tolist()
        labels = np.asarray(pred["labels"]).tolist()
        scores = np.asarray(pred["verb_scores"], dtype=np.float64).tolist()
        for q, (sub, obj) in enumerate(zip(np.asarray(pred["sub_ids"]).tolist(), np.asarray(pred["obj_ids"]).tolist())):
            if labels[sub] != 0:
                continue
            for verb in valid_verbs[labels[obj]]:
                detections[(0, labels[obj], verb)].append((i, boxes[sub], boxes[obj], scores[q][verb]))
    # Ground truth per class and image, 1-based (0-based + 1).
    gt = defaultdict(lambda: defaultdict(list))
    for i, (gt_boxes, gt_hois) in enumerate(images):
        for sub, obj, verb in gt_hois:
            cls = (gt_boxes[sub][1], gt_boxes[obj][1], verb)
            gt[cls][i].append(([x + 1 for x in gt_boxes[sub][0]], [x + 1 for x in gt_boxes[obj][0]]))

    def overlap(det: list, ref: list) -> float | None:
        iw = min(det[2], ref[2]) - max(det[0], ref[0]) + 1
        ih = min(det[3], ref[3]) - max(det[1], ref[1]) + 1
        if iw > 0 and ih > 0:
            ua = (det[2] - det[0] + 1) * (det[3] - det[1] + 1) + (ref[2] - ref[0] + 1) * (ref[3] - ref[1] + 1) - iw * ih
            return iw * ih / ua
        return None

    counts = triplet_counts(annotations.train)
    rare = {c for c in classes if counts.get(c, 0) < 10}
    non_rare = set(classes) - rare
    thresholds = _matlab_colon_0_01_1()
    result = {}
    for setting in ("default", "known_object"):
        aps, recalls = {}, {}
        for cls in classes:
            rows = [r for r in detections[cls] if setting == "default" or known[r[0], cls[1]]]
            rows = sorted(rows, key=lambda r: -r[3])  # stable, like Matlab's sort
            detected = {i: [False] * len(pairs) for i, pairs in gt[cls].items()}
            tps = []
            for image, sub_box, obj_box, _ in rows:
                sub_box = [x + 1 for x in sub_box]
                obj_box = [x + 1 for x in obj_box]
                best, best_overlap = None, -math.inf
                for j, (gt_sub, gt_obj) in enumerate(gt[cls].get(image, [])):
                    ov_sub, ov_obj = overlap(sub_box, gt_sub), overlap(obj_box, gt_obj)
                    if ov_sub is not None and ov_obj is not None and min(ov_sub, ov_obj) > best_overlap:
                        best, best_overlap = j, min(ov_sub, ov_obj)
                if best_overlap >= 0.5 and not detected[image][best]:
                    detected[image][best] = True
                    tps.append(1)
                else:
                    tps.append(0)
            aps[cls], recalls[cls] = _ap_loop([r[3] for r in rows], tps, n_gt[cls], thresholds, True, np.float64)
        result[setting] = _summarise(classes, aps, recalls, rare, non_rare)
        result[f"ap_{setting}"] = [aps[c] for c in classes]
    return result


REFERENCES = {"qpic": reference_qpic, "official": reference_official}


def ours_as_reference_layout(result: dict) -> dict:
    """Our result reduced to the reference's keys, for an exact == comparison."""
    out = {setting: result[setting] for setting in ("default", "known_object")}
    out["ap_default"] = [c["ap_default"] for c in result["per_class"]]
    out["ap_known_object"] = [c["ap_known_object"] for c in result["per_class"]]
    return out


# ----------------------------------------------------------------------------------------------------------------


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=9658)
    parser.add_argument("--pairs", type=int, default=33405)
    parser.add_argument("--empty", type=int, default=112)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--protocol", nargs="+", choices=sorted(REFERENCES), default=["qpic", "official"])
    args = parser.parse_args(argv)

    print(f"python {platform.python_version()}, numpy {np.__version__}, {_cpu_name()}, one process, threads pinned to "
          f"1 (OMP/OPENBLAS/MKL_NUM_THREADS={os.environ['OMP_NUM_THREADS']}), load average {os.getloadavg()[0]:.1f}")
    start = time.perf_counter()
    annotations, predictions = make_benchmark_data(args.seed, args.images, args.pairs, args.empty)
    n_pairs = sum(len(r["hoi_annotation"]) for r in annotations.test)
    n_empty = sum(not r["hoi_annotation"] for r in annotations.test)
    print(f"data: {len(annotations.test)} test images ({n_empty} without annotation), {n_pairs} GT pairs, "
          f"{annotations.num_classes} classes, {len(predictions[0]['verb_scores'])} queries x {NUM_VERBS} verbs "
          f"per image (built in {time.perf_counter() - start:.1f} s)")
    ok = True
    for protocol in args.protocol:
        wall, cpu = time.perf_counter(), time.process_time()
        ours = evaluate_hicodet(annotations, predictions, protocol)
        wall_ours, cpu_ours = time.perf_counter() - wall, time.process_time() - cpu
        wall, cpu = time.perf_counter(), time.process_time()
        ref = REFERENCES[protocol](annotations, predictions)
        wall_ref, cpu_ref = time.perf_counter() - wall, time.process_time() - cpu
        same = ours_as_reference_layout(ours) == ref
        ok &= same
        d, k = ours["default"], ours["known_object"]
        print(f"[{protocol}] vectorised {wall_ours:6.2f} s wall / {cpu_ours:6.2f} s CPU | reference {wall_ref:7.2f} s "
              f"wall / {cpu_ref:7.2f} s CPU | ratio {wall_ref / wall_ours:5.1f}x wall, "
              f"{cpu_ref / cpu_ours:5.1f}x CPU | identical: {same}")
        print(f"    {ours['num_detections']['default']} detections ({ours['num_detections']['known_object']} "
              f"Known-Object) | Default full/rare/non-rare {d['full']:.6f}/{d['rare']:.6f}/{d['non_rare']:.6f} | "
              f"KO {k['full']:.6f}/{k['rare']:.6f}/{k['non_rare']:.6f}")
        if not same:
            mine = ours_as_reference_layout(ours)
            diff = [c for c, (a, b) in enumerate(zip(mine["ap_default"], ref["ap_default"])) if a != b]
            print(f"  MISMATCH: summaries {mine['default']} vs {ref['default']}; classes differing: {diff[:10]}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
