"""The embedded synthetic HICO: vocabulary, rendering, long-tail planning, on-disk layout, determinism, caching."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from raysweep.data.synth import hico as hico_mod
from raysweep.data.synth.hico import MARKER, ensure_synthetic_hico, generate_hico, image_labels, synthetic_hico_path
from raysweep.data.synth.plan import TAIL_COUNTS, long_tail_counts, pack, plan_split
from raysweep.data.synth.render import render_scene
from raysweep.data.synth.vocabulary import (
    COCO_CATEGORY_ID,
    HICO_VERB_ID,
    HOI_CLASSES,
    NO_INTERACTION,
    OBJECTS,
    VERBS,
    hoi_list,
    verb_ing,
)
from raysweep.errors import DataError
from raysweep.tasks.defr.config import SynthHicoConfig

SIZE = 32
N_TRAIN, N_TEST = 200, 80  # the smallest train split whose budget fits the Few@1/5/10 tail


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("a") / "hico"
    return generate_hico(out, seed=3, num_train=N_TRAIN, num_test=N_TEST, image_size=SIZE)


@pytest.fixture(scope="module")
def anno(synth) -> dict:
    with open(synth / "anno.pkl", "rb") as f:
        return pickle.load(f)


# ---- vocabulary ---------------------------------------------------------------------------------------------------
def test_classes_grouped_by_object_with_no_interaction_last():
    assert len(HOI_CLASSES) == 34 and len(set(HOI_CLASSES)) == 34
    blocks: list[str] = []
    for verb, obj in HOI_CLASSES:
        if not blocks or blocks[-1] != obj:
            blocks.append(obj)
    assert blocks == OBJECTS  # each object's classes are contiguous, in OBJECTS order
    for obj in OBJECTS:
        verbs = [v for v, o in HOI_CLASSES if o == obj]
        assert verbs[-1] == NO_INTERACTION and verbs[:-1] == sorted(verbs[:-1])
    assert sum(v == NO_INTERACTION for v, _ in HOI_CLASSES) == len(OBJECTS) == 8


def test_id_maps_cover_vocabulary():
    assert set(COCO_CATEGORY_ID) == set(OBJECTS) and set(HICO_VERB_ID) == set(VERBS)
    assert COCO_CATEGORY_ID["bicycle"] == 2 and HICO_VERB_ID["no_interaction"] == 58 and HICO_VERB_ID["ride"] == 77
    assert all(1 <= i <= 90 for i in COCO_CATEGORY_ID.values()) and all(1 <= i <= 117 for i in HICO_VERB_ID.values())


@pytest.mark.parametrize(
    "verb, expected",
    [("sit_on", "sitting on"), ("hold", "holding"), ("ride", "riding"), ("hop_on", "hopping on"),
     ("lie_on", "lying on"), ("no_interaction", "not interacting with"), ("exit", "exiting"), ("fly", "flying")],
)  # fmt: skip
def test_verb_ing(verb, expected):
    assert verb_ing(verb) == expected


def test_hoi_list_entries():
    entries = hoi_list()
    assert entries[0] == {"id": 1, "verb": "carry", "object": "ball", "verb_ing": "carrying"}
    assert [(e["verb"], e["object"]) for e in entries] == HOI_CLASSES and entries[-1]["id"] == 34


# ---- rendering ----------------------------------------------------------------------------------------------------
def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@pytest.mark.parametrize("size", [64, 224])
def test_render_every_class_boxes_inside_image(size):
    rng = np.random.default_rng(0)
    for cls in HOI_CLASSES:
        scene = render_scene([cls], size, rng)
        assert scene.image.size == (size, size) and scene.image.mode == "RGB"
        (pair,) = scene.pairs
        assert (pair.verb, pair.object) == cls
        for box in (pair.person_box, pair.object_box):
            assert 0 <= box[0] < box[2] <= size and 0 <= box[1] < box[3] <= size


def test_render_spatial_relations():
    rng = np.random.default_rng(1)
    for _ in range(5):
        far = render_scene([("no_interaction", "ball")], 128, rng).pairs[0]
        ride = render_scene([("ride", "bicycle")], 128, rng).pairs[0]
        assert not _overlap(far.person_box, far.object_box)
        assert _overlap(ride.person_box, ride.object_box)
        assert ride.person_box[1] < ride.object_box[1]  # the rider's head is above the bicycle


def test_render_several_pairs_and_determinism():
    hois = [("kick", "ball"), ("walk", "dog"), ("fly", "kite")]
    a = render_scene(hois, 64, np.random.default_rng(5))
    b = render_scene(hois, 64, np.random.default_rng(5))
    c = render_scene(hois, 64, np.random.default_rng(6))
    assert [(p.verb, p.object) for p in a.pairs] == hois
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image)) and a.pairs == b.pairs
    assert not np.array_equal(np.asarray(a.image), np.asarray(c.image))


def test_render_rejects_unknown_hoi():
    with pytest.raises(ValueError, match="ride"):
        render_scene([("ride", "cup")], 64, np.random.default_rng(0))


# ---- planning -----------------------------------------------------------------------------------------------------
def test_long_tail_counts():
    counts = long_tail_counts(34, 600, 400, np.random.default_rng(0))
    assert counts.sum() == 600
    assert sorted(counts)[: len(TAIL_COUNTS)] == sorted(TAIL_COUNTS)
    assert sorted(counts)[len(TAIL_COUNTS)] >= 11 and counts.max() > 5 * sorted(counts)[len(TAIL_COUNTS)]


def test_pack_places_each_class_once_per_image():
    rng = np.random.default_rng(0)
    counts = np.array([5, 3, 1, 0])
    images = pack(counts, np.array([2, 2, 2, 1, 1, 1]), rng)
    assert all(1 <= len(row) <= 2 and len(set(row)) == len(row) for row in images)
    assert np.bincount([c for row in images for c in row], minlength=4).tolist() == [5, 3, 1, 0]


def test_plan_split_sizes():
    images = plan_split(50, 34, long_tail=False, rng=np.random.default_rng(0))
    assert len(images) == 50 and all(1 <= len(r) <= 3 for r in images)


def test_image_labels_semantics():
    classes = [("a", "x"), ("b", "x"), ("no_interaction", "x"), ("a", "y"), ("no_interaction", "y")]
    labels = image_labels([[0], [1, 4], [3]], classes, np.random.default_rng(0))
    # ambiguity is random (3% of -1): compare with 0 mapped back to -1
    expected = np.array([[1, -1, -2], [-1, 1, -2], [-1, -1, -2], [-2, -1, 1], [-2, 1, -1]], dtype=float)
    assert np.array_equal(np.where(labels == 0, -1, labels), expected) and labels.dtype == np.float64


# ---- generated dataset --------------------------------------------------------------------------------------------
def test_layout(synth, anno):
    assert set(anno) == {"hoi_list", "files_train", "files_test", "anno_train", "anno_test"}
    assert [(e["verb"], e["object"]) for e in anno["hoi_list"]] == HOI_CLASSES
    for split, n, sub in (("train", N_TRAIN, "train2015"), ("test", N_TEST, "test2015")):
        files, labels = anno[f"files_{split}"], anno[f"anno_{split}"]
        assert isinstance(files, np.ndarray) and files.shape == (n,) and files.dtype.kind == "U"
        assert files[0] == f"HICO_{sub}_00000001.jpg"
        assert all(re.fullmatch(rf"HICO_{sub}_\d{{8}}\.jpg", f) for f in files)
        assert labels.shape == (34, n) and labels.dtype == np.float64
        assert set(np.unique(labels)) <= {1.0, 0.0, -1.0, -2.0}
        assert sorted(p.name for p in (synth / "images" / sub).iterdir()) == sorted(files)
    with Image.open(synth / "images" / "train2015" / anno["files_train"][0]) as img:
        assert img.format == "JPEG" and img.size == (SIZE, SIZE) and img.mode == "RGB"
    assert json.loads((synth / MARKER).read_text())["num_train"] == N_TRAIN


def test_labels_follow_hico_semantics(anno):
    objects = np.array([o for _, o in HOI_CLASSES])
    for labels in (anno["anno_train"], anno["anno_test"]):
        assert (labels == 1).any(axis=0).all()  # every image shows an interaction
        for obj in OBJECTS:
            block = labels[objects == obj]
            absent = (block == -2).all(axis=0)
            present = (block != -2).all(axis=0)
            assert (absent | present).all()  # an object is either annotated for all its classes or for none
            assert (block[:, present] == 1).any(axis=0).all()  # a present object takes part in a positive HOI
        assert 0 < (labels == 0).sum() < 0.1 * (labels == -1).sum()  # a small ambiguous fraction


def test_long_tail_train_and_covered_test(anno):
    pos_train = (anno["anno_train"] == 1).sum(axis=1)
    pos_test = (anno["anno_test"] == 1).sum(axis=1)
    assert (pos_train == 1).sum() >= 3  # Few@1
    assert (pos_train <= 5).sum() >= 7 and (pos_train <= 10).sum() >= 10  # Few@5, Few@10
    assert pos_train.max() >= 2 * np.median(pos_train)  # a head (small at this size; see test_long_tail_counts)
    assert pos_test.min() >= 3


def test_same_seed_is_byte_identical_other_seed_differs(synth, anno, tmp_path):
    again = generate_hico(tmp_path / "again", seed=3, num_train=N_TRAIN, num_test=N_TEST, image_size=SIZE)
    other = generate_hico(tmp_path / "other", seed=4, num_train=N_TRAIN, num_test=N_TEST, image_size=SIZE)
    assert (again / "anno.pkl").read_bytes() == (synth / "anno.pkl").read_bytes()
    assert (other / "anno.pkl").read_bytes() != (synth / "anno.pkl").read_bytes()
    for name in anno["files_train"][[0, 7, 150]]:
        path = Path("images") / "train2015" / name
        assert (again / path).read_bytes() == (synth / path).read_bytes()
        assert (other / path).read_bytes() != (synth / path).read_bytes()


def test_complete_folder_is_reused(synth):
    stamp = (synth / "anno.pkl").stat().st_mtime_ns
    assert generate_hico(synth, seed=3, num_train=N_TRAIN, num_test=N_TEST, image_size=SIZE) == synth
    assert (synth / "anno.pkl").stat().st_mtime_ns == stamp


def test_other_parameters_or_incomplete_folder_is_an_error(tmp_path):
    out = generate_hico(tmp_path / "d", seed=0, num_train=10, num_test=10, image_size=SIZE)
    with pytest.raises(DataError, match="other parameters"):
        generate_hico(out, seed=1, num_train=10, num_test=10, image_size=SIZE)
    (out / MARKER).unlink()
    with pytest.raises(DataError, match="incomplete"):
        generate_hico(out, seed=0, num_train=10, num_test=10, image_size=SIZE)
    generate_hico(out, seed=1, num_train=10, num_test=10, image_size=SIZE, overwrite=True)
    assert json.loads((out / MARKER).read_text())["seed"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["d"]  # no temporary folder left behind


def test_losing_the_rename_race_keeps_the_winner(tmp_path, monkeypatch):
    out = tmp_path / "race"
    real = hico_mod._generate_into

    def generate_while_another_process_finishes(tmp, *args):
        real(tmp, *args)
        monkeypatch.setattr(hico_mod, "_generate_into", real)
        generate_hico(out, seed=0, num_train=10, num_test=10, image_size=SIZE)  # the "other process" wins

    monkeypatch.setattr(hico_mod, "_generate_into", generate_while_another_process_finishes)
    assert generate_hico(out, seed=0, num_train=10, num_test=10, image_size=SIZE) == out
    assert (out / MARKER).is_file() and [p.name for p in tmp_path.iterdir()] == ["race"]


def test_failed_generation_leaves_nothing(tmp_path, monkeypatch):
    def boom(tmp, *args):
        (tmp / "images").mkdir(parents=True)
        raise RuntimeError("disk full")

    monkeypatch.setattr(hico_mod, "_generate_into", boom)
    with pytest.raises(RuntimeError):
        generate_hico(tmp_path / "x", seed=0, num_train=10, num_test=10, image_size=SIZE)
    assert list(tmp_path.iterdir()) == []


def test_ensure_synthetic_hico_path(tmp_path):
    cfg = SynthHicoConfig(num_train=10, num_test=12, image_size=32, seed=2)
    path = ensure_synthetic_hico(tmp_path, cfg)
    assert path == tmp_path / "synth_hico" / f"n10-12_s32_seed2_v{hico_mod.GENERATOR_VERSION}"
    assert path == synthetic_hico_path(tmp_path, 10, 12, 32, 2) and (path / "anno.pkl").is_file()
    assert ensure_synthetic_hico(tmp_path, cfg) == path
