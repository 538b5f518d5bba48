"""HICO image-level annotations in DEFR's layout (`anno.pkl`): the one reader the DEFR task and `eval hico` share.

Layout under `root`:

    anno.pkl            a pickled dict (below)
    images/train2015/, images/test2015/

`anno.pkl` holds `files_train` [N_train] and `files_test` [N_test] (image file names), `anno_train` [C, N_train]
and `anno_test` [C, N_test] (class-major label matrices of HICO's `anno.mat`: 1 positive, 0 ambiguous, -1 negative,
NaN "object not in the image", read here as -2), and optionally `hoi_list` ((verb, object) per class, in one of the
forms real files carry). Labels are returned image-major (`labels_*[n, c]`, int8 in {1, 0, -1, -2}).

The pickle is read by the restricted unpickler of `raysweep.safe_pickle` (numpy arrays and built-in types only, so
a crafted file cannot run code); `allow_pickle` reads any pickle, for a file you trust. Only numpy is needed: the
training task and the evaluation command both import this module. The twin of `raysweep.data.hicodet`.
"""

from __future__ import annotations

import csv
import json
import logging
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from raysweep.errors import DataError
from raysweep.safe_pickle import ALLOW_HINT, PickleRefused, load_pickle_file

log = logging.getLogger(__name__)

ANNO_FILE = "anno.pkl"
IMAGE_DIRS = {"train": "images/train2015", "test": "images/test2015"}
LABEL_VALUES = (1, 0, -1, -2)
REQUIRED_KEYS = ("files_train", "files_test", "anno_train", "anno_test")
TEST_KEYS = ("files_test", "anno_test")


@dataclass(frozen=True)
class HicoAnnotations:
    """A HICO-layout dataset's file names and labels, image-major (`labels_*[n, c]`, int8 in {1, 0, -1, -2}).

    The training split is None when it was not asked for (`load_hico(..., train=False)`, e.g. an evaluation that
    needs only the test labels); `files_train` is None when the file has no `files_train` and it was not required.
    """

    path: Path  # the anno.pkl read
    files_train: np.ndarray | None  # [N_train] str
    files_test: np.ndarray  # [N_test] str
    labels_train: np.ndarray | None  # [N_train, C] int8
    labels_test: np.ndarray  # [N_test, C] int8
    class_names: list[tuple[str, str]] | None  # (verb, object) per class, from hoi_list when it is readable

    @property
    def num_classes(self) -> int:
        return self.labels_test.shape[1]


def resolve_anno_file(path: Path | str) -> Path:
    """The annotation file, given either the dataset root (a folder holding anno.pkl) or the file itself."""
    path = Path(path)
    return path / ANNO_FILE if path.is_dir() else path


def load_hico(path: Path | str, allow_pickle: bool = False, *, train: bool = True, train_files: bool = True,
              class_names: bool = True) -> HicoAnnotations:
    """Read and validate DEFR's `anno.pkl` (layout in the module docstring); every problem is a one-line DataError.

    path: the dataset root or the pickle itself. train: also read the training split (`anno_train`, and with
    `train_files` `files_train`); else it is not read. class_names: parse `hoi_list` (with a warning when it is
    unreadable); `eval hico` never reads it.
    """
    path = resolve_anno_file(path)
    anno = _unpickle(path, allow_pickle)
    required = [k for k in REQUIRED_KEYS if k in TEST_KEYS or (train and (train_files or k != "files_train"))]
    if not isinstance(anno, dict):
        raise DataError(f"{path} must hold a dict with keys {required}, got {type(anno).__name__}")
    missing = [k for k in required if k not in anno]
    if missing:
        raise DataError(f"{path} lacks key(s) {missing}; found {sorted(map(str, anno))}")
    files_test = _files(anno, "files_test", path)
    labels_test = _labels(anno, "anno_test", len(files_test), path)
    files_train = labels_train = None
    if train:
        files_train = _files(anno, "files_train", path) if "files_train" in anno else None
        n_train = len(files_train) if files_train is not None else None
        labels_train = _labels(anno, "anno_train", n_train, path)
        if labels_train.shape[1] != labels_test.shape[1]:
            raise DataError(f"{path}: 'anno_train' has {labels_train.shape[1]} classes but 'anno_test' has "
                            f"{labels_test.shape[1]}")
    names = parse_hoi_list(anno.get("hoi_list"), labels_test.shape[1]) if class_names else None
    return HicoAnnotations(path, files_train, files_test, labels_train, labels_test, names)


def _unpickle(path: Path, allow_pickle: bool) -> Any:
    if not path.is_file():
        raise DataError(f"{path} not found; a HICO dataset root holds {ANNO_FILE} and images/")
    try:
        return load_pickle_file(path, allow_pickle)
    except PickleRefused as e:
        raise DataError(f"{path}: refused to unpickle: {e}; {ALLOW_HINT} (data.allow_pickle: true in a space "
                        f"file)") from None
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, ValueError, TypeError,
            KeyError, MemoryError, RecursionError) as e:
        raise DataError(f"{path} is not a readable pickle ({type(e).__name__}: {e})") from None


