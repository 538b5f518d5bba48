"""HICO-DET loader (QPIC layout): validation errors, id mappings, rare counting, image-level labels; and the
synthetic HICO-DET generator: layout, determinism, long tail, GT-less test images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from raysweep.data.hicodet import (
    CORRECT_MAT_FILE,
    TEST_FILE,
    TRAIN_FILE,
    VALID_COCO_IDS,
    coco_id_to_index,
    image_level_labels,
    index_to_coco_id,
    known_objects,
    load_hicodet,
    triplet_counts,
)
from raysweep.data.synth.hicodet import (
    MARKER,
    correct_matrix,
    ensure_synthetic_hicodet,
    generate_hicodet,
    pixel_box,
    synthetic_hicodet_path,
)
from raysweep.data.synth.vocabulary import HOI_CLASSES
from raysweep.errors import ConfigError, DataError
from raysweep.tasks.hqm.config import SynthHicoDetConfig

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
RACE, RIDE = 73, 77  # verb ids (1-based)
MOTORCYCLE, HORSE = 4, 19  # COCO ids


def _record(name: str = "HICO_test2015_00000001.jpg") -> dict:
    return {"file_name": name, "img_id": 1,
            "annotations": [{"bbox": [207, 32, 426, 299], "category_id": 1},
                            {"bbox": [58, 97, 571, 404], "category_id": MOTORCYCLE}],
            "hoi_annotation": [{"subject_id": 0, "object_id": 1, "category_id": RACE, "hoi_category_id": 153}]}


def _write(root: Path, train: list | None = None, test: list | None = None, corre: np.ndarray | None = None) -> Path:
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / TRAIN_FILE).write_text(json.dumps(train if train is not None else [_record("HICO_train2015_1.jpg")]))
    (root / TEST_FILE).write_text(json.dumps(test if test is not None else [_record()]))
    if corre is None:
        corre = np.zeros((117, 80))
        for verb, obj in ((RACE, MOTORCYCLE), (RIDE, MOTORCYCLE), (RIDE, HORSE)):
            corre[verb - 1, coco_id_to_index(obj)] = 1
    np.save(root / CORRECT_MAT_FILE, corre)
    return root


def test_loads_the_qpic_layout_from_the_root_or_the_annotations_folder(tmp_path):
    root = _write(tmp_path)
    for where in (root, root / "annotations"):
        ann = load_hicodet(where)
        assert ann.root == root
        assert len(ann.train) == len(ann.test) == 1
        assert ann.correct_mat.dtype == bool and ann.correct_mat.shape == (117, 80) and ann.num_classes == 3


def test_coco_id_and_qpic_index_mapping():
    assert len(VALID_COCO_IDS) == 80 and len(set(VALID_COCO_IDS)) == 80
    assert [coco_id_to_index(c) for c in (1, 2, 3, 4, 5, 13, 90)] == [0, 1, 2, 3, 4, 11, 79]
    assert all(index_to_coco_id(coco_id_to_index(c)) == c for c in VALID_COCO_IDS)
    with pytest.raises(ValueError, match="12"):
        coco_id_to_index(12)
    with pytest.raises(ValueError):
        index_to_coco_id(80)


def test_triplet_counts_count_every_hoi_entry_by_qpic_triplet():
    rec = _record()
    rec["hoi_annotation"] = rec["hoi_annotation"] * 3 + [{"subject_id": 0, "object_id": 1, "category_id": RIDE}]
    counts = triplet_counts([rec, _record()])
    assert counts == {(0, 3, RACE - 1): 4, (0, 3, RIDE - 1): 1}


def test_image_level_labels_and_known_objects():
    empty = {"file_name": "e.jpg", "annotations": [], "hoi_annotation": []}
    assert image_level_labels([_record(), empty]) == [{(RACE - 1, 3)}, set()]
    known = known_objects([_record(), empty])
    assert known.shape == (2, 80) and known[0].tolist() == [i == 3 for i in range(80)] and not known[1].any()


def _set(path: list, value):
    def mutate(rec: dict) -> None:
        target = rec
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return mutate


@pytest.mark.parametrize("mutate, message", [
    (_set(["hoi_annotation", 0, "object_id"], 2), r"record 0 .*hoi_annotation\[0\]\.object_id = 2 is out of range"),
    (_set(["hoi_annotation", 0, "subject_id"], -1), r"subject_id = -1 is out of range"),
    (_set(["annotations", 1, "category_id"], 12), r"annotations\[1\]\.category_id = 12 is not one of the 80"),
    (_set(["hoi_annotation", 0, "category_id"], 118), r"verb id\) = 118 is outside 1\.\.117"),
    (_set(["hoi_annotation", 0, "category_id"], 0), r"verb id\) = 0 is outside"),
    (_set(["hoi_annotation", 0, "hoi_category_id"], 601), r"hoi_category_id = 601 is outside 1\.\.600"),
    (_set(["annotations", 0, "bbox"], [50, 10, 40, 20]), r"annotations\[0\]\.bbox = \[50, 10, 40, 20\] needs"),
    (_set(["annotations", 0, "bbox"], [-1, 10, 40, 20]), r"needs 0 <= x1 <= x2"),
    (_set(["annotations", 0, "bbox"], [1, 2, 3]), r"must be four finite numbers"),
    (_set(["width"], 400), r"annotations\[0\]\.bbox = \[207, 32, 426, 299\] lies outside the image \(width 400"),
    (_set(["annotations", 0, "category_id"], 3), r"subject box .* category_id 3; HICO-DET subjects are persons"),
    (_set(["hoi_annotation", 0, "category_id"], 1), r"\(verb id 1, object COCO id 4\) is not a valid HOI class"),
    (lambda rec: rec.pop("hoi_annotation"), r"record 0: missing key 'hoi_annotation'"),
])
def test_malformed_records_name_file_record_and_field(tmp_path, mutate, message):
    rec = _record()
    mutate(rec)
    _write(tmp_path, test=[rec])
    with pytest.raises(DataError, match=message) as err:
        load_hicodet(tmp_path)
    assert "test_hico.json" in str(err.value) and "\n" not in str(err.value)


def test_a_one_pixel_box_is_valid_under_the_plus_one_convention(tmp_path):
    rec = _record()
    rec["annotations"][1]["bbox"] = [58, 97, 58, 97]
    _write(tmp_path, test=[rec])
    assert load_hicodet(tmp_path).test[0]["annotations"][1]["bbox"] == [58, 97, 58, 97]


def test_hoi_ids_must_name_one_class(tmp_path):
    rec = _record()
    rec["hoi_annotation"].append({"subject_id": 0, "object_id": 1, "category_id": RIDE, "hoi_category_id": 153})
    _write(tmp_path, test=[rec])
    with pytest.raises(DataError, match="hoi_category_id 153 names"):
        load_hicodet(tmp_path)


@pytest.mark.parametrize("broken, message", [
    ("missing_test", "missing file .*test_hico.json"),
    ("missing_corre", "missing file .*corre_hico.npy"),
    ("bad_json", "trainval_hico.json' is not valid JSON"),
    ("not_a_list", "expected a JSON list of image records, got dict"),
    ("corre_shape", r"has shape \(80, 117\); expected \(117, 80\)"),
    ("corre_values", "holds values other than 0 and 1"),
    ("no_root", "is not a directory"),
])
def test_missing_or_broken_files(tmp_path, broken, message):
    root = _write(tmp_path / "root")
    if broken == "missing_test":
        (root / TEST_FILE).unlink()
    elif broken == "missing_corre":
        (root / CORRECT_MAT_FILE).unlink()
    elif broken == "bad_json":
        (root / TRAIN_FILE).write_text('[{"file_name": ')
    elif broken == "not_a_list":
        (root / TRAIN_FILE).write_text('{"file_name": "a.jpg"}')
    elif broken == "corre_shape":
        np.save(root / CORRECT_MAT_FILE, np.zeros((80, 117)))
    elif broken == "corre_values":
        np.save(root / CORRECT_MAT_FILE, np.full((117, 80), 2.0))
    elif broken == "no_root":
        root = tmp_path / "nowhere"
    with pytest.raises(DataError, match=message):
        load_hicodet(root)


def test_check_images_requires_the_files_and_reads_their_sizes(tmp_path):
    root = _write(tmp_path)
    with pytest.raises(DataError, match="missing image folder"):
        load_hicodet(root, check_images=True)
    for split, name in (("train2015", "HICO_train2015_1.jpg"), ("test2015", "HICO_test2015_00000001.jpg")):
        (root / "images" / split).mkdir(parents=True)
        Image.new("RGB", (640, 480)).save(root / "images" / split / name)
    assert len(load_hicodet(root, check_images=True).test) == 1
    Image.new("RGB", (500, 480)).save(root / "images" / "test2015" / "HICO_test2015_00000001.jpg")
    with pytest.raises(DataError, match=r"bbox = \[58, 97, 571, 404\] lies outside the 500 x 480 image"):
        load_hicodet(root, check_images=True)
    (root / "images" / "test2015" / "HICO_test2015_00000001.jpg").unlink()
    with pytest.raises(DataError, match="does not exist"):
        load_hicodet(root, check_images=True)


def test_correct_matrix_from_the_real_class_table_has_600_ones():
    table = REFERENCE / "hico_600_classes.tsv"
    if not table.is_file():
        pytest.skip("shared/reference/hico_600_classes.tsv is not available")
    lines = table.read_text().splitlines()
    header = lines[0].split("\t")
    rows = [dict(zip(header, line.split("\t"))) for line in lines[1:]]
    corre = np.zeros((117, 80), dtype=bool)
    for row in rows:
        corre[int(row["verb_id_1based"]) - 1, coco_id_to_index(int(row["coco_category_id"]))] = True
        assert coco_id_to_index(int(row["coco_category_id"])) == int(row["qpic_obj_idx_0based"])
    assert corre.sum() == 600 and corre.any(axis=1).all() and corre.any(axis=0).all()
    assert int(rows[152]["verb_id_1based"]) == RACE and int(rows[152]["coco_category_id"]) == MOTORCYCLE


# ------------------------------------------------------------------------------------------------------------
# Synthetic HICO-DET

N_TRAIN, N_TEST, SIZE = 180, 40, 32  # the smallest train split whose budget fits the rare tail


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return generate_hicodet(tmp_path_factory.mktemp("s") / "hicodet", seed=5, num_train=N_TRAIN, num_test=N_TEST,
                            image_size=SIZE)


def test_synthetic_layout_loads_with_image_checks(synth):
    assert json.loads((synth / MARKER).read_text())["seed"] == 5
    ann = load_hicodet(synth, check_images=True)
    assert len(ann.train) == N_TRAIN and len(ann.test) == N_TEST
    assert ann.train[0]["file_name"] == "HICO_train2015_00000001.jpg" and ann.train[0]["img_id"] == 1
    assert (synth / "images" / "test2015" / f"HICO_test2015_{N_TEST:08d}.jpg").is_file()
    assert set(ann.train[0]) == {"file_name", "img_id", "annotations", "hoi_annotation"}  # QPIC's keys only
    assert Image.open(synth / "images" / "train2015" / ann.train[0]["file_name"]).size == (SIZE, SIZE)


def test_synthetic_vocabulary_maps_onto_hico_id_spaces(synth):
    ann = load_hicodet(synth)
    assert ann.num_classes == len(HOI_CLASSES) == 34
    assert (ann.correct_mat == correct_matrix().astype(bool)).all()
    pairs = {len(r["hoi_annotation"]) for r in ann.train}
    assert max(pairs) >= 2  # several pairs per image
    hoi_ids = {h["hoi_category_id"] for r in ann.train + ann.test for h in r["hoi_annotation"]}
    assert hoi_ids <= set(range(1, 35))


def test_synthetic_training_split_is_long_tailed_and_test_has_gt_less_images(synth):
    ann = load_hicodet(synth)
    counts = triplet_counts(ann.train)
    assert len(counts) == 34
    assert any(c < 10 for c in counts.values()) and any(c >= 10 for c in counts.values())
    empty = [r for r in ann.test if not r["hoi_annotation"]]
    assert len(empty) == 1 and empty[0]["annotations"] == []  # round(3 % of 40) images without annotation


def test_synthetic_generation_is_deterministic(synth, tmp_path):
    again = generate_hicodet(tmp_path / "again", seed=5, num_train=N_TRAIN, num_test=N_TEST, image_size=SIZE)
    files = sorted(p.relative_to(synth) for p in synth.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert all((synth / f).read_bytes() == (again / f).read_bytes() for f in files)
    other = generate_hicodet(tmp_path / "other", seed=6, num_train=N_TRAIN, num_test=N_TEST, image_size=SIZE)
    assert (other / TEST_FILE).read_bytes() != (synth / TEST_FILE).read_bytes()


def test_synthetic_folder_is_reused_or_refused(synth, tmp_path):
    assert generate_hicodet(synth, seed=5, num_train=N_TRAIN, num_test=N_TEST, image_size=SIZE) == synth
    with pytest.raises(DataError, match="was generated with"):
        generate_hicodet(synth, seed=6, num_train=N_TRAIN, num_test=N_TEST, image_size=SIZE)
    (tmp_path / "half").mkdir()
    with pytest.raises(DataError, match="incomplete"):
        generate_hicodet(tmp_path / "half", seed=5, num_train=10, num_test=4, image_size=SIZE)
    with pytest.raises(ConfigError, match="num_test must be >= 2"):
        generate_hicodet(tmp_path / "x", seed=5, num_train=10, num_test=1, image_size=SIZE)
    assert not list(tmp_path.glob("*.tmp-*"))


def test_ensure_synthetic_hicodet_uses_the_cache_path(tmp_path):
    cfg = SynthHicoDetConfig(num_train=10, num_test=10, image_size=32, seed=1)
    path = ensure_synthetic_hicodet(tmp_path, cfg)
    assert path == synthetic_hicodet_path(tmp_path, 10, 10, 32, 1) and (path / MARKER).is_file()
    assert len(load_hicodet(path).test) == 10


def test_pixel_box_is_inclusive_and_inside_the_image():
    assert pixel_box((3.2, 4.0, 10.0, 12.5), 32) == [3, 4, 9, 12]
    assert pixel_box((0.0, 0.0, 32.0, 32.0), 32) == [0, 0, 31, 31]
    assert pixel_box((5.4, 5.4, 5.6, 5.6), 32) == [5, 5, 5, 5]
