"""Offline HICO evaluation of a saved score matrix against DEFR's `anno.pkl` (the core of `raysweep eval hico`).

Inputs:
- `anno.pkl`: DEFR's pickled dict (`raysweep.data.hico`) with `files_test` [N_test], `anno_test` [C, N_test] and
  `anno_train` [C, N_train] (class-major, labels in {1, 0, -1, -2}; NaN is read as -2). `hoi_list` and
  `files_train` are never read. `anno_train` is needed only for Few@k lists derived from training counts.
- scores: `.npy` (or `.npz` holding one array) of shape [N_test, C]; row i scores the image `files_test[i]`.
- optionally a Few@k lists JSON (see `raysweep.metrics.hico.load_few_shot_lists`), or "defr" / "derived"; the default
  is DEFR's hard-coded lists for 600-class HICO, else lists derived from anno_train.
"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import numpy as np

from raysweep.data.hico import HicoAnnotations, load_hico
from raysweep.errors import DataError
from raysweep.metrics.hico import (
    FEW_SHOT_DERIVED,
    FEW_SHOT_KEYS,
    FEW_SHOT_NAMED,
    HICO_NUM_CLASSES,
    INTERPOLATIONS,
    TIE_DESCRIPTIONS,
    TIE_RULES,
    Interpolation,
    TieRule,
    evaluate_hico,
    few_shot_source,
    hico_labels,
    load_few_shot_lists,
)

SCORE_SUFFIXES: tuple[str, ...] = (".npy", ".npz")


def load_test_and_train(path: str | Path, need_train: bool, allow_pickle: bool = False) -> HicoAnnotations:
    """anno.pkl read by the one HICO reader (`raysweep.data.hico.load_hico`, restricted unless `allow_pickle`), with
    the test split that evaluation needs: at least one class and one test image. `files_train` and `hoi_list` are
    never needed; `anno_train` only for Few@k lists derived from training counts (`need_train`)."""
    anno = load_hico(path, allow_pickle, train=need_train, train_files=False, class_names=False)
    if anno.labels_test.shape[0] == 0 or anno.labels_test.shape[1] == 0:
        raise DataError(f"{anno.path}: anno_test has shape {anno.labels_test.T.shape} (classes x test images): nothing "
                        f"to evaluate; it needs at least one class and one test image")
    return anno


def load_scores(path: str | Path) -> np.ndarray:
    """Read a score matrix from `.npy` or a single-array `.npz` (no pickled objects); DataError when unreadable."""
    path = Path(path)
    if path.suffix not in SCORE_SUFFIXES:
        raise DataError(f"{path}: scores must be a {' or '.join(SCORE_SUFFIXES)} file, got suffix {path.suffix!r}")
    if not path.is_file():
        raise DataError(f"{path}: scores file not found")
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                names = list(loaded.files)
                if len(names) != 1:
                    raise DataError(f"{path}: an .npz scores file must hold exactly one array, found {names}")
                loaded = loaded[names[0]]
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: cannot read scores ({type(exc).__name__}: {exc})") from None
    if loaded.dtype.kind not in "iuf":
        raise DataError(f"{path}: scores must be numeric, got dtype {loaded.dtype}")
    return loaded


def _check_scores(path: Path, scores: np.ndarray, num_images: int, num_classes: int) -> None:
    expected = (num_images, num_classes)
    if scores.shape != expected:
        hint = ""
        if scores.shape == expected[::-1]:
            hint = " (it looks transposed; rows must be test images in files_test order)"
        raise DataError(f"{path}: scores have shape {scores.shape}, expected [N_test, C] = {expected}{hint}")
    bad = ~np.isfinite(scores)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise DataError(
            f"{path}: scores contain {int(bad.sum())} NaN/inf value(s), first at image {row}, class {col} "
            f"({scores[row, col]})"
        )


def evaluate_files(
    anno_path: str | Path,
    scores_path: str | Path,
    few_shot_lists_path: str | Path | None = None,
    as_json: bool = False,
    interpolation: Interpolation = "11point",
    ties: TieRule = "index",
    allow_pickle: bool = False,
) -> str:
    """Evaluate saved scores against anno.pkl; return the text to print (a table, or one JSON object).

    Few@k lists (`few_shot_lists_path`): a lists JSON file, "defr" (DEFR's lists) or "derived" (from anno_train:
    classes with 1..k positive training images); by default DEFR's lists when anno.pkl has the 600 HICO classes,
    else derived. The JSON object has keys full, few@1, few@5, few@10, known_object, per_class_ap (Default setting)
    as fractions, few_shot_sizes, few_shot_source and ties; NaN is written as null. anno.pkl is read as
    `load_test_and_train` says (restricted unless `allow_pickle`). Raises DataError on bad inputs.
    """
    if interpolation not in INTERPOLATIONS:
        raise DataError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}")
    if ties not in TIE_RULES:
        raise DataError(f"--ties {ties!r} is not a tie rule; allowed: {', '.join(TIE_RULES)}")
    anno_path, scores_path = Path(anno_path), Path(scores_path)
    setting = None if few_shot_lists_path is None else str(few_shot_lists_path)
    if setting is not None and setting not in FEW_SHOT_NAMED:
        load_few_shot_lists(setting, origin="--few-shot-lists")  # a bad file fails before anno.pkl is read
    anno = load_test_and_train(anno_path, need_train=setting in ("derived", None), allow_pickle=allow_pickle)
    num_images, num_classes = anno.labels_test.shape
    scores = load_scores(scores_path)
    _check_scores(scores_path, scores, num_images, num_classes)
    if setting is None:
        setting = "defr" if num_classes == HICO_NUM_CLASSES else "derived"
    if setting == "defr" and num_classes != HICO_NUM_CLASSES:
        raise DataError(f"--few-shot-lists defr: DEFR's lists index the {HICO_NUM_CLASSES} HICO classes, but "
                        f"{anno_path} has {num_classes}; give a lists file or 'derived'")
    if setting in FEW_SHOT_NAMED:
        lists, name = setting, None
    else:
        lists, name = load_few_shot_lists(setting, num_classes, "--few-shot-lists"), few_shot_source(num_classes, setting)

    result = evaluate_hico(scores, anno.labels_test, anno.labels_train, lists, interpolation, few_shot_name=name,
                           ties=ties)
    if as_json:
        return json.dumps(_json_safe(result))
    source = result["few_shot_source"]
    if source == FEW_SHOT_DERIVED:
        source += " from anno_train"
    return format_table(result, num_images, num_classes, interpolation, source, ties)


def _json_safe(value: object) -> object:
    """NaN -> None so the output is strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def format_table(result: dict, num_images: int, num_classes: int, interpolation: str, few_source: str,
                 ties: str = "index") -> str:
    """The human-readable summary of `evaluate_hico`'s result, in %."""
    rows = [("Full", result["full"], num_classes)]
    rows += [(key.replace("few", "Few"), result[key], result["few_shot_sizes"][key]) for key in FEW_SHOT_KEYS]
    rows.append(("Known-Object", result["known_object"], num_classes))
    lines = [
        f"HICO mAP ({interpolation.replace('point', '-point').replace('_', '')} AP, DEFR protocol): "
        f"{num_images} test images, {num_classes} classes",
        f"{'setting':<14}{'mAP %':>8}{'classes':>9}",
    ]
    for name, value, count in rows:
        shown = "n/a" if math.isnan(value) else f"{100.0 * value:.2f}"
        lines.append(f"{name:<14}{shown:>8}{count:>9}")
    lines.append(f"Class lists for Few@k: {few_source}")
    lines.append(f"Score ties: {TIE_DESCRIPTIONS[ties]}")
    return "\n".join(lines)
