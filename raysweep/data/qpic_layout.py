"""The QPIC family's on-disk annotation layout, shared by HICO-DET (`data.hicodet`) and V-COCO (`data.vcoco`).

Both datasets are a root with `annotations/<train>.json`, `annotations/<test>.json` (lists of image records
{"file_name", "annotations": [{"bbox", "category_id"}], "hoi_annotation": [{"subject_id", "object_id",
"category_id"}]}), a verb x object validity matrix `annotations/<corre>.npy` and two image folders. This module
reads that skeleton and runs the checks every record shares; each dataset module adds its own rules (id ranges,
box conventions). Every problem is a one-line `DataError` naming the file, the record and the field.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from raysweep.errors import DataError

COCO_IDS_TEXT = "1..90 without 12, 26, 29, 30, 45, 66, 68, 69, 71, 83"
RECORD_KEYS = ("file_name", "annotations", "hoi_annotation")


@dataclass(frozen=True)
class QpicLayout:
    """One dataset's file names in the layout, and its verb x object matrix shape."""

    dataset: str  # "HICO-DET", "V-COCO": names the dataset in messages
    train_file: str
    test_file: str
    correct_mat_file: str
    image_dirs: dict[str, str]  # {"train": ..., "test": ...}
    correct_mat_shape: tuple[int, int]

    def resolve_root(self, path: Path | str) -> Path:
        """The dataset root, given either the root itself or its `annotations/` folder."""
        path = Path(path)
        if not (path / self.test_file).exists() and (path / Path(self.test_file).name).exists():
            return path.parent
        return path

    def open(self, path: Path | str) -> tuple[Path, np.ndarray]:
        """(the root, its validated verb x object matrix); DataError when the root is not a folder."""
        root = self.resolve_root(path)
        if not root.is_dir():
            raise DataError(f"{self.dataset} root {str(root)!r} is not a directory (expected {self.train_file}, "
                            f"{self.test_file}, {self.correct_mat_file} under it)")
        return root, self.load_correct_mat(root / self.correct_mat_file)

    def load_correct_mat(self, path: Path) -> np.ndarray:
        """The [verbs, 80] matrix -> bool, checked for shape and {0, 1} values (allow_pickle=False: no object array)."""
        shape = self.correct_mat_shape
        if not path.is_file():
            raise DataError(f"missing file {str(path)!r}: the [{shape[0]}, {shape[1]}] verb x object validity matrix")
        try:
            mat = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise DataError(f"{str(path)!r} is not a readable numeric .npy array: {exc}") from None
        if not isinstance(mat, np.ndarray) or mat.shape != shape:
            raise DataError(f"{str(path)!r} has shape {getattr(mat, 'shape', None)}; expected {shape} "
                            f"(verb index x QPIC object index)")
        if mat.dtype.kind not in "biuf":
            raise DataError(f"{str(path)!r} holds values other than 0 and 1 (dtype {mat.dtype})")
        if not np.isin(mat, (0, 1)).all():
            raise DataError(f"{str(path)!r} holds values other than 0 and 1: {np.unique(mat)[:5].tolist()}")
        return mat.astype(bool)

    def read_records(self, path: Path) -> Any:
        """The parsed JSON of one record file (validated by the dataset module)."""
        return read_json(path, f"a JSON list of {self.dataset} image records",
                         f"a list of {self.dataset} image records")

    def check_images(self, root: Path, train: list[dict], test: list[dict]) -> None:
        """Every record's image exists and its boxes lie inside it (`check_image_files`)."""
        check_image_files(root / self.image_dirs["train"], train, root / self.train_file)
        check_image_files(root / self.image_dirs["test"], test, root / self.test_file)


def read_json(path: Path, what: str, shape: str | None = None) -> Any:
    """A JSON file's content; DataError for a missing (`what` it should be), unreadable, invalid or (naming `shape`)
    too deeply nested file."""
    if not path.is_file():
        raise DataError(f"missing file {str(path)!r}: {what}")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise DataError(f"{str(path)!r} is not valid JSON: {exc}") from None
    except RecursionError:
        raise DataError(f"{str(path)!r}: nested too deeply to be {shape or what}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {str(path)!r}: {exc}") from None


