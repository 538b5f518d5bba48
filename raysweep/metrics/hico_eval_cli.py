"""Offline HICO evaluation of a saved score matrix against DEFR's `anno.pkl` (the core of `raysweep eval hico`).

Inputs:
- `anno.pkl`: DEFR's pickled dict with `files_test` [N_test], `anno_test` [C, N_test] and `anno_train`
  [C, N_train] (class-major, labels in {1, 0, -1, -2}; NaN is read as -2). `hoi_list` is never read: real files
  carry it in different forms. `anno_train` is needed only for Few@k lists derived from training counts.
- scores: `.npy` (or `.npz` holding one array) of shape [N_test, C]; row i scores the image `files_test[i]`.
- optionally a Few@k lists JSON (see `raysweep.metrics.hico.load_few_shot_lists`), or "defr" / "derived"; the default
  is DEFR's hard-coded lists for 600-class HICO, else lists derived from anno_train.
"""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from raysweep.errors import DataError
from raysweep.safe_pickle import ALLOW_HINT, PickleRefused, load_pickle_file
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


@dataclass
class HicoAnnotations:
    """Label matrices of anno.pkl, transposed to image-major [N, C]."""

    files_test: np.ndarray  # [N_test]
    test_labels: np.ndarray  # [N_test, C]
    train_labels: np.ndarray | None  # [N_train, C]; None when not loaded


def load_hico_anno(path: str | Path, need_train: bool = True, allow_pickle: bool = False) -> HicoAnnotations:
    """Read and check DEFR's `anno.pkl`.

    The pickle is read by a restricted unpickler admitting numpy arrays and built-in types only, so a crafted file
    cannot run code; `allow_pickle` (`--allow-pickle`) reads any pickle, for a file you trust. Raises DataError
    (naming the file and key) for a missing or unreadable file, a missing key, a label matrix that is not 2-D or
    has no test image, label values outside {1, 0, -1, -2, NaN}, or a `files_test` whose length differs from the
    number of test images.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found")
    try:
        anno = load_pickle_file(path, allow_pickle)
    except PickleRefused as exc:
        raise DataError(f"{path}: refused to unpickle: {exc}; {ALLOW_HINT}") from None
    except Exception as exc:  # unpickling can fail in many ways (truncation, unknown classes, ...)
        raise DataError(f"{path}: cannot unpickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(anno, dict):
        raise DataError(
            f"{path}: expected a pickled dict with files_test/anno_test/anno_train, got {type(anno).__name__}"
        )
    required = ("files_test", "anno_test") + (("anno_train",) if need_train else ())
    missing = [key for key in required if key not in anno]
    if missing:
        raise DataError(f"{path}: missing key(s) {', '.join(missing)}; found {', '.join(map(str, anno)) or 'none'}")

    test = _label_matrix(path, "anno_test", anno["anno_test"])
    train = _label_matrix(path, "anno_train", anno["anno_train"]) if "anno_train" in anno else None
    if train is not None and train.shape[1] != test.shape[1]:
        raise DataError(
            f"{path}: anno_train has {train.shape[1]} classes but anno_test has {test.shape[1]} "
            "(both must be [C, N], class-major)"
        )
    if test.shape[0] == 0 or test.shape[1] == 0:
        raise DataError(f"{path}: anno_test has shape {test.T.shape} (classes x test images): nothing to evaluate; "
                        f"it needs at least one class and one test image")
    files_test = np.asarray(anno["files_test"]).reshape(-1)
    if len(files_test) != test.shape[0]:
        raise DataError(
            f"{path}: files_test has {len(files_test)} entries but anno_test has {test.shape[0]} test images "
            "(anno_test must be [C, N_test], class-major)"
        )
    return HicoAnnotations(files_test=files_test, test_labels=test, train_labels=train if need_train else None)


def _label_matrix(path: Path, key: str, value: object) -> np.ndarray:
    """anno[key] [C, N] checked and transposed to [N, C]."""
    try:
        labels = np.asarray(value)
    except Exception as exc:
        raise DataError(f"{path}: {key} is not an array ({exc})") from None
    if labels.ndim != 2 or labels.dtype.kind not in "iuf":
        raise DataError(
            f"{path}: {key} must be a 2-D numeric [C, N] label matrix, "
            f"got shape {labels.shape} and dtype {labels.dtype}"
        )
    try:
        hico_labels(labels)
    except ValueError as exc:
        raise DataError(f"{path}: {key}: {exc}") from None
    return labels.T


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
    `load_hico_anno` says (restricted unless `allow_pickle`). Raises DataError on bad inputs.
    """
    if interpolation not in INTERPOLATIONS:
        raise DataError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}")
    if ties not in TIE_RULES:
        raise DataError(f"--ties {ties!r} is not a tie rule; allowed: {', '.join(TIE_RULES)}")
    anno_path, scores_path = Path(anno_path), Path(scores_path)
    setting = None if few_shot_lists_path is None else str(few_shot_lists_path)
    if setting is not None and setting not in FEW_SHOT_NAMED:
        load_few_shot_lists(setting, origin="--few-shot-lists")  # a bad file fails before anno.pkl is read
    need_train = setting == "derived" or setting is None
    anno = load_hico_anno(anno_path, need_train=need_train, allow_pickle=allow_pickle)
    num_images, num_classes = anno.test_labels.shape
    scores = load_scores(scores_path)
    _check_scores(scores_path, scores, num_images, num_classes)
    if setting is None:
        setting = "defr" if num_classes == HICO_NUM_CLASSES else "derived"
    if setting == "defr" and num_classes != HICO_NUM_CLASSES:
        raise DataError(f"--few-shot-lists defr: DEFR's lists index the {HICO_NUM_CLASSES} HICO classes, but "
                        f"{anno_path} has {num_classes}; give a lists file or 'derived'")
    if setting == "derived" and anno.train_labels is None:
        anno = load_hico_anno(anno_path, need_train=True)
    if setting in FEW_SHOT_NAMED:
        lists, name = setting, None
    else:
        lists, name = load_few_shot_lists(setting, num_classes, "--few-shot-lists"), few_shot_source(num_classes, setting)

    result = evaluate_hico(scores, anno.test_labels, anno.train_labels, lists, interpolation, few_shot_name=name,
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
