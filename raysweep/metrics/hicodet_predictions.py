"""HICO-DET predictions in the layout QPIC's post-processor emits: reading files and validating them.

Per test image (a list aligned with test_hico.json): `boxes` [2k, 4] xyxy in original pixels, `labels` [2k] object
indices 0..79 in QPIC's order (subjects labelled 0 = person), `verb_scores` [k, 117], `sub_ids` [k] and `obj_ids`
[k] indexing the boxes. Any number of boxes and queries per image works; extra keys are ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from raysweep.data.hicodet import NUM_OBJECTS, NUM_VERBS
from raysweep.errors import DataError
from raysweep.safe_pickle import ALLOW_HINT, PickleRefused, load_pickle

PREDICTION_KEYS = ("boxes", "labels", "verb_scores", "sub_ids", "obj_ids")


def load_predictions(path: Path | str, allow_pickle: bool = False) -> Any:
    """Read a prediction list from `.json`, or from `.pkl`/`.pickle` with the restricted unpickler (numpy arrays and
    built-in types only); `allow_pickle` reads any pickle, which can run code: only for a file you trust."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"prediction file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            with open(path, encoding="utf-8") as f:
                return json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{str(path)!r} is not valid JSON: {exc}") from None
        except RecursionError:
            raise DataError(f"{str(path)!r}: nested too deeply to be a prediction list (a list of one dict per "
                            f"image)") from None
    if suffix in (".pkl", ".pickle"):
        try:
            with open(path, "rb") as f:
                return load_pickle(f, allow_pickle=allow_pickle)
        except PickleRefused as exc:
            raise DataError(f"{str(path)!r}: refused to unpickle: {exc}; {ALLOW_HINT}, or save the predictions as "
                            f".json") from None
        except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
            raise DataError(f"cannot unpickle {str(path)!r}: {type(exc).__name__}: {exc}") from None
    raise DataError(f"{str(path)!r}: unsupported prediction file type {suffix!r} (use .json, or .pkl with "
                    f"--allow-pickle)")


@dataclass
class FlatPredictions:
    """All images' boxes and queries concatenated; verb scores stay one array per image (float dtype as given)."""

    boxes: np.ndarray  # [B, 4] float64
    labels: np.ndarray  # [B] int64, 0..79
    sub_box: np.ndarray  # [Q] global box index of each query's subject
    obj_box: np.ndarray  # [Q] global box index of each query's object
    box_offset: np.ndarray  # [n_images + 1]
    query_offset: np.ndarray  # [n_images + 1]
    scores: list  # n_images arrays [k_i, 117]

    def per_image(self) -> list[dict[str, np.ndarray]]:
        """The same data as one dict of arrays per image (views into the flat arrays)."""
        out = []
        for i, scores in enumerate(self.scores):
            b0, b1 = self.box_offset[i], self.box_offset[i + 1]
            q0, q1 = self.query_offset[i], self.query_offset[i + 1]
            out.append({"boxes": self.boxes[b0:b1], "labels": self.labels[b0:b1], "verb_scores": scores,
                        "sub_ids": self.sub_box[q0:q1] - b0, "obj_ids": self.obj_box[q0:q1] - b0})
        return out