def is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def checked_records(records: Any, source: Path | str) -> Iterator[tuple[int, dict, str]]:
    """(index, record, where) per record once its skeleton is sound: a dict with `file_name` (a non-empty string),
    `annotations` and `hoi_annotation` (lists); `where` names the file, the index and the file name for messages."""
    src = str(source)
    if not isinstance(records, list):
        raise DataError(f"{src!r}: expected a JSON list of image records, got {type(records).__name__}")
    for i, rec in enumerate(records):
        where = f"{src!r}: record {i}"
        if not isinstance(rec, dict):
            raise DataError(f"{where}: expected an object, got {type(rec).__name__}")
        for key in RECORD_KEYS:
            if key not in rec:
                raise DataError(f"{where}: missing key {key!r} (a record has file_name, annotations, hoi_annotation)")
        if not isinstance(rec["file_name"], str) or not rec["file_name"]:
            raise DataError(f"{where}: file_name must be a non-empty string, got {rec['file_name']!r}")
        where = f"{src!r}: record {i} ({rec['file_name']})"
        if not isinstance(rec["annotations"], list) or not isinstance(rec["hoi_annotation"], list):
            raise DataError(f"{where}: annotations and hoi_annotation must be lists")
        yield i, rec, where


def checked_bbox(box: Any, where: str, coco_ids: frozenset[int] | dict[int, int], dataset: str) -> list:
    """The `bbox` of one annotation once it is an object with a valid COCO `category_id` and four finite numbers."""
    if not isinstance(box, dict) or "bbox" not in box or "category_id" not in box:
        raise DataError(f"{where}: expected an object with 'bbox' and 'category_id', got {box!r}")
    cat = box["category_id"]
    if not is_int(cat) or int(cat) not in coco_ids:
        raise DataError(f"{where}.category_id = {cat!r} is not one of the 80 COCO ids {dataset} uses ({COCO_IDS_TEXT})")
    b = box["bbox"]
    if not isinstance(b, (list, tuple)) or len(b) != 4 or not all(is_number(x) and math.isfinite(x) for x in b):
        raise DataError(f"{where}.bbox = {b!r} must be four finite numbers [x1, y1, x2, y2]")
    return list(b)


def check_hoi_keys(hoi: Any, where: str) -> None:
    """A hoi entry is an object with subject_id, object_id and category_id."""
    if not isinstance(hoi, dict):
        raise DataError(f"{where}: expected an object, got {hoi!r}")
    for key in ("subject_id", "object_id", "category_id"):
        if key not in hoi:
            raise DataError(f"{where}: missing key {key!r}")


def check_image_files(image_dir: Path, records: list[dict], source: Path) -> None:
    """Every record's image exists; boxes lie inside it (x2 <= width, y2 <= height). Reads headers only."""
    from PIL import Image  # lazy: only this optional check needs PIL

    if not image_dir.is_dir():
        raise DataError(f"missing image folder {str(image_dir)!r} (needed by {str(source)!r})")
    for i, rec in enumerate(records):
        path = image_dir / rec["file_name"]
        if not path.is_file():
            raise DataError(f"{str(source)!r}: record {i}: image {str(path)!r} does not exist")
        try:
            with Image.open(path) as img:
                width, height = img.size
        except OSError as exc:
            raise DataError(f"{str(source)!r}: record {i}: cannot read image {str(path)!r}: {exc}") from None
        for j, box in enumerate(rec["annotations"]):
            _, _, x2, y2 = box["bbox"]
            if x2 > width or y2 > height:
                raise DataError(f"{str(source)!r}: record {i} ({rec['file_name']}): annotations[{j}].bbox = "
                                f"{list(box['bbox'])!r} lies outside the {width} x {height} image")
