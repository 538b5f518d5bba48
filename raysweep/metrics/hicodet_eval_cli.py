"""Offline HICO-DET evaluation of saved predictions (the core of `raysweep eval hico-det`).

Inputs: a HICO-DET folder in QPIC's layout (the root with annotations/, or the annotations/ folder itself; only
trainval_hico.json, test_hico.json and corre_hico.npy are read), and a prediction list aligned with
test_hico.json in QPIC's post-processor layout (see `raysweep.metrics.hicodet_predictions`), as `.json`, or as
`.pkl` only with allow_pickle (unpickling executes code named in the file).
"""

from __future__ import annotations

import json
from pathlib import Path

from raysweep.data.hicodet import load_hicodet
from raysweep.errors import DataError
from raysweep.metrics.hicodet import PROTOCOLS, evaluate_hicodet, load_predictions

SETTINGS = (("default", "Default"), ("known_object", "Known-Object"))
GROUPS = ("full", "rare", "non_rare")


def evaluate_files(anno_dir: str | Path, pred_path: str | Path, protocol: str = "qpic", as_json: bool = False,
                   allow_pickle: bool = False) -> str:
    """Evaluate saved predictions; return the text to print (a table in %, or one JSON object).

    JSON: {"default": {"full", "rare", "non_rare"}, "known_object": {...}} as fractions in [0, 1]; a group with
    no class is null. Raises DataError (one line) for missing or malformed files and for an unknown protocol.
    """
    if protocol not in PROTOCOLS:
        raise DataError(f"protocol {protocol!r} is unknown; choose one of {', '.join(PROTOCOLS)}")
    annotations = load_hicodet(anno_dir)
    predictions = load_predictions(pred_path, allow_pickle=allow_pickle)
    result = evaluate_hicodet(annotations, predictions, protocol, source=str(pred_path))
    if as_json:
        return json.dumps({key: {g: result[key][g] for g in GROUPS} for key, _ in SETTINGS})
    return format_table(result)


def format_table(result: dict) -> str:
    """The human-readable summary of `evaluate_hicodet`'s result, in %."""
    counts = result["class_counts"]
    protocol = result["protocol"]
    title = "QPIC's Python evaluator" if protocol == "qpic" else "HICO-DET's HO-RCNN Matlab evaluation"
    neither = f", {counts['neither']} without training instances (Full only)" if counts["neither"] else ""
    lines = [
        f"HICO-DET mAP, protocol {protocol} ({title}): {result['num_images']} test images, {counts['full']} classes "
        f"({counts['rare']} rare, {counts['non_rare']} non-rare{neither})",
        f"{'setting':<14}{'Full':>8}{'Rare':>8}{'Non-rare':>10}{'mean max recall':>17}{'detections':>12}",
    ]
    for key, name in SETTINGS:
        row = result[key]
        cells = ["n/a" if row[g] is None else f"{100.0 * row[g]:.2f}" for g in (*GROUPS, "mean_max_recall")]
        lines.append(f"{name:<14}{cells[0]:>8}{cells[1]:>8}{cells[2]:>10}{cells[3]:>17}"
                     f"{result['num_detections'][key]:>12}")
    if result["known_object_is_extension"]:
        lines.append("Known-Object under qpic is raysweep's extension (QPIC has none): QPIC's top-100 detections and "
                     "matches, keeping only images where the class's object is annotated.")
    return "\n".join(lines)
