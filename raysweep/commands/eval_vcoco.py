"""`raysweep eval vcoco`: agent AP and Scenario 1 / 2 role AP of saved detections in the official structure."""

from __future__ import annotations

import json
import math
from pathlib import Path

from raysweep.errors import DataError, UserError

GROUND_TRUTHS = ("auto", "qpic", "official")
SCENARIO_CHOICES = ("1", "2", "both")


def load_ground_truth(anno_dir: str | Path, gt: str = "auto", persons_without_hoi: str = "ignore"):
    """The test ground truth from `anno_dir`: QPIC's layout (test_vcoco.json) or the official files
    (vcoco_test.json, instances_vcoco_all_2014.json, vcoco_test.ids, directly or in the v-coco repository's
    data/ layout). "auto" takes the official files when all three are there."""
    from raysweep.data.vcoco import (
        TEST_FILE,
        ground_truth_from_records,
        load_test_records,
        resolve_root,
    )
    from raysweep.data.vcoco_official import (
        IDS_FILE,
        INSTANCES_JSON,
        VCOCO_JSON,
        find_official_files,
        load_official_ground_truth,
    )

    folder = Path(anno_dir)
    if not folder.is_dir():
        raise DataError(f"--anno-dir {str(folder)!r} is not a directory")
    official = find_official_files(folder)
    if gt == "official" or (gt == "auto" and official is not None):
        if official is None:
            raise DataError(f"--gt official: {str(folder)!r} lacks the official files ({VCOCO_JSON[0]}, "
                            f"{INSTANCES_JSON[0]}, {IDS_FILE[0]}, side by side or in v-coco's data/ layout)")
        return load_official_ground_truth(*official)
    root = resolve_root(folder)
    if not (root / TEST_FILE).is_file():
        raise DataError(f"--anno-dir {str(folder)!r} has neither QPIC's {TEST_FILE} nor the official V-COCO files "
                        f"({VCOCO_JSON[0]}, {INSTANCES_JSON[0]}, {IDS_FILE[0]})")
    return ground_truth_from_records(load_test_records(root), persons_without_hoi=persons_without_hoi,
                                     source=f"qpic-layout {TEST_FILE}")


PROTOCOLS = ("official", "qpic")


def run(anno_dir: str, pred: str, scenario: str = "both", as_json: bool = False, gt: str = "auto",
        numerics: str = "float32", persons_without_hoi: str = "ignore", allow_pickle: bool = False,
        protocol: str = "official") -> None:
    from raysweep.metrics.vcoco import NUMERICS, evaluate_vcoco
    from raysweep.metrics.vcoco_predictions import (
        detections_from_dicts,
        load_predictions,
    )

    for option, value, allowed in (("--scenario", scenario, SCENARIO_CHOICES), ("--gt", gt, GROUND_TRUTHS),
                                   ("--numerics", numerics, NUMERICS), ("--protocol", protocol, PROTOCOLS),
                                   ("--persons-without-hoi", persons_without_hoi, ("ignore", "negative"))):
        if value not in allowed:
            raise UserError(f"{option}: {value!r} is not one of {', '.join(allowed)}")
    if protocol == "qpic":
        print(run_qpic(anno_dir, pred, as_json, allow_pickle))
        return
    ground_truth = load_ground_truth(anno_dir, gt, persons_without_hoi)
    dets = detections_from_dicts(load_predictions(pred, allow_pickle=allow_pickle), source=str(pred))
    result = evaluate_vcoco(ground_truth, dets, numerics=numerics)
    scenarios = (1, 2) if scenario == "both" else (int(scenario),)
    if as_json:
        summary = result.summary()
        for s in {1, 2} - set(scenarios):
            for key in (f"role_ap_s{s}", f"role_ap_s{s}_with_point"):
                summary.pop(key)
            summary["role_ap_per_role"].pop(f"scenario_{s}")
        print(json.dumps(summary))
        return
    print(format_table(result, scenarios))


def format_table(result, scenarios: tuple[int, ...] = (1, 2)) -> str:
    """The papers' layout (role AP per scenario, point-instr left out) plus the official prints, in %."""
    m = result.means

    def pct(x: float) -> str:
        return "n/a" if math.isnan(x) else f"{100 * x:.2f}"

    lines = [(f"V-COCO, ground truth: {result.ground_truth} ({result.num_images} images, {result.num_detections} "
              f"detections; numerics {result.numerics})"),
             f"{'':<28}" + "".join(f"{f'Scenario {s}':>12}" for s in scenarios),
             f"{'role AP (24, papers)':<28}" + "".join(f"{pct(m[f'role_ap_s{s}']):>12}" for s in scenarios),
             f"{'role AP (25, official)':<28}" + "".join(f"{pct(m[f'role_ap_s{s}_with_point']):>12}"
                                                         for s in scenarios),
             (f"agent AP (official, sum / 26): {pct(m['agent_ap'])}   (mean over actions with positives: "
              f"{pct(m['agent_ap_nanmean'])})")]
    return "\n".join(lines)


def run_qpic(anno_dir: str, pred: str, as_json: bool, allow_pickle: bool) -> str:
    """QPIC's internal evaluator: QPIC-layout annotations, predictions in QPIC's post-processor layout aligned with
    test_vcoco.json (per image boxes, labels, verb_scores [k, 29], sub_ids, obj_ids)."""
    from raysweep.data.vcoco import load_vcoco
    from raysweep.metrics.vcoco_predictions import load_predictions
    from raysweep.metrics.vcoco_qpic import (
        evaluate_vcoco_qpic,
        validate_qpic_predictions,
    )

    ann = load_vcoco(anno_dir)
    preds = validate_qpic_predictions(load_predictions(pred, allow_pickle=allow_pickle), len(ann.test), str(pred))
    result = evaluate_vcoco_qpic(ann.test, preds, ann.correct_mat)
    if as_json:
        from raysweep.data.vcoco import VERBS

        return json.dumps({"protocol": "qpic", "map_all": result["map_all"], "map_thesis": result["map_thesis"],
                           "ap_per_verb": {v: (None if math.isnan(x) else float(x)) for v, x in zip(VERBS, result["ap"])}})
    return (f"V-COCO, QPIC's internal evaluator (neither Scenario 1 nor 2; not what the papers publish), "
            f"{len(ann.test)} images\nmAP all {100 * result['map_all']:.2f}   mAP thesis (24 verbs) "
            f"{100 * result['map_thesis']:.2f}")
