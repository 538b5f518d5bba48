"""A synthetic V-COCO in QPIC's layout, plus the official ground-truth files for its test split.

Layout (what `raysweep.data.vcoco.load_vcoco` and QPIC's loader read from a real V-COCO folder):

    <out>/annotations/trainval_vcoco.json   records {file_name, annotations, hoi_annotation}
    <out>/annotations/test_vcoco.json
    <out>/annotations/corre_vcoco.npy       [29, 80] 0/1 verb x object validity (float64, like QPIC's)
    <out>/images/train2014/COCO_train2014_%012d.jpg, <out>/images/val2014/COCO_val2014_%012d.jpg
    <out>/official/vcoco_test.json, instances_vcoco_all_2014.json, vcoco_test.ids   (s-gupta/v-coco's format)
    <out>/.complete                         JSON of the generation parameters, written last

The pictures are the synthetic HICO-DET's (`synth.render`: stick figures with objects); each drawn interaction is
labelled with V-COCO actions:

| drawn | V-COCO labels of the person (role object = the drawn object unless noted) |
|---|---|
| hold X | hold_obj, stand |
| carry X | carry_obj, walk |
| throw ball / kick ball | throw_obj / kick_obj |
| ride bicycle / sit_on chair | ride_instr / sit_instr |
| look_at X | look_obj, stand |
| fly kite | hold_obj and look_obj (the kite), stand |
| walk dog / bicycle | walk (agent only: the object is boxed but takes no role) |
| no_interaction | stand, or (half of them) annotated with no action at all |

So both kinds of object-less verb occur: agent-only actions (stand, walk), and role actions whose object is
missing: with probability `missing_object` a role-taking pair's object gets no COCO annotation (drawn but never
boxed, as in V-COCO when the object is out of view or unlabelled), and its hoi entries have object_id -1. In images
with several people, a person other than the first is left out of V-COCO with probability `unannotated_person` (the
official evaluator ignores such persons; QPIC's layout cannot tell them from annotated persons without action).

Image ids are COCO-like (train 1.., test 100001..); records are in id order (QPIC's real files are in Python 2 hash
order). Generation is deterministic and atomic (`publish`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from raysweep.data.hicodet import NUM_OBJECTS, PERSON_COCO_ID, coco_id_to_index
from raysweep.data.synth.plan import plan_split
from raysweep.data.synth.publish import check_sizes, per_image, publish, save_jpeg, write_records
from raysweep.data.synth.render import render_scene
from raysweep.data.synth.scene import EMBEDDED as HICODET_EMBEDDED
from raysweep.data.synth.scene import Scene
from raysweep.data.synth.vocabulary import COCO_CATEGORY_ID
from raysweep.data.vcoco import (
    ACTION_NAMES,
    ACTIONS,
    CORRECT_MAT_FILE,
    IMAGE_DIRS,
    NUM_VERBS,
    TEST_FILE,
    TRAIN_FILE,
    VERB_ACTION,
    VERBS,
)
from raysweep.errors import ConfigError

GENERATOR_VERSION = 1
TEST_ID_OFFSET = 100_000
_STREAM = 29  # separates this generator's random streams from the other synthetic datasets'
OFFICIAL_DIR = "official"
OFFICIAL_FILES = ("vcoco_test.json", "instances_vcoco_all_2014.json", "vcoco_test.ids")
COCO_NAMES = {"ball": "sports ball", "bicycle": "bicycle", "book": "book", "chair": "chair", "cup": "cup",
              "dog": "dog", "kite": "kite", "umbrella": "umbrella"}

# drawn verb -> [(V-COCO verb, takes the drawn object as its role object)]
LABELS: dict[str, tuple[tuple[str, bool], ...]] = {
    "hold": (("hold_obj", True), ("stand", False)),
    "carry": (("carry_obj", True), ("walk", False)),
    "throw": (("throw_obj", True),),
    "kick": (("kick_obj", True),),
    "ride": (("ride_instr", True),),
    "sit_on": (("sit_instr", True),),
    "look_at": (("look_obj", True), ("stand", False)),
    "fly": (("hold_obj", True), ("look_obj", True), ("stand", False)),
    "walk": (("walk", False),),
    "no_interaction": (("stand", False),),
}
# verbs whose V-COCO include list is not "any object": the objects this vocabulary pairs them with
_SPECIFIC = {"ride_instr": ("bicycle",), "sit_instr": ("chair",), "throw_obj": ("ball",), "kick_obj": ("ball",)}


@dataclass(frozen=True)
class VcocoScene(Scene):
    """What the images show (objects, 1/2/3 pairs per image, object size) and how the labels lose objects/persons."""

    dataset: ClassVar[str] = "synthetic V-COCO"

    missing_object: float = 0.2
    unannotated_person: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("missing_object", "unannotated_person"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ConfigError(f"{self.dataset}: {key} must be in [0, 1), got {getattr(self, key)!r}")

    def as_dict(self) -> dict:
        return {**super().as_dict(), "missing_object": float(self.missing_object),
                "unannotated_person": float(self.unannotated_person)}


FULL = VcocoScene()
EMBEDDED = VcocoScene(objects=HICODET_EMBEDDED.objects, pairs_per_image=HICODET_EMBEDDED.pairs_per_image,
                      object_scale=HICODET_EMBEDDED.object_scale)


def correct_matrix() -> np.ndarray:
    """[29, 80] float64 0/1: all ones for the agent-only verbs and the verbs V-COCO allows with any object, else the
    objects this vocabulary pairs the verb with (V-COCO's other verbs have no synthetic object: zero rows)."""
    mat = np.zeros((NUM_VERBS, NUM_OBJECTS))
    any_object = {"hold_obj", "look_obj", "carry_obj", "cut_obj", "point_instr"}
    for v, name in enumerate(VERBS):
        if VERB_ACTION[v][1] < 0 or name in any_object:
            mat[v] = 1.0
        for obj in _SPECIFIC.get(name, ()):
            mat[v, coco_id_to_index(COCO_CATEGORY_ID[obj])] = 1.0
    return mat


def _coco_box(box: tuple[float, float, float, float]) -> list[float]:
    """Continuous xyxy -> COCO xywh, rounded to 2 decimals as COCO's files are."""
    x0, y0, x1, y1 = box
    return [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)]


