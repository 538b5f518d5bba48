"""DEFR data: anno.pkl loading/validation, vocabulary files, min_samples rebalancing, splits, transforms, Dataset."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from raysweep.data.synth.hico import generate_hico
from raysweep.data.synth.vocabulary import HOI_CLASSES
from raysweep.errors import ConfigError, DataError
from raysweep.tasks.defr.config import DataConfig
from raysweep.data.hico import load_hico, load_vocabulary, parse_hoi_list
from raysweep.tasks.defr.data import (
    NORMALISATION,
    HicoDataset,
    build_transforms,
    rebalance_indices,
    scan_image_files,
)

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


def _write_anno(root: Path, **anno) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "anno.pkl", "wb") as f:
        pickle.dump(anno, f)
    return root


def _tiny_anno(**overrides) -> dict:
    anno = {
        "files_train": np.array(["a.jpg", "b.jpg", "c.jpg"]),
        "files_test": np.array(["t.jpg", "u.jpg"]),
        "anno_train": np.array([[1, 0, np.nan], [-1, -2, 1]], dtype=float),  # [C=2, N=3]
        "anno_test": np.array([[1, -1], [np.nan, 1]], dtype=float),
    }
    anno.update(overrides)
    return anno


# ---- annotations ----------------------------------------------------------------------------------------------------
def test_load_synthetic(tmp_path):
    root = generate_hico(tmp_path / "h", seed=0, num_train=12, num_test=10, image_size=32)
    ann = load_hico(root)
    assert ann.labels_train.shape == (12, 34) and ann.labels_test.shape == (10, 34)
    assert ann.labels_train.dtype == np.int8 and ann.num_classes == 34
    assert ann.class_names == HOI_CLASSES
    assert ann.files_train.dtype.kind == "U" and ann.files_train[0] == "HICO_train2015_00000001.jpg"
    with open(root / "anno.pkl", "rb") as f:
        raw = pickle.load(f)
    assert np.array_equal(ann.labels_train, raw["anno_train"].T.astype(np.int8))


def test_transpose_and_nan(tmp_path):
    ann = load_hico(_write_anno(tmp_path, **_tiny_anno()))
    assert ann.labels_train.tolist() == [[1, -1], [0, -2], [-2, 1]]
    assert ann.labels_test.tolist() == [[1, -2], [-1, 1]]
    assert ann.class_names is None  # no hoi_list


@pytest.mark.parametrize(
    "hoi_list, expected",
    [
        ([{"vname": "ride", "nname": "bicycle"}, {"vname": np.array(["hold"]), "nname": np.array(["cup"])}],
         [("ride", "bicycle"), ("hold", "cup")]),
        ([("ride", "bicycle"), ["hold", "cup"]], [("ride", "bicycle"), ("hold", "cup")]),
        ([{"verb": "ride", "obj": "bicycle", "sym": 0}, {"verb": "hold", "obj": "cup"}],
         [("ride", "bicycle"), ("hold", "cup")]),
        (np.array([("ride", "bicycle"), ("hold", "cup")], dtype=[("vname", "U8"), ("nname", "U8")]),
         [("ride", "bicycle"), ("hold", "cup")]),
        ([("ride", "bicycle")], None),  # wrong length
        ([{"foo": 1}, {"foo": 2}], None),
        ("not a list", None),
        (None, None),
    ],
)  # fmt: skip
def test_parse_hoi_list(hoi_list, expected):
    assert parse_hoi_list(hoi_list, 2) == expected


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"anno_train": np.zeros((2, 4))}, r"anno_train.*\(2, 4\).*3 file names"),
        ({"anno_test": np.array([[1, 0.5], [1, 1]])}, r"anno_test.*\[0\.5\]"),
        ({"anno_test": np.zeros((3, 2))}, r"2 classes but 'anno_test' has 3"),
        ({"anno_train": np.zeros(3)}, r"anno_train.*\[classes, images\]"),
    ],
)
def test_validation_errors(tmp_path, overrides, match):
    root = _write_anno(tmp_path, **_tiny_anno(**overrides))
    with pytest.raises(DataError, match=match) as err:
        load_hico(root)
    assert "anno.pkl" in str(err.value)


def test_partial_reads_for_evaluation(tmp_path):
    """`eval hico` reads the test split (and anno_train only for derived Few@k lists), never files_train/hoi_list."""
    anno = _tiny_anno(anno_train=np.full((2, 3), 7.0), hoi_list="any form")
    del anno["files_train"]
    root = _write_anno(tmp_path, **anno)
    test_only = load_hico(root / "anno.pkl", train=False, class_names=False)
    assert test_only.labels_train is None and test_only.files_train is None and test_only.num_classes == 2
    assert test_only.labels_test.tolist() == [[1, -2], [-1, 1]] and test_only.class_names is None
    with pytest.raises(DataError, match=r"'anno_train' holds values \[7\.0\]"):
        load_hico(root, train_files=False, class_names=False)
    with pytest.raises(DataError, match=r"lacks key\(s\) \['files_train'\]"):
        load_hico(root)


def test_missing_file_key_and_bad_pickle(tmp_path):
    with pytest.raises(DataError, match="anno.pkl not found"):
        load_hico(tmp_path)
    anno = _tiny_anno()
    del anno["files_test"]
    with pytest.raises(DataError, match=r"lacks key\(s\) \['files_test'\]"):
        load_hico(_write_anno(tmp_path / "k", **anno))
    (tmp_path / "anno.pkl").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataError, match="not a readable pickle"):
        load_hico(tmp_path)
    (tmp_path / "l").mkdir()
    with open(tmp_path / "l" / "anno.pkl", "wb") as f:
        pickle.dump([1, 2], f)
    with pytest.raises(DataError, match="must hold a dict"):
        load_hico(tmp_path / "l")


# ---- vocabulary -----------------------------------------------------------------------------------------------------
def test_load_vocabulary_json_and_tsv(tmp_path):
    (tmp_path / "v.json").write_text(json.dumps([["ride", "bicycle"], {"verb": "hold", "object": "cup"}]))
    assert load_vocabulary(tmp_path / "v.json") == [("ride", "bicycle"), ("hold", "cup")]
    (tmp_path / "v.tsv").write_text("id\tverb\tobject\n1\tride\tbicycle\n2\thold\tcup\n")
    assert load_vocabulary(tmp_path / "v.tsv", num_classes=2) == [("ride", "bicycle"), ("hold", "cup")]


@pytest.mark.parametrize(
    "name, text, match",
    [
        ("v.json", "[[\"ride\"]]", "entry 0"),
        ("v.json", "{\"a\": 1}", "JSON list"),
        ("v.json", "[", "not valid JSON"),
        ("v.tsv", "verb\tnoun\nride\tbicycle\n", "header must name"),
        ("v.csv", "verb,object\n", "unknown format"),
        ("v.tsv", "verb\tobject\nride\tbicycle\n", "1 classes, but the dataset has 2"),
    ],
)  # fmt: skip
def test_load_vocabulary_errors(tmp_path, name, text, match):
    (tmp_path / name).write_text(text)
    with pytest.raises(DataError, match=match):
        load_vocabulary(tmp_path / name, num_classes=2)


def test_load_vocabulary_reference_table():
    table = REFERENCE / "hico_600_classes.tsv"
    if not table.is_file():
        pytest.skip("shared reference data not available")
    names = load_vocabulary(table, num_classes=600)
    assert names[0] == ("board", "airplane") and names[9] == ("no_interaction", "airplane")
    assert names[152] == ("race", "motorcycle")


# ---- rebalancing ----------------------------------------------------------------------------------------------------
def test_rebalance_indices_spec_rule():
    n, c = 66, 7
    t = np.zeros((n, c))
    t[0, 0] = 1  # 1 positive -> rep 39
    t[0:20, 1] = 1  # 20 positives -> rep 1 -> never duplicated
    t[0:39, 2] = 1  # 39 positives -> rep 1
    t[[40, 41], 3] = 1  # 2 positives -> rep 19
    t[41:51, 4] = 1  # 10 positives -> rep 3; image 41 takes the max (19)
    t[51:65, 5] = 1  # 14 positives -> rep 2 (> 1, so 2 copies)
    # class 6: no positives; image 65: no positive at all
    idx = rebalance_indices(t, 40)
    expected_extra = [0] * 39 + [40] * 19 + [41] * 19 + sum(([i] * 3 for i in range(42, 51)), []) + sum(
        ([i] * 2 for i in range(51, 65)), []
    )
    assert idx[:n].tolist() == list(range(n))
    assert idx[n:].tolist() == expected_extra
    assert len(idx) == 66 + 39 + 19 + 19 + 27 + 28
    assert (np.bincount(idx, minlength=n)[1:20] == 1).all()  # 20..39-positive classes: no copies


def test_rebalance_indices_off_and_min_two():
    t = np.array([[1, 0], [0, 1], [0, 1]])
    assert rebalance_indices(t, 1).tolist() == [0, 1, 2]
    # min_samples 3: class 0 has 1 positive -> rep 2 -> 2 copies; class 1 has 2 -> ceil(1.5) - 1 = 1 -> none
    assert rebalance_indices(t, 3).tolist() == [0, 1, 2, 0, 0]


# ---- transforms -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("norm", ["clip", "half", "imagenet"])
def test_test_transform_normalises(norm):
    tf = build_transforms(24, train=False, normalisation=norm, cfg=DataConfig())
    out = tf(Image.new("RGB", (40, 30), (255, 0, 255)))
    assert out.shape == (3, 24, 24) and out.dtype == torch.float32
    mean, std = NORMALISATION[norm]
    expected = [(1 - mean[0]) / std[0], (0 - mean[1]) / std[1], (1 - mean[2]) / std[2]]
    assert torch.allclose(out.mean(dim=(1, 2)), torch.tensor(expected), atol=1e-5)


def test_half_normalisation_values():
    tf = build_transforms(8, train=False, normalisation="half", cfg=DataConfig())
    assert torch.allclose(tf(Image.new("RGB", (8, 8), (0, 0, 0))), torch.full((3, 8, 8), -1.0))
    assert torch.allclose(tf(Image.new("L", (8, 8), 255)), torch.full((3, 8, 8), 1.0))  # grayscale -> RGB


def test_train_transform_shapes_and_randomness():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8))
    tf = build_transforms(32, train=True, normalisation="clip", cfg=DataConfig())
    names = [type(t).__name__ for t in tf.transforms]
    assert names == ["RandomHorizontalFlip", "Resize", "ColorJitter", "ColorJitter", "RandomResizedCrop", "ToRGB",
                     "ToTensor", "Normalize"]  # fmt: skip
    torch.manual_seed(0)
    a, b = tf(img), tf(img)
    assert a.shape == (3, 32, 32) and not torch.equal(a, b)


def test_augment_off_uses_test_pipeline():
    img = Image.new("RGB", (20, 20), (10, 200, 30))
    plain = build_transforms(16, train=True, normalisation="half", cfg=DataConfig(augment=False))
    test = build_transforms(16, train=False, normalisation="half", cfg=DataConfig())
    assert torch.equal(plain(img), test(img))


def test_unknown_normalisation():
    with pytest.raises(ConfigError, match="did you mean 'clip'"):
        build_transforms(16, train=False, normalisation="clipp", cfg=DataConfig())


# ---- dataset --------------------------------------------------------------------------------------------------------
def _image_folder(tmp_path: Path, n: int) -> Path:
    for i in range(n):
        Image.new("RGB", (10, 10), (200, 100, 50)).save(tmp_path / f"{i}.jpg")
    return tmp_path


def test_dataset_items(tmp_path):
    files = np.array([f"{i}.jpg" for i in range(3)])
    labels = np.array([[1, 0, -2], [-1, 1, -2], [-2, -2, 1]], dtype=np.int8)
    tf = build_transforms(8, train=False, normalisation="half", cfg=DataConfig())
    ds = HicoDataset(_image_folder(tmp_path, 3), files, labels, indices=np.array([2, 0, 0]), transform=tf)
    assert len(ds) == 3
    img, targets, known, certain, index = ds[1]
    assert img.shape == (3, 8, 8) and index == 1
    assert targets.dtype == torch.float32 and targets.tolist() == [1.0, 0.0, 0.0]
    assert known.dtype == torch.bool and known.tolist() == [True, False, False]
    assert certain.tolist() == [True, False, True]
    assert ds[0][1].tolist() == [0.0, 0.0, 1.0] and ds[0][4] == 0
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert batch[0].shape == (3, 3, 8, 8) and batch[4].tolist() == [0, 1, 2]


def test_bad_images_substituted_then_error(tmp_path):
    folder = _image_folder(tmp_path, 20)
    (folder / "3.jpg").write_bytes(b"")  # zero bytes
    (folder / "5.jpg").unlink()  # missing
    data = (folder / "7.jpg").read_bytes()
    (folder / "7.jpg").write_bytes(data[: len(data) // 2])  # truncated
    files = np.array([f"{i}.jpg" for i in range(20)])
    labels = np.ones((20, 2), dtype=np.int8)
    tf = build_transforms(8, train=False, normalisation="half", cfg=DataConfig())
    ds = HicoDataset(folder, files, labels, transform=tf, max_bad_fraction=0.1)  # tolerates 2 of 20
    img, targets, *_ = ds[3]
    assert torch.equal(img, torch.full((3, 8, 8), -1.0))  # black, normalised
    assert targets.tolist() == [1.0, 1.0]
    ds[3]  # the same file again is not counted twice
    ds[5]
    assert sorted(ds.bad_files) == [3, 5] and ds.num_loaded == 3
    assert "FileNotFoundError" in ds.bad_files[5]
    with pytest.raises(DataError, match=r"3 of 20 images are unreadable \(e\.g\. 3\.jpg, 5\.jpg, 7\.jpg\)"):
        ds[7]
    assert scan_image_files(folder, files) == ["3.jpg", "5.jpg"]  # truncation needs decoding to notice


def test_dataset_length_mismatch(tmp_path):
    with pytest.raises(DataError, match="2 file names but 3 label rows"):
        HicoDataset(tmp_path, np.array(["a", "b"]), np.zeros((3, 2), dtype=np.int8))