def validate_predictions(preds: Any, n_images: int, source: str = "predictions") -> list[dict[str, np.ndarray]]:
    """Check predictions aligned with test_hico.json; return one dict of numpy arrays per image.

    Raises `DataError` naming the image index and key for a wrong length, missing keys, wrong shapes, non-finite
    boxes or scores, and labels or ids out of range.
    """
    return flatten_predictions(preds, n_images, source).per_image()


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def flatten_predictions(preds: Any, n_images: int, source: str = "predictions") -> FlatPredictions:
    """Validate (see `validate_predictions`) and concatenate. Shapes are checked per image, values in bulk."""
    if not isinstance(preds, (list, tuple)):
        raise DataError(f"{source}: expected a list of per-image prediction dicts, got {type(preds).__name__}")
    if len(preds) != n_images:
        raise DataError(f"{source}: {len(preds)} predictions for {n_images} test images; the list must align with "
                        f"test_hico.json (one dict per record, same order)")
    columns: dict[str, list] = {key: [] for key in PREDICTION_KEYS}
    for i, pred in enumerate(preds):
        where = f"{source}: image {i}"
        if not isinstance(pred, Mapping):
            raise DataError(f"{where}: expected a dict with keys {list(PREDICTION_KEYS)}, got {type(pred).__name__}")
        missing = [k for k in PREDICTION_KEYS if k not in pred]
        if missing:
            raise DataError(f"{where}: missing key(s) {missing} (need {list(PREDICTION_KEYS)})")
        arrays = {}
        for key in PREDICTION_KEYS:
            try:
                arrays[key] = _to_numpy(pred[key])
            except (ValueError, TypeError) as exc:
                raise DataError(f"{where}: {key!r} is not a rectangular numeric array ({exc})") from None
        boxes = _matrix(arrays["boxes"], 4, f"{where}: 'boxes'", "[n_boxes, 4] xyxy")
        scores = _matrix(arrays["verb_scores"], NUM_VERBS, f"{where}: 'verb_scores'", f"[k, {NUM_VERBS}]")
        if not np.isfinite(scores).all():
            bad = tuple(int(b) for b in np.argwhere(~np.isfinite(scores))[0])
            raise DataError(f"{where}: 'verb_scores' holds a non-finite value ({scores[bad]} at {bad})")
        for key, length in (("labels", len(boxes)), ("sub_ids", len(scores)), ("obj_ids", len(scores))):
            _vector(arrays[key], length, f"{where}: {key!r}")
        columns["boxes"].append(boxes)
        columns["verb_scores"].append(scores)
        for key in ("labels", "sub_ids", "obj_ids"):
            columns[key].append(arrays[key].reshape(-1))

    n_boxes = np.array([len(b) for b in columns["boxes"]], dtype=np.int64)
    n_queries = np.array([len(s) for s in columns["verb_scores"]], dtype=np.int64)
    box_offset = np.concatenate([[0], np.cumsum(n_boxes)])
    query_offset = np.concatenate([[0], np.cumsum(n_queries)])
    boxes = _concat(columns["boxes"], np.float64, (0, 4))
    labels = _concat(columns["labels"], None, (0,))
    sub_ids = _concat(columns["sub_ids"], None, (0,))
    obj_ids = _concat(columns["obj_ids"], None, (0,))

    def fail(key: str, bad_rows: np.ndarray, offsets: np.ndarray, message: str) -> None:
        row = int(np.flatnonzero(bad_rows)[0])
        image = int(np.searchsorted(offsets, row, side="right") - 1)
        raise DataError(f"{source}: image {image}: {key!r} {message.format(row=row - offsets[image])}")

    finite = np.isfinite(boxes).all(axis=1)
    if not finite.all():
        fail("boxes", ~finite, box_offset, "holds a non-finite value in box {row}")
    labels = _integers(labels, "labels", box_offset, fail)
    bad = (labels < 0) | (labels >= NUM_OBJECTS)
    if bad.any():
        fail("labels", bad, box_offset, f"holds {int(labels[bad][0])}, outside 0..{NUM_OBJECTS - 1} (QPIC object "
             "indices)")
    limit = np.repeat(n_boxes, n_queries)
    for key, ids in (("sub_ids", sub_ids), ("obj_ids", obj_ids)):
        ids = _integers(ids, key, query_offset, fail)
        bad = (ids < 0) | (ids >= limit)
        if bad.any():
            fail(key, bad, query_offset, f"holds {int(ids[bad][0])}, not an index into the image's "
                 f"{int(limit[bad][0])} boxes")
        if key == "sub_ids":
            sub_ids = ids
        else:
            obj_ids = ids
    shift = np.repeat(box_offset[:-1], n_queries)
    return FlatPredictions(boxes=boxes, labels=labels, sub_box=sub_ids + shift, obj_box=obj_ids + shift,
                           box_offset=box_offset, query_offset=query_offset, scores=columns["verb_scores"])


def _matrix(arr: np.ndarray, width: int, where: str, expected: str) -> np.ndarray:
    if arr.size == 0 and arr.ndim <= 2:
        arr = arr.reshape(0, width)
    if arr.ndim != 2 or arr.shape[1] != width:
        raise DataError(f"{where} has shape {tuple(arr.shape)}; expected {expected}")
    if arr.dtype.kind not in "fiu":
        raise DataError(f"{where} has dtype {arr.dtype}; expected numbers")
    return arr if arr.dtype.kind == "f" else arr.astype(np.float64)


def _vector(arr: np.ndarray, length: int, where: str) -> None:
    if arr.size == 0 and length == 0:
        return
    if arr.ndim != 1 or len(arr) != length:
        raise DataError(f"{where} has shape {tuple(arr.shape)}; expected ({length},)")
    if arr.dtype.kind not in "fiu":
        raise DataError(f"{where} has dtype {arr.dtype}; expected integers")


def _concat(parts: list, dtype, empty_shape: tuple) -> np.ndarray:
    if not parts:
        return np.zeros(empty_shape, dtype=dtype or np.int64)
    out = np.concatenate(parts)
    return out.astype(dtype, copy=False) if dtype is not None else out


def _integers(values: np.ndarray, key: str, offsets: np.ndarray, fail) -> np.ndarray:
    if values.dtype.kind == "f":
        bad = ~np.isfinite(values) | (values != np.round(values))
        if bad.any():
            fail(key, bad, offsets, "holds a non-integer value at position {row}")
    return values.astype(np.int64, copy=False)