def _label(verb: str, rng: np.random.Generator) -> tuple[tuple[str, bool], ...]:
    if verb == "no_interaction" and rng.random() < 0.5:
        return ()  # annotated in V-COCO, no action
    return LABELS[verb]


def _write_split(root: Path, split: str, split_id: int, seed: int, n: int, image_size: int, scene: VcocoScene,
                 progress: bool, ann_ids: list[int]) -> tuple[list[dict], list[dict]]:
    """Images and QPIC records of one split; returns (records, per-image COCO/V-COCO facts for the official files)."""
    classes = scene.classes
    plan_rng = np.random.default_rng([seed, _STREAM, split_id, 0])
    plan = plan_split(n, len(classes), long_tail=False, rng=plan_rng, pairs_per_image_p=scene.pairs_per_image)
    folder = root / IMAGE_DIRS[split]
    folder.mkdir(parents=True)
    records, facts = [], []
    for i, shown in per_image(enumerate(plan), n, f"synthetic V-COCO {folder.name}", progress):
        image_id = i + 1 + (TEST_ID_OFFSET if split == "test" else 0)
        name = f"COCO_{folder.name}_{image_id:012d}.jpg"
        rng = np.random.default_rng([seed, _STREAM, split_id, 1, i])
        drawn = render_scene([classes[c] for c in shown], image_size, rng, object_scale=scene.object_scale)
        save_jpeg(drawn.image, folder / name)
        annotations, hois, coco_anns, persons = [], [], [], []
        for k, pair in enumerate(drawn.pairs):
            labels = _label(pair.verb, rng)
            takes_role = any(role for _, role in labels)
            annotated = k == 0 or rng.random() >= scene.unannotated_person
            object_boxed = not (takes_role and rng.random() < scene.missing_object)
            s = len(annotations)
            annotations.append({"category_id": PERSON_COCO_ID, "bbox": pair.person_box})
            o = -1
            if object_boxed:
                o = len(annotations)
                annotations.append({"category_id": COCO_CATEGORY_ID[pair.object], "bbox": pair.object_box})
            if annotated:
                for verb, role in labels:
                    hois.append({"subject_id": s, "object_id": o if role else -1,
                                 "category_id": VERBS.index(verb)})
                persons.append((s, o, labels))
        for a in annotations:
            ann_ids.append(len(ann_ids) + 1)
            x, y, w, h = _coco_box(a["bbox"])
            coco_anns.append({"id": ann_ids[-1], "image_id": image_id, "category_id": a["category_id"],
                              "bbox": [x, y, w, h], "area": round(w * h, 2), "iscrowd": 0})
            a["bbox"] = [x, y, round(x + w, 2), round(y + h, 2)]
        records.append({"file_name": name, "annotations": annotations, "hoi_annotation": hois})
        facts.append({"image": {"id": image_id, "file_name": name, "width": image_size, "height": image_size},
                      "annotations": coco_anns, "persons": persons})
    write_records(root / (TRAIN_FILE if split == "train" else TEST_FILE), records)
    return records, facts