def _labels(anno: dict, key: str, n_files: int | None, path: Path) -> np.ndarray:
    """The class-major label matrix under `key` as image-major int8, NaN -> -2, values checked."""
    try:
        raw = np.asarray(anno[key], dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise DataError(f"{path}: '{key}' is not a numeric matrix ({e})") from None
    if raw.ndim != 2:
        raise DataError(f"{path}: '{key}' must be a [classes, images] matrix, got shape {raw.shape}")
    if n_files is not None and raw.shape[1] != n_files:
        raise DataError(f"{path}: '{key}' has shape {raw.shape} (classes x images) but there are {n_files} file "
                        f"names; the second dimension must match")
    raw = np.where(np.isnan(raw), -2.0, raw)
    bad = ~np.isin(raw, LABEL_VALUES)
    if bad.any():
        values = np.unique(raw[bad])[:5].tolist()
        raise DataError(f"{path}: '{key}' holds values {values}; labels must be 1, 0, -1, -2 or NaN")
    return np.ascontiguousarray(raw.T.astype(np.int8))


def _files(anno: dict, key: str, path: Path) -> np.ndarray:
    try:
        files = np.asarray([as_str(f) or "" for f in np.asarray(anno[key], dtype=object).reshape(-1)], dtype=str)
    except (TypeError, ValueError) as e:
        raise DataError(f"{path}: '{key}' is not a list of file names ({e})") from None
    if len(files) and (files == "").any():
        raise DataError(f"{path}: '{key}' has {int((files == '').sum())} empty or non-string file names")
    return files


# ---- class names ------------------------------------------------------------------------------------------------
def as_str(value: Any) -> str | None:
    """A string from the shapes Matlab-converted records take (str, bytes, 1-element arrays); else None."""
    while isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(-1)[0]
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, (str, np.str_)) and str(value).strip():
        return str(value).strip()
    return None


_VERB_KEYS = ("verb", "vname", "verb_name", "action")
_OBJECT_KEYS = ("object", "nname", "obj", "object_name", "noun")


def _field(entry: Any, keys: Sequence[str]) -> str | None:
    if isinstance(entry, dict):
        for k in keys:
            if k in entry:
                return as_str(entry[k])
    names = getattr(getattr(entry, "dtype", None), "names", None)  # numpy structured record (scipy.io.loadmat)
    if names:
        for k in keys:
            if k in names:
                return as_str(entry[k])
    return None


def verb_object(entry: Any) -> tuple[str, str] | None:
    """(verb, object) of one class entry: a dict / structured record with verb+object keys ('verb'/'object', HICO's
    'vname'/'nname', anno.json's 'obj'), or a (verb, object) pair; None when it has no readable pair."""
    verb, obj = _field(entry, _VERB_KEYS), _field(entry, _OBJECT_KEYS)
    if verb is None and isinstance(entry, (list, tuple, np.ndarray)) and len(entry) == 2:
        verb, obj = as_str(entry[0]), as_str(entry[1])
    return None if verb is None or obj is None else (verb, obj)


def parse_hoi_list(hoi_list: Any, num_classes: int) -> list[tuple[str, str]] | None:
    """(verb, object) per class from `hoi_list` in any of the forms seen in the wild (`verb_object`); None if it
    cannot be read. The list must have one entry per class."""
    if hoi_list is None:
        return None
    if isinstance(hoi_list, np.ndarray):
        hoi_list = list(hoi_list.reshape(-1))
    if not isinstance(hoi_list, (list, tuple)) or len(hoi_list) != num_classes:
        log.warning("hoi_list has %s entries for %d classes; ignoring it", _len_or_type(hoi_list), num_classes)
        return None
    names: list[tuple[str, str]] = []
    for entry in hoi_list:
        pair = verb_object(entry)
        if pair is None:
            log.warning("hoi_list entry %r has no readable verb/object; ignoring hoi_list", entry)
            return None
        names.append(pair)
    return names


def _len_or_type(x: Any) -> str:
    try:
        return str(len(x))
    except TypeError:
        return type(x).__name__


def load_vocabulary(path: str | Path, num_classes: int | None = None) -> list[tuple[str, str]]:
    """(verb, object) per class from a JSON list ([verb, object] pairs or {"verb", "object"} dicts) or a TSV with a
    header naming 'verb' and 'object' columns. With `num_classes`, the length must match."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"vocabulary file {path} not found")
    if path.suffix.lower() == ".json":
        names = _json_vocabulary(path)
    elif path.suffix.lower() in (".tsv", ".txt", ".tab"):
        names = _tsv_vocabulary(path)
    else:
        raise DataError(f"vocabulary file {path}: unknown format {path.suffix!r}; use .json or .tsv")
    if num_classes is not None and len(names) != num_classes:
        raise DataError(f"{path}: {len(names)} classes, but the dataset has {num_classes}")
    return names


def _json_vocabulary(path: Path) -> list[tuple[str, str]]:
    try:
        data = json.loads(path.read_text())
    except (ValueError, RecursionError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, list):
        raise DataError(f"{path}: must be a JSON list of [verb, object] pairs or {{'verb', 'object'}} dicts")
    names = []
    for i, entry in enumerate(data):
        pair = verb_object(entry) if isinstance(entry, (dict, list, tuple)) else None
        if pair is None:
            raise DataError(f"{path}: entry {i} ({entry!r}) is not a [verb, object] pair or a verb/object dict")
        names.append(pair)
    return names


def _tsv_vocabulary(path: Path) -> list[tuple[str, str]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    header = list(rows[0].keys()) if rows else []
    if "verb" not in header or "object" not in header:
        raise DataError(f"{path}: the TSV header must name 'verb' and 'object' columns, got {header}")
    names = []
    for i, row in enumerate(rows):
        verb, obj = (row.get("verb") or "").strip(), (row.get("object") or "").strip()
        if not verb or not obj:
            raise DataError(f"{path}: row {i + 2} has an empty verb or object")
        names.append((verb, obj))
    return names
