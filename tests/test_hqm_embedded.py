"""The embedded default of the `hqm` task: the synthetic HICO-DET scene options and the config that selects them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from raysweep.data.hicodet import coco_id_to_index, load_hicodet, triplet_counts
from raysweep.data.synth.hicodet import (
    EMBEDDED,
    HICO_LIKE,
    MARKER,
    Scene,
    ensure_synthetic_hicodet,
    generate_hicodet,
    scene_of,
    synthetic_hicodet_path,
)
from raysweep.data.synth.plan import PAIRS_PER_IMAGE_P, plan_split
from raysweep.data.synth.render import render_scene
from raysweep.data.synth.vocabulary import COCO_CATEGORY_ID, HOI_CLASSES, OBJECTS
from raysweep.errors import ConfigError
from raysweep.tasks.hqm.config import HqmConfig, SynthHicoDetConfig
from raysweep.tasks.hqm.task import HqmTask


def test_config_defaults_select_the_embedded_scene() -> None:
    cfg = SynthHicoDetConfig()
    assert scene_of(cfg) == EMBEDDED
    assert (cfg.num_train, cfg.num_test, cfg.image_size) == (400, 300, 128)
    assert len(EMBEDDED.classes) == 26 and len(HICO_LIKE.classes) == len(HOI_CLASSES) == 34
    assert set(OBJECTS) - set(EMBEDDED.objects) == {"book", "cup"}  # the two smallest objects
    with pytest.raises(ValidationError, match="data.synth.objects"):
        HqmConfig.model_validate({"data": {"synth": {"objects": ["ball", "sofa"]}}})
    with pytest.raises(ValidationError, match="data.synth.pairs_per_image"):
        HqmConfig.model_validate({"data": {"synth": {"pairs_per_image": [0.5, 0.4, 0.0]}}})
    with pytest.raises(ValidationError):
        HqmConfig.model_validate({"data": {"synth": {"object_scale": 10}}})


@pytest.mark.parametrize("kwargs, message", [({"objects": ("ball", "ball")}, "objects"),
                                             ({"objects": ()}, "objects"),
                                             ({"pairs_per_image": (0.5, 0.5, 0.5)}, "pairs_per_image"),
                                             ({"object_scale": 0.1}, "object_scale")])
def test_bad_scenes_are_config_errors(kwargs, message) -> None:
    with pytest.raises(ConfigError, match=message):
        Scene(**kwargs)


def test_plan_split_draws_pairs_per_image_from_the_given_probabilities() -> None:
    one = plan_split(40, 26, long_tail=False, rng=np.random.default_rng(0), pairs_per_image_p=(1.0, 0.0, 0.0))
    assert [len(x) for x in one] == [1] * 40
    default = plan_split(40, 34, long_tail=True, rng=np.random.default_rng(3))
    explicit = plan_split(40, 34, long_tail=True, rng=np.random.default_rng(3), pairs_per_image_p=PAIRS_PER_IMAGE_P)
    assert default == explicit


def test_object_scale_enlarges_objects_relative_to_people() -> None:
    def ratio(scale: float) -> float:
        pair = render_scene([("hold", "ball")], 128, np.random.default_rng(7), object_scale=scale).pairs[0]
        area = lambda b: (b[2] - b[0]) * (b[3] - b[1])  # noqa: E731
        return area(pair.object_box) / area(pair.person_box)

    assert ratio(1.8) > 2.5 * ratio(1.0)
    a = render_scene([("kick", "ball")], 64, np.random.default_rng(5))
    b = render_scene([("kick", "ball")], 64, np.random.default_rng(5), object_scale=1.0)
    assert a.pairs == b.pairs and a.image.tobytes() == b.image.tobytes()  # the default is unchanged


@pytest.fixture(scope="module")
def embedded(tmp_path_factory) -> Path:
    cfg = SynthHicoDetConfig(num_train=30, num_test=12, image_size=64, seed=2)
    return ensure_synthetic_hicodet(tmp_path_factory.mktemp("cache"), cfg)


def test_embedded_dataset_has_one_pair_per_image_over_the_subset(embedded: Path) -> None:
    ann = load_hicodet(embedded, check_images=True)
    assert all(len(r["hoi_annotation"]) == 1 and len(r["annotations"]) == 2 for r in ann.train)
    assert sum(not r["hoi_annotation"] for r in ann.test) == 1  # the GT-less test image
    wanted = {COCO_CATEGORY_ID[o] for o in EMBEDDED.objects}
    objects = {a["category_id"] for r in ann.train + ann.test for a in r["annotations"]} - {1}
    assert objects <= wanted
    # hoi ids keep the full 34-class numbering; corre_hico.npy holds exactly the 26 classes
    for r in ann.train + ann.test:
        for h in r["hoi_annotation"]:
            verb, obj = HOI_CLASSES[h["hoi_category_id"] - 1]
            assert obj in EMBEDDED.objects and COCO_CATEGORY_ID[obj] == r["annotations"][h["object_id"]]["category_id"]
    assert ann.correct_mat.sum() == 26
    assert not ann.correct_mat[:, coco_id_to_index(COCO_CATEGORY_ID["cup"])].any()
    assert sum(triplet_counts(ann.train).values()) == 30
    marker = json.loads((embedded / MARKER).read_text())
    assert marker["objects"] == list(EMBEDDED.objects) and marker["object_scale"] == 1.8
    assert marker["pairs_per_image"] == [1.0, 0.0, 0.0] and marker["num_classes"] == 26


def test_cache_paths_differ_by_scene_and_default_to_the_embedded_one(tmp_path: Path, embedded: Path) -> None:
    assert embedded == synthetic_hicodet_path(embedded.parents[1], 30, 12, 64, 2)
    assert synthetic_hicodet_path(tmp_path, 30, 12, 64, 2, HICO_LIKE) != synthetic_hicodet_path(tmp_path, 30, 12, 64, 2)
    full = generate_hicodet(tmp_path / "full", seed=2, num_train=30, num_test=12, image_size=64)
    assert json.loads((full / MARKER).read_text())["num_classes"] == 34


def test_the_cli_writes_the_embedded_dataset_byte_for_byte(tmp_path: Path, embedded: Path, capsys) -> None:
    """`raysweep data synth hicodet` takes its defaults from data.synth: the same options give the cached dataset."""
    from support import run_cli

    code, _, err = run_cli(["data", "synth", "hicodet", "--out", str(tmp_path / "d"), "--num-train", "30",
                            "--num-test", "12", "--image-size", "64", "--seed", "2"], capsys)
    assert code == 0, err
    files = sorted(p.relative_to(embedded) for p in embedded.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "d") for p in (tmp_path / "d").rglob("*") if p.is_file())
    assert all((embedded / f).read_bytes() == (tmp_path / "d" / f).read_bytes() for f in files)


def test_prepare_checks_the_pretrained_path_before_anything_runs(tmp_path: Path) -> None:
    cfg = HqmConfig.model_validate({"model": {"pretrained": str(tmp_path / "detr-r50.pth")}})
    with pytest.raises(ConfigError, match="model.pretrained"):
        HqmTask.prepare(cfg, tmp_path)
    assert not (tmp_path / "synth_hicodet").exists()


def test_prepare_loads_the_pretrained_checkpoint_once_and_refuses_one_that_does_not_fit(tmp_path: Path) -> None:
    from raysweep.tasks.hqm.model import build_model

    small = {"num_queries": 4, "d_model": 32, "nhead": 2, "dim_feedforward": 64, "tiny_width": 8, "enc_layers": 1,
             "dec_layers": 1}
    synth = {"num_train": 10, "num_test": 10, "image_size": 64}
    source = HqmConfig.model_validate({"model": small})
    torch.save({"model": build_model(source, 80, 117).state_dict()}, tmp_path / "qpic.pth")
    cfg = HqmConfig.model_validate({"data": {"synth": synth}, "model": {**small, "pretrained": str(tmp_path / "qpic.pth")}})
    HqmTask.prepare(cfg, tmp_path / "cache")
    markers = list((tmp_path / "cache" / "pretrained_checks").iterdir())
    assert len(markers) == 1 and "qpic checkpoint" in markers[0].read_text() and "0 left fresh" in markers[0].read_text()
    # another model size: the file does not fit, and that is known before any trial starts
    wider = HqmConfig.model_validate({"data": {"synth": synth},
                                      "model": {**small, "d_model": 64, "pretrained": str(tmp_path / "qpic.pth")}})
    with pytest.raises(ConfigError, match=r"model.pretrained .*shapes do not fit"):
        HqmTask.prepare(wider, tmp_path / "cache")