def _write_official(folder: Path, facts: list[dict], objects: tuple[str, ...]) -> None:
    """vcoco_test.json (26 per-action records), the COCO instances file and the ids file of the test split."""
    folder.mkdir()
    image_ids, agent_ids, labels, roles = [], [], [], []
    for fact in facts:
        anns = fact["annotations"]
        for s, o, person_labels in fact["persons"]:
            image_ids.append(fact["image"]["id"])
            agent_ids.append(anns[s]["id"])
            names = {verb for verb, _ in person_labels}
            role_obj = {verb: anns[o]["id"] for verb, role in person_labels if role and o >= 0}
            labels.append([int(any(VERBS[v] in names for v, (a, _) in enumerate(VERB_ACTION) if a == ai))
                           for ai in range(len(ACTIONS))])
            roles.append([[role_obj.get(f"{action}_{r}", 0) for r in rs] for action, rs in ACTIONS])
    vcoco = []
    for ai, (action, rs) in enumerate(ACTIONS):
        columns = [agent_ids] + [[roles[p][ai][r] for p in range(len(agent_ids))] for r in range(len(rs))]
        vcoco.append({"action_name": action, "role_name": ["agent", *rs], "include": [[] for _ in rs],
                      "image_id": image_ids, "ann_id": agent_ids, "label": [lab[ai] for lab in labels],
                      "role_object_id": [x for col in columns for x in col]})  # role-major, as the official file
    categories = [{"id": PERSON_COCO_ID, "name": "person", "supercategory": "person"}] + [
        {"id": COCO_CATEGORY_ID[o], "name": COCO_NAMES[o], "supercategory": "synthetic"} for o in objects]
    instances = {"images": [f["image"] for f in facts], "annotations": [a for f in facts for a in f["annotations"]],
                 "categories": sorted(categories, key=lambda c: c["id"])}
    write_records(folder / OFFICIAL_FILES[0], vcoco)
    write_records(folder / OFFICIAL_FILES[1], instances)
    (folder / OFFICIAL_FILES[2]).write_text("".join(f"{i}\n" for i in sorted(set(image_ids))))
    assert ACTION_NAMES == tuple(r["action_name"] for r in vcoco)


def _params(seed: int, num_train: int, num_test: int, image_size: int, scene: VcocoScene) -> dict:
    return {"generator": "synth_vcoco", "generator_version": GENERATOR_VERSION, "seed": int(seed),
            "num_train": int(num_train), "num_test": int(num_test), "image_size": int(image_size), **scene.as_dict()}


def generate_vcoco(out: Path, seed: int, num_train: int, num_test: int, image_size: int, *,
                   scene: VcocoScene = FULL, overwrite: bool = False, progress: bool = False) -> Path:
    """Write the synthetic V-COCO to `out` and return it; a complete folder with the same parameters is reused.

    Raises ConfigError for bad sizes, DataError if `out` exists but is incomplete or was made with other parameters
    (unless `overwrite`). Written atomically (`publish`): a failure leaves nothing behind.
    """
    check_sizes("synthetic V-COCO", seed, num_train, num_test, image_size)

    def write(folder: Path) -> None:
        (folder / "annotations").mkdir(parents=True)
        np.save(folder / CORRECT_MAT_FILE, correct_matrix())
        ann_ids: list[int] = []
        _write_split(folder, "train", 0, int(seed), int(num_train), int(image_size), scene, progress, ann_ids)
        _, facts = _write_split(folder, "test", 1, int(seed), int(num_test), int(image_size), scene, progress,
                                ann_ids)
        _write_official(folder / OFFICIAL_DIR, facts, scene.objects)

    what = f"synthetic V-COCO ({num_train} train + {num_test} test images, {image_size}px, seed {seed})"
    return publish(Path(out), _params(seed, num_train, num_test, image_size, scene), write, what, overwrite=overwrite)


def scene_of(cfg: Any, base: VcocoScene = EMBEDDED) -> VcocoScene:
    """A VcocoScene from a config with `objects`, `pairs_per_image`, `object_scale` (e.g. the hqm task's
    data.synth); the label-loss rates keep `base`'s values."""
    return VcocoScene(objects=tuple(cfg.objects), pairs_per_image=tuple(float(x) for x in cfg.pairs_per_image),
                      object_scale=float(cfg.object_scale), missing_object=base.missing_object,
                      unannotated_person=base.unannotated_person)


def ensure_synthetic_vcoco(cache_dir: Path, cfg: Any, *, progress: bool = False) -> Path:
    """The synthetic V-COCO for `cfg` (num_train, num_test, image_size, seed and the scene fields) under `cache_dir`,
    generated on first use."""
    scene = scene_of(cfg)
    digest = hashlib.sha1(json.dumps(scene.as_dict(), sort_keys=True).encode()).hexdigest()[:8]
    name = f"n{cfg.num_train}-{cfg.num_test}_s{cfg.image_size}_seed{cfg.seed}_v{GENERATOR_VERSION}_{digest}"
    return generate_vcoco(Path(cache_dir) / "synth_vcoco" / name, cfg.seed, cfg.num_train, cfg.num_test,
                          cfg.image_size, scene=scene, progress=progress)


def official_paths(root: Path | str) -> tuple[Path, Path, Path]:
    """The three official files the generator writes under `root`."""
    folder = Path(root) / OFFICIAL_DIR
    return tuple(folder / name for name in OFFICIAL_FILES)  # type: ignore[return-value]

