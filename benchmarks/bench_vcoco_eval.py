"""Vectorised V-COCO evaluator versus a loop in the official evaluator's structure, at V-COCO test scale, on one core.

    python3 benchmarks/bench_vcoco_eval.py                       # 4,946 images, 25 detections per image
    python3 benchmarks/bench_vcoco_eval.py --dets-per-image 100  # QPIC's 100 per image (the loop takes minutes)

The data are synthetic: 4,946 images with 1..4 GT persons (about 10 % ignored, i.e. not V-COCO annotated) and up to
three other objects, random multi-label actions (V-COCO's 26), role objects drawn from the image's boxes or missing;
per image `--dets-per-image` detections in the official structure, about a third of them near-copies of GT persons
(and of their role objects) so true positives occur, with NaN or zero role boxes here and there.

`reference_vcoco` below is written here in the way the official `vsrl_eval.py` is structured (per image, per action
and role, per detection in descending score order, with `covered` flags), not copied. The benchmark asserts that
the vectorised evaluator gives identical per-action and per-role APs (float32, compared with ==) and prints both
times and the ratio. The tests import `make_benchmark_data` and `reference_vcoco`.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from raysweep.data.vcoco import NUM_ACTIONS, ROLE_PAIRS, GroundTruthBuilder, VcocoGroundTruth  # noqa: E402
from raysweep.metrics.vcoco import evaluate_vcoco, voc_ap  # noqa: E402
from raysweep.metrics.vcoco_predictions import (  # noqa: E402
    VcocoDetections,
    detections_from_dicts,
    detections_to_dicts,
)


def _random_boxes(rng: np.random.Generator, n: int, size: float = 640.0) -> np.ndarray:
    xy = rng.uniform(0, size * 0.7, (n, 2))
    wh = rng.uniform(20, size * 0.3, (n, 2))
    return np.round(np.concatenate([xy, xy + wh], axis=1))


def make_benchmark_data(n_images: int = 4946, dets_per_image: int = 25, seed: int = 0
                        ) -> tuple[VcocoGroundTruth, VcocoDetections]:
    """Random V-COCO-like ground truth and official-structure detections (see the module docstring)."""
    rng = np.random.default_rng(seed)
    builder = GroundTruthBuilder()
    image_ids = rng.choice(600_000, n_images, replace=False) + 1
    parts = []
    for image_id in image_ids:
        n_person, n_obj = int(rng.integers(1, 5)), int(rng.integers(0, 4))
        boxes = _random_boxes(rng, n_person + n_obj)
        is_person = np.arange(n_person + n_obj) < n_person
        actions = np.full((len(boxes), NUM_ACTIONS), -1, dtype=np.int8)
        actions[:n_person] = rng.random((n_person, NUM_ACTIONS)) < 0.12
        actions[:n_person][rng.random(n_person) < 0.1] = -1  # ignored persons
        role_ids = np.full((len(boxes), NUM_ACTIONS, 2), -1, dtype=np.int64)
        for p in range(n_person):
            for a, r in ROLE_PAIRS:
                if actions[p, a] == 1 and rng.random() < 0.7:
                    role_ids[p, a, r] = int(rng.integers(0, len(boxes)))
        builder.add_image(int(image_id), boxes, is_person, actions, role_ids)

        d = dets_per_image
        det = VcocoDetections.empty(d)
        det.image_ids[:] = image_id
        near = rng.random(d) < 0.35
        src = rng.integers(0, n_person, d)
        det.person_boxes[:] = np.where(near[:, None], boxes[src] + rng.normal(0, 6, (d, 4)), _random_boxes(rng, d))
        det.agent_scores[:] = rng.random((NUM_ACTIONS, d)).astype(np.float32)
        det.agent_scores[rng.random((NUM_ACTIONS, d)) < 0.05] = np.nan
        for k, (a, r) in enumerate(ROLE_PAIRS):
            rid = role_ids[src, a, r]
            target = np.where((rid >= 0)[:, None], boxes[np.maximum(rid, 0)], np.nan)
            box = np.where(near[:, None], target + rng.normal(0, 6, (d, 4)), _random_boxes(rng, d))
            box[rng.random(d) < 0.1] = 0.0
            det.role_boxes[k] = box
            det.role_scores[k] = rng.random(d).astype(np.float32)
        parts.append(det)
    return builder.build("benchmark"), VcocoDetections.concatenate(parts)


def _overlap(boxes: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """The +1-pixel IoU of each row of `boxes` with `ref`, float32 as in the official code."""
    ixmin = np.maximum(boxes[:, 0], ref[0])
    iymin = np.maximum(boxes[:, 1], ref[1])
    ixmax = np.minimum(boxes[:, 2], ref[2])
    iymax = np.minimum(boxes[:, 3], ref[3])
    iw = np.maximum(ixmax - ixmin + np.float32(1), np.float32(0))
    ih = np.maximum(iymax - iymin + np.float32(1), np.float32(0))
    inters = iw * ih
    uni = ((ref[2] - ref[0] + np.float32(1)) * (ref[3] - ref[1] + np.float32(1))
           + (boxes[:, 2] - boxes[:, 0] + np.float32(1)) * (boxes[:, 3] - boxes[:, 1] + np.float32(1)) - inters)
    with np.errstate(divide="ignore", invalid="ignore"):
        return inters / uni


def _ap_from_lists(tp: list, fp: list, sc: list, npos: int) -> float:
    if npos == 0:
        return float("nan")
    if not sc:
        return 0.0
    order = np.argsort(np.array(sc, dtype=np.float32), kind="stable")[::-1]
    tp_c = np.cumsum(np.array(tp, dtype=np.float32)[order], dtype=np.float32)
    fp_c = np.cumsum(np.array(fp, dtype=np.float32)[order], dtype=np.float32)
    rec = tp_c / np.float32(npos)
    prec = tp_c / np.maximum(tp_c + fp_c, np.float32(np.finfo(np.float64).eps))
    return voc_ap(rec, prec)


def reference_vcoco(gt: VcocoGroundTruth, dets: VcocoDetections, threshold: float = 0.5
                    ) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Loop evaluation in the official structure: -> (agent AP [26], {scenario: role AP [25]}), float32 arithmetic."""
    by_image: dict[int, list[int]] = {}
    for k, image_id in enumerate(dets.image_ids.tolist()):
        by_image.setdefault(image_id, []).append(k)
    agent = [([], [], []) for _ in range(NUM_ACTIONS)]
    role = {s: [([], [], []) for _ in ROLE_PAIRS] for s in (1, 2)}
    npos = np.zeros(NUM_ACTIONS, dtype=np.int64)
    for i, image_id in enumerate(gt.image_ids.tolist()):
        p0, p1 = gt.person_offset[i], gt.person_offset[i + 1]
        gt_boxes = gt.person_boxes[p0:p1].astype(np.float32)
        gt_actions = gt.actions[p0:p1]
        ignore = (gt_actions == -1).any(axis=1)
        npos += (gt_actions == 1).sum(axis=0)
        rows = np.array(by_image.get(image_id, []), dtype=np.int64)
        boxes = dets.person_boxes[rows].astype(np.float32)

        def run(scores: np.ndarray, lists: tuple, is_right) -> None:
            scores = scores.astype(np.float32)
            valid = np.flatnonzero(~np.isnan(scores))
            covered = np.zeros(len(gt_boxes), dtype=bool)
            for j in valid[np.argsort(scores[valid], kind="stable")[::-1]]:
                if len(gt_boxes) == 0:
                    lists[0].append(0), lists[1].append(1), lists[2].append(scores[j])
                    continue
                overlaps = _overlap(gt_boxes, boxes[j])
                jmax = int(overlaps.argmax())
                if ignore[jmax]:
                    continue
                lists[2].append(scores[j])
                if overlaps[jmax] >= threshold and is_right(j, jmax) and not covered[jmax]:
                    covered[jmax] = True
                    lists[0].append(1), lists[1].append(0)
                else:
                    lists[0].append(0), lists[1].append(1)

        for a in range(NUM_ACTIONS):
            run(dets.agent_scores[a, rows], agent[a], lambda j, jmax, a=a: gt_actions[jmax, a] == 1)
        for k, (a, r) in enumerate(ROLE_PAIRS):
            gt_roles = gt.role_boxes[p0:p1, a, r].astype(np.float32)
            pred_roles = dets.role_boxes[k, rows].astype(np.float32)
            for s in (1, 2):
                def right(j: int, jmax: int, a: int = a, s: int = s) -> bool:
                    if gt_actions[jmax, a] != 1:
                        return False
                    if np.isnan(gt_roles[jmax]).all():
                        if s == 2:
                            return True
                        return bool((pred_roles[j] == 0).all() or np.isnan(pred_roles[j]).all())
                    return bool(_overlap(gt_roles[jmax][None], pred_roles[j])[0] >= threshold)

                run(dets.role_scores[k, rows], role[s][k], right)
    agent_ap = np.array([_ap_from_lists(*agent[a], int(npos[a])) for a in range(NUM_ACTIONS)], dtype=np.float32)
    role_ap = {s: np.array([_ap_from_lists(*role[s][k], int(npos[a])) for k, (a, _) in enumerate(ROLE_PAIRS)],
                           dtype=np.float32) for s in (1, 2)}
    return agent_ap, role_ap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4946)
    parser.add_argument("--dets-per-image", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-loop", action="store_true", help="time only the vectorised evaluator")
    args = parser.parse_args()
    print(f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} CPUs (1 thread used)")
    t = time.perf_counter()
    gt, dets = make_benchmark_data(args.images, args.dets_per_image, args.seed)
    print(f"data: {gt.num_images} images, {len(gt.person_boxes)} GT persons, {len(dets)} detections "
          f"({time.perf_counter() - t:.1f} s to generate)")
    dicts = detections_to_dicts(dets)
    t = time.perf_counter()
    detections_from_dicts(dicts)
    print(f"reading {len(dicts)} official-structure dicts into arrays: {time.perf_counter() - t:.2f} s")
    times = {}
    for numerics in ("float32", "float64"):
        t = time.perf_counter()
        result = evaluate_vcoco(gt, dets, numerics=numerics)
        times[numerics] = time.perf_counter() - t
        print(f"vectorised ({numerics}): {times[numerics]:.2f} s  agent {100 * result.means['agent_ap']:.3f}  "
              f"S1 {100 * result.means['role_ap_s1']:.3f}  S2 {100 * result.means['role_ap_s2']:.3f}")
        if numerics == "float32":
            fast = result
    if args.skip_loop:
        return
    t = time.perf_counter()
    agent_ap, role_ap = reference_vcoco(gt, dets)
    loop = time.perf_counter() - t
    same = (np.array_equal(agent_ap, fast.agent_ap, equal_nan=True)
            and all(np.array_equal(role_ap[s], fast.role_ap[s], equal_nan=True) for s in (1, 2)))
    print(f"loop (official structure, float32): {loop:.1f} s; identical APs: {same}; "
          f"speed-up {loop / times['float32']:.0f}x")
    if not same:
        raise SystemExit("the vectorised evaluator and the loop disagree")


if __name__ == "__main__":
    main()
