"""The bad-input catalogue: every case goes through the real CLI in-process and must end with exit code 2, one
stderr line `raysweep: error: ...` naming the culprit, no traceback, no warning, and nothing written.

"Nothing written" is checked on the whole temporary folder (except the cache): every folder and every file's bytes
are the same after the command as before it, so an existing `results.parquet` (of an experiment in the storage, or
the `-o` target of `collect`) stays byte-identical and the storage gets no experiment folder. Ray is never started:
`init_ray` is replaced by a function that fails the test, and every case fails before it.

docs/bad_input.md lists the same catalogue as a table; keep the two in sync.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Union

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from raysweep.cli import main
from support import run_cli

DIR = object()  # a file-table value meaning "an empty folder"
Content = Union[str, bytes, object, Callable[[Path], bytes]]  # a callable gets the test's folder


# ---- the valid baseline every case starts from -----------------------------------------------------------------------
def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (120, 30, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def _pickle(obj) -> bytes:
    return pickle.dumps(obj, protocol=4)


def _npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


TRAIN_FILES = [f"tr{i}.png" for i in range(6)]
TEST_FILES = [f"te{i}.png" for i in range(4)]


def _anno(**changes) -> dict:
    """A valid DEFR anno.pkl dict: 3 classes, 6 train and 4 test images, class-major labels in {1, 0, -1, NaN}."""
    anno = {
        "files_train": np.array(TRAIN_FILES),
        "files_test": np.array(TEST_FILES),
        "anno_train": np.array([[1, -1, 1, 0, -1, np.nan], [-1, 1, -1, 1, np.nan, 1], [1, 1, -1, -1, 1, -1]]),
        "anno_test": np.array([[1, -1, 0, 1], [-1, 1, 1, np.nan], [1, -1, -1, 1]]),
        "hoi_list": [("ride", "bicycle"), ("hold", "cup"), ("eat", "apple")],
    }
    anno.update(changes)
    return {k: v for k, v in anno.items() if v is not None}


ANNO = _pickle(_anno())
PNG = _png()
SCORES = np.random.default_rng(0).random((4, 3))


def _record(name: str, **hoi) -> dict:
    """One HICO-DET record: a person and a bicycle (COCO 2), one hoi (verb 1)."""
    return {"file_name": name, "annotations": [{"bbox": [0, 0, 10, 10], "category_id": 1},
                                               {"bbox": [5, 5, 20, 20], "category_id": 2}],
            "hoi_annotation": [{"subject_id": 0, "object_id": 1, "category_id": 1, "hoi_category_id": 1, **hoi}]}


def _prediction(**changes) -> dict:
    pred = {"boxes": [[0, 0, 10, 10], [5, 5, 20, 20]], "labels": [0, 1], "verb_scores": [[0.5] * 117],
            "sub_ids": [0], "obj_ids": [1]}
    pred.update(changes)
    return pred


GOOD_SPACE = """\
task: defr
name: fresh
config:
  data: {image_size: 32, synth: {num_train: 10, num_test: 10, image_size: 32}}
  model: {width: 32, depth: 1, heads: 2}
  classifier: {init: rand}
  train: {epochs: 1}
search:
  optim.lr: {distribution: loguniform, low: 1.0e-4, high: 1.0e-2}
trials: {num_samples: 1}
storage: {cache_dir: <tmp>/cache}
"""
RESULTS = _parquet(pd.DataFrame({"experiment": ["old"], "task": ["defr"], "trial_id": ["t1"], "status": ["TERMINATED"],
                                 "outcome": ["completed"], "config.model.backbone": ["vit_tiny"],
                                 "config.model.weights": ["random"], "config.classifier.init": ["rand"],
                                 "config.loss.name": ["bce"], "last.map": [0.5]}))

BASE_FILES: dict[str, Content] = {
    "good.yaml": GOOD_SPACE,
    # an experiment already in the storage, with its results
    "store/old/raysweep_meta.json": json.dumps({"name": "old", "task": "defr", "overrides": []}),
    "store/old/raysweep_space.yaml": GOOD_SPACE,
    "store/old/results.parquet": RESULTS,
    "out.parquet": RESULTS,  # an existing `collect -o` target
    "empty": DIR,
    # a valid DEFR dataset
    "hico/anno.pkl": ANNO,
    **{f"hico/images/train2015/{name}": PNG for name in TRAIN_FILES},
    **{f"hico/images/test2015/{name}": PNG for name in TEST_FILES},
    "scores.npy": _npy(SCORES),
    # a valid HICO-DET dataset and predictions
    "hicodet/annotations/corre_hico.npy": _npy(np.ones((117, 80), dtype=np.int64)),
    "hicodet/annotations/trainval_hico.json": json.dumps([_record("a.jpg")]),
    "hicodet/annotations/test_hico.json": json.dumps([_record("b.jpg")]),
    "preds.json": json.dumps([_prediction()]),
}


class CreatesFile:
    """Unpickling this calls open(target, "w"): a stand-in for any code a crafted pickle would run."""

    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def crafted_anno(tmp: Path) -> bytes:
    """A valid-looking anno.pkl whose hoi_list, when unpickled with the full unpickler, creates <tmp>/pwned."""
    return _pickle(_anno(hoi_list=CreatesFile(str(tmp / "pwned"))))


def _torch_file(obj) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _alias_bomb(levels: int = 9) -> str:
    """The "billion laughs": each level lists the previous one ten times (10**9 values once expanded)."""
    lines = ["task: defr", "description:", "  - &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        lines.append(f"  - &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


DAMAGED_TRIAL = {"store/old/t1/params.json": '{"optim.lr": 0.01}',
                 "store/old/t1/result.json": '{"epoch": 1, "map": 0.5, "trial_id": "t1"}\n'}


def _state(trial: dict, runtime: dict | None = None) -> str:
    """A Tune experiment_state-*.json holding one trial."""
    entry = {"trial_id": "t1", "status": "TERMINATED", "relative_logdir": "t1", "config": {}, **trial}
    return json.dumps({"trial_data": [[json.dumps(entry), json.dumps(runtime or {"num_failures": 0})]]})


def _meta(**changes) -> str:
    return json.dumps({"name": "old", "task": "defr", "overrides": [], **changes})


# ---- the catalogue ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """argv and expected use `<tmp>` for the test's folder; files are added to (or replace) BASE_FILES."""

    id: str
    argv: tuple[str, ...]
    expected: str
    files: Mapping[str, Content] = field(default_factory=dict)


def tune(space: str = "good.yaml", *extra: str) -> tuple[str, ...]:
    return ("tune", f"<tmp>/{space}", "--storage", "<tmp>/store", "storage.cache_dir=<tmp>/cache", *extra)


def space(text: str) -> dict[str, Content]:
    return {"bad.yaml": text}


BAD = "<tmp>/bad.yaml"
CASES = [
    # -- search-space files, through `tune` (and one through `validate`)
    Case("yaml-malformed", tune("bad.yaml"), f"{BAD}: line 3, column 1: malformed YAML",
         space("task: defr\nconfig: {data: [1, 2\n")),
    Case("yaml-not-text", tune("bad.yaml"), f"{BAD}: not a text file", {"bad.yaml": b"\xff\xfe\x00task"}),
    Case("yaml-empty", tune("bad.yaml"), f"{BAD}: empty file", space("")),
    Case("yaml-missing", tune("nope.yaml"), "<tmp>/nope.yaml: no such file"),
    Case("yaml-is-folder", tune("empty"), "<tmp>/empty: is a folder"),
    Case("yaml-unknown-top-key", tune("bad.yaml"), "saerch: unknown key (did you mean 'search'?)",
         space("task: defr\nsaerch: {}\n")),
    Case("yaml-unknown-config-key", tune("bad.yaml"), "config.optim.lrr: unknown key (did you mean 'lr'?)",
         space("task: defr\nconfig: {optim: {lrr: 0.1}}\n")),
    Case("yaml-unknown-section-key", tune("bad.yaml"), "trials.num_sample: unknown key (did you mean 'num_samples'?)",
         space("task: defr\ntrials: {num_sample: 2}\n")),
    Case("yaml-wrong-type", tune("bad.yaml"), "trials.num_samples: Input should be a valid integer",
         space("task: defr\ntrials: {num_samples: many}\n")),
    Case("yaml-out-of-range", tune("bad.yaml"), "config.optim.lr: Input should be greater than 0 (got -0.1)",
         space("task: defr\nconfig: {optim: {lr: -0.1}}\n")),
    Case("yaml-bad-literal", tune("bad.yaml"),
         "config.loss.name: got 'lse'; allowed: 'lse_sign', 'bce', 'wbce' or 'focal'",
         space("task: defr\nconfig: {loss: {name: lse}}\n")),
    Case("yaml-empty-choice", tune("bad.yaml"), "search.loss.name.choice.values: List should have at least 1 item",
         space("task: defr\nsearch: {loss.name: {distribution: choice, values: []}}\n")),
    Case("yaml-unknown-distribution", tune("bad.yaml"), "'logunifrom' (did you mean 'loguniform'?)",
         space("task: defr\nsearch: {optim.lr: {distribution: logunifrom, low: 0.1, high: 1}}\n")),
    Case("yaml-low-above-high", tune("bad.yaml"), "search.optim.lr.uniform: `low < high` must hold",
         space("task: defr\nsearch: {optim.lr: {distribution: uniform, low: 2, high: 1}}\n")),
    Case("yaml-choice-value-invalid", tune("bad.yaml"), "search.loss.name.values[1]: value 'hinge' is invalid",
         space("task: defr\nsearch: {loss.name: {distribution: choice, values: [bce, hinge]}}\n")),
    Case("yaml-condition-never-holds-choice", tune("bad.yaml"),
         "search.classifier.text_encoder.when.classifier.init: condition can never hold",
         space("task: defr\nsearch:\n  classifier.init: {distribution: choice, values: [rand]}\n"
               "  classifier.text_encoder: {distribution: choice, values: [minilm],"
               " when: {classifier.init: language}}\n")),
    Case("yaml-condition-never-holds-fixed", tune("bad.yaml"),
         "'classifier.init' is fixed at 'rand', not in ['language']",
         space("task: defr\nconfig: {classifier: {init: rand}}\nsearch:\n"
               "  prompts.template: {distribution: choice, values: [default], when: {classifier.init: language}}\n")),
    Case("yaml-unknown-task", tune("bad.yaml"), "task: unknown task 'defrr' (did you mean 'defr'?); allowed: defr, hqm",
         space("task: defrr\n")),
    Case("yaml-unknown-metric", tune("bad.yaml"), "objective.metric: 'mAP' (did you mean 'map'?)",
         space("task: defr\nobjective: {metric: mAP}\n")),
    Case("yaml-test-objective-in-search", tune("bad.yaml"),
         "objective.metric: 'test.map' would select hyper-parameters on the test set",
         space("task: defr\nobjective: {metric: test.map}\n"
               "search:\n  optim.lr: {distribution: loguniform, low: 1.0e-4, high: 1.0e-3}\n")),
    Case("yaml-selection-none-searched", tune("bad.yaml"),
         "search.optim.lr: selection: none runs a fixed grid, so only `grid` and `rows` distributions are allowed",
         space("task: defr\nselection: none\nscheduler: {type: none}\n"
               "search:\n  optim.lr: {distribution: loguniform, low: 1.0e-4, high: 1.0e-3}\n")),
    Case("yaml-selection-asha-on-test", tune("bad.yaml"),
         "scheduler.type: 'asha' would stop trials on test-set numbers under selection: none",
         space("task: defr\nselection: none\n")),
    Case("yaml-validation-against-selection", tune("bad.yaml"), "config.data.validation: False contradicts selection: val",
         space("task: defr\nconfig: {data: {validation: false}}\n")),
    Case("validate-unknown-config-key", ("validate", BAD), "config.optim.lrr: unknown key (did you mean 'lr'?)",
         space("task: defr\nconfig: {optim: {lrr: 0.1}}\n")),
    # -- names the trial would only meet when building the model: rejected while the space is checked
    Case("backbone-unknown", tune("good.yaml", "model.backbone=vit_hugee"),
         "config.model: model.backbone 'vit_hugee' is not a known backbone"),
    Case("backbone-unknown-searched", tune("bad.yaml"),
         "search.model.backbone.values[1]: value 'vit_smal' is invalid for 'model.backbone'",
         space("task: defr\nsearch: {model.backbone: {distribution: choice, values: [vit_tiny, vit_smal]}}\n")),
    Case("text-encoder-unknown", tune("good.yaml", "classifier.text_encoder=bertt"),
         "config.classifier.text_encoder: 'bertt' is not a known text encoder (did you mean 'bert'?)"),
    Case("text-encoder-empty-suffix", tune("good.yaml", "classifier.text_encoder='st:'"),
         "config.classifier.text_encoder: 'st:' is not a known text encoder"),
    # -- command-line overrides
    Case("override-no-equals", tune("good.yaml", "trials.num_samples"),
         "override 'trials.num_samples': expected key=value"),
    Case("override-unparsable", tune("good.yaml", "optim.lr=[1, 2"),
         "override 'optim.lr=[1, 2': cannot parse the value"),
    Case("override-empty-key", tune("good.yaml", "=3"), "override '=3': empty key"),
    Case("override-unknown-key", tune("good.yaml", "optim.lrr=0.1"),
         "config.optim.lrr: unknown key (did you mean 'lr'?)"),
    Case("override-wrong-type", tune("good.yaml", "trials.num_samples=many"),
         "trials.num_samples: Input should be a valid integer"),
    Case("override-search", tune("good.yaml", "search.optim.lr=1"), "search parameters are edited in the YAML file"),
    # -- the dataset (checked by the task's preparation, before Ray starts)
    Case("data-root-missing", tune("good.yaml", "data.root=<tmp>/nowhere"),
         "data.root '<tmp>/nowhere': no such folder"),
    Case("data-root-is-file", tune("good.yaml", "data.root=<tmp>/scores.npy"),
         "data.root '<tmp>/scores.npy': no such folder"),
    Case("data-root-without-anno", tune("good.yaml", "data.root=<tmp>/empty"), "<tmp>/empty/anno.pkl not found"),
    Case("anno-truncated", tune("good.yaml", "data.root=<tmp>/hico"), "<tmp>/hico/anno.pkl is not a readable pickle",
         {"hico/anno.pkl": ANNO[: len(ANNO) // 2]}),
    Case("anno-zero-bytes", tune("good.yaml", "data.root=<tmp>/hico"), "<tmp>/hico/anno.pkl is not a readable pickle",
         {"hico/anno.pkl": b""}),
    Case("anno-missing-keys", tune("good.yaml", "data.root=<tmp>/hico"),
         "<tmp>/hico/anno.pkl lacks key(s) ['anno_test']", {"hico/anno.pkl": _pickle(_anno(anno_test=None))}),
    Case("anno-not-a-dict", tune("good.yaml", "data.root=<tmp>/hico"), "<tmp>/hico/anno.pkl must hold a dict",
         {"hico/anno.pkl": _pickle([1, 2, 3])}),
    Case("anno-label-out-of-range", tune("good.yaml", "data.root=<tmp>/hico"),
         "<tmp>/hico/anno.pkl: 'anno_train' holds values [7.0]; labels must be 1, 0, -1, -2 or NaN",
         {"hico/anno.pkl": _pickle(_anno(anno_train=np.array([[1, 7, 1, 0, -1, 1]] * 3)))}),
    Case("anno-shape-mismatch", tune("good.yaml", "data.root=<tmp>/hico"),
         "'anno_test' has shape (3, 3) (classes x images) but there are 4 file names",
         {"hico/anno.pkl": _pickle(_anno(anno_test=np.ones((3, 3))))}),
    Case("images-folder-missing", tune("good.yaml", "data.root=<tmp>/hico"),
         "<tmp>/hico/images/test2015: no such folder", {"hico/images/test2015": None}),
    Case("images-all-missing", tune("good.yaml", "data.root=<tmp>/hico"),
         "<tmp>/hico/images/train2015: 6 of 6 images are missing or empty (checked tr0.png, tr1.png, tr2.png, ...)",
         {"hico/images/train2015": DIR, **{f"hico/images/train2015/{name}": None for name in TRAIN_FILES}}),
    Case("few-shot-lists-missing", tune("good.yaml", "data.root=<tmp>/hico", "data.few_shot_lists=<tmp>/few.json"),
         "<tmp>/few.json: few-shot lists file not found"),
    Case("few-shot-lists-out-of-range", tune("good.yaml", "data.root=<tmp>/hico", "data.few_shot_lists=<tmp>/few.json"),
         "<tmp>/few.json: few@1 has class indices outside [0, 3): [5]", {"few.json": '{"few@1": [0, 5]}'}),
    Case("vocabulary-missing", tune("good.yaml", "data.root=<tmp>/hico", "classifier.init=language",
                                    "data.vocabulary=<tmp>/vocab.json"), "vocabulary file <tmp>/vocab.json not found"),
    Case("weights-file-missing", tune("good.yaml", "data.root=<tmp>/hico", "model.weights=<tmp>/vit.pth"),
         "model.weights '<tmp>/vit.pth' for backbone 'vit_tiny': no such checkpoint file"),
    # -- where and how the sweep runs
    Case("address-unreachable", tune("good.yaml", "--address", "127.0.0.1:1"),
         "--address 127.0.0.1:1: nothing answers at 127.0.0.1:1"),
    Case("address-garbage", tune("good.yaml", "--address", "garbage"),
         "--address 'garbage': expected auto, host:port or ray://host:port"),
    Case("storage-is-a-file", ("tune", "<tmp>/good.yaml", "--storage", "<tmp>/out.parquet"),
         "storage '<tmp>/out.parquet' is not writable"),
    Case("storage-below-a-file", ("tune", "<tmp>/good.yaml", "--storage", "<tmp>/out.parquet/sub"),
         "storage '<tmp>/out.parquet/sub' is not writable"),
    Case("storage-unknown-scheme", ("tune", "<tmp>/good.yaml", "--storage", "foo://bucket/prefix"),
         "storage 'foo://bucket/prefix' is not writable (Unrecognized filesystem type in URI"),
    Case("storage-new-folder-left-absent", ("tune", "<tmp>/good.yaml", "--storage", "<tmp>/fresh/store",
                                            "data.root=<tmp>/nowhere"), "data.root '<tmp>/nowhere': no such folder"),
    Case("resume-missing-experiment", tune("good.yaml", "--resume", "--name", "nothere"),
         "--resume: no raysweep experiment at <tmp>/store/nothere"),
    Case("resume-corrupt-meta", tune("good.yaml", "--resume", "--name", "old"),
         "<tmp>/store/old/raysweep_meta.json: not valid JSON", {"store/old/raysweep_meta.json": '{"name": "ol'}),
    Case("resume-missing-space-copy", tune("good.yaml", "--resume", "--name", "old"),
         "<tmp>/store/old/raysweep_space.yaml", {"store/old/raysweep_space.yaml": None}),
    Case("resume-corrupt-space-copy", tune("good.yaml", "--resume", "--name", "old"),
         "<tmp>/store/old/raysweep_space.yaml: line 1, column 1: malformed YAML",
         {"store/old/raysweep_space.yaml": "}task: defr\n"}),
    Case("experiment-exists", tune("good.yaml", "--name", "old"), "experiment 'old' already exists at <tmp>/store/old"),
    Case("resources-too-large", tune("good.yaml", "resources.num_workers=512"), "resources: a trial needs 512 CPUs"),
    # -- collect
    Case("collect-not-experiment", ("collect", "<tmp>/hico", "-o", "<tmp>/out.parquet"),
         "<tmp>/hico: not a raysweep experiment (no raysweep_meta.json)"),
    Case("collect-a-file", ("collect", "<tmp>/out.parquet", "-o", "<tmp>/x.parquet"),
         "<tmp>/out.parquet: not a folder; give an experiment folder"),
    Case("collect-missing-folder", ("collect", "<tmp>/nowhere", "-o", "<tmp>/out.parquet"),
         "<tmp>/nowhere: no such experiment folder"),
    Case("collect-corrupt-meta", ("collect", "<tmp>/store/old", "-o", "<tmp>/out.parquet"),
         "<tmp>/store/old/raysweep_meta.json: not valid JSON", {"store/old/raysweep_meta.json": '{"name": "ol'}),
    Case("collect-corrupt-state", ("collect", "<tmp>/store/old", "-o", "<tmp>/out.parquet"),
         "<tmp>/store/old/experiment_state-2024-01-01_00-00-00.json: not valid JSON",
         {"store/old/experiment_state-2024-01-01_00-00-00.json": '{"trial_data": [['}),
    Case("collect-corrupt-space-copy", ("collect", "<tmp>/store/old", "-o", "<tmp>/out.parquet"),
         "<tmp>/store/old/raysweep_space.yaml: line 1, column 1: malformed YAML",
         {"store/old/raysweep_space.yaml": "}task: defr\n"}),
    Case("collect-output-unwritable", ("collect", "<tmp>/store/old", "-o", "<tmp>/out.parquet/x.parquet"),
         "<tmp>/out.parquet/x.parquet: cannot write"),
    # -- report
    Case("report-corrupt-parquet", ("report", "<tmp>/bad.parquet"), "<tmp>/bad.parquet: not a readable parquet file",
         {"bad.parquet": b"PAR1 this is not a parquet file PAR1"}),
    Case("report-missing-parquet", ("report", "<tmp>/nope.parquet"), "<tmp>/nope.parquet: no such file"),
    Case("report-foreign-parquet", ("report", "<tmp>/other.parquet"),
         "<tmp>/other.parquet: not a raysweep results file (no column(s) task, outcome, status)",
         {"other.parquet": _parquet(pd.DataFrame({"a": [1, 2]}))}),
    Case("report-format", ("report", "<tmp>/out.parquet", "--format", "html"),
         "--format: 'html' is not one of markdown, latex, csv"),
    Case("report-not-experiment", ("report", "<tmp>/hico"), "<tmp>/hico: not a raysweep experiment"),
    # -- eval hico
    Case("eval-hico-scores-shape", ("eval", "hico", "--anno", "<tmp>/hico/anno.pkl", "--scores", "<tmp>/s.npy"),
         "<tmp>/s.npy: scores have shape (4, 2), expected [N_test, C] = (4, 3)", {"s.npy": _npy(SCORES[:, :2])}),
    Case("eval-hico-scores-transposed", ("eval", "hico", "--anno", "<tmp>/hico/anno.pkl", "--scores", "<tmp>/s.npy"),
         "(it looks transposed", {"s.npy": _npy(SCORES.T)}),
    Case("eval-hico-scores-too-few-rows", ("eval", "hico", "--anno", "<tmp>/hico/anno.pkl", "--scores", "<tmp>/s.npy"),
         "<tmp>/s.npy: scores have shape (3, 3)", {"s.npy": _npy(SCORES[:3])}),
    Case("eval-hico-scores-nan", ("eval", "hico", "--anno", "<tmp>/hico/anno.pkl", "--scores", "<tmp>/s.npy"),
         "<tmp>/s.npy: scores contain 1 NaN/inf value(s), first at image 2, class 1",
         {"s.npy": _npy(np.where(np.arange(12).reshape(4, 3) == 7, np.nan, SCORES))}),
    Case("eval-hico-scores-missing", ("eval", "hico", "--anno", "<tmp>/hico/anno.pkl", "--scores", "<tmp>/no.npy"),
         "<tmp>/no.npy: scores file not found"),
    Case("eval-hico-scores-suffix", ("eval", "hico", "--anno", "<tmp>/hico/anno.pkl", "--scores", "<tmp>/good.yaml"),
         "<tmp>/good.yaml: scores must be a .npy or .npz file"),
    Case("eval-hico-scores-truncated", ("eval", "hico", "--anno", "<tmp>/hico/anno.pkl", "--scores", "<tmp>/s.npy"),
         "<tmp>/s.npy: cannot read scores", {"s.npy": _npy(SCORES)[:100]}),
    Case("eval-hico-anno-truncated", ("eval", "hico", "--anno", "<tmp>/a.pkl", "--scores", "<tmp>/scores.npy"),
         "<tmp>/a.pkl is not a readable pickle", {"a.pkl": ANNO[:-40]}),
    Case("eval-hico-anno-missing-key", ("eval", "hico", "--anno", "<tmp>/a.pkl", "--scores", "<tmp>/scores.npy"),
         "<tmp>/a.pkl lacks key(s) ['anno_test']", {"a.pkl": _pickle(_anno(anno_test=None))}),
    # -- eval hico-det
    Case("eval-hicodet-subject-id-out-of-range", ("eval", "hico-det", "--anno-dir", "<tmp>/hicodet", "--pred",
                                                  "<tmp>/preds.json"),
         "test_hico.json': record 0 (b.jpg): hoi_annotation[0].subject_id = 5 is out of range (valid: 0..1)",
         {"hicodet/annotations/test_hico.json": json.dumps([_record("b.jpg", subject_id=5)])}),
    Case("eval-hicodet-verb-id-out-of-range", ("eval", "hico-det", "--anno-dir", "<tmp>/hicodet", "--pred",
                                               "<tmp>/preds.json"),
         "hoi_annotation[0].category_id (verb id) = 118 is outside 1..117",
         {"hicodet/annotations/test_hico.json": json.dumps([_record("b.jpg", category_id=118)])}),
    Case("eval-hicodet-missing-corre", ("eval", "hico-det", "--anno-dir", "<tmp>/empty", "--pred", "<tmp>/preds.json"),
         "missing file '<tmp>/empty/annotations/corre_hico.npy'"),
    Case("eval-hicodet-pred-shape", ("eval", "hico-det", "--anno-dir", "<tmp>/hicodet", "--pred", "<tmp>/p.json"),
         "image 0: 'verb_scores' has shape (1, 116); expected [k, 117]",
         {"p.json": json.dumps([_prediction(verb_scores=[[0.5] * 116])])}),
    Case("eval-hicodet-pred-nan", ("eval", "hico-det", "--anno-dir", "<tmp>/hicodet", "--pred", "<tmp>/p.json"),
         "image 0: 'verb_scores' holds a non-finite value (nan at (0, 3))",
         {"p.json": json.dumps([_prediction(verb_scores=[[0.5] * 3 + [float("nan")] + [0.5] * 113])])}),
    Case("eval-hicodet-pred-short", ("eval", "hico-det", "--anno-dir", "<tmp>/hicodet", "--pred", "<tmp>/p.json"),
         "<tmp>/p.json: 0 predictions for 1 test images", {"p.json": "[]"}),
    Case("eval-hicodet-pred-id-out-of-range", ("eval", "hico-det", "--anno-dir", "<tmp>/hicodet", "--pred",
                                               "<tmp>/p.json"),
         "image 0: 'obj_ids' holds 2, not an index into the image's 2 boxes",
         {"p.json": json.dumps([_prediction(obj_ids=[2])])}),
    Case("eval-hicodet-pred-not-json", ("eval", "hico-det", "--anno-dir", "<tmp>/hicodet", "--pred", "<tmp>/p.json"),
         "'<tmp>/p.json' is not valid JSON", {"p.json": "[{"}),
    Case("eval-hicodet-pickle-refused", ("eval", "hico-det", "--anno-dir", "<tmp>/hicodet", "--pred", "<tmp>/p.pkl"),
         "'<tmp>/p.pkl': refused to unpickle: it names io.open", {"p.pkl": lambda tmp: _pickle(
             [_prediction(extra=CreatesFile(str(tmp / "pwned")))])}),
    Case("eval-hicodet-protocol", ("eval", "hico-det", "--anno-dir", "<tmp>/hicodet", "--pred", "<tmp>/preds.json",
                                   "--protocol", "qpik"), "--protocol: 'qpik' is not one of qpic, official"),
    # -- input refused before anything starts (issue #11): names, storage, YAML the loader must not trust
    Case("name-dotdot", tune("good.yaml", "--name", "../x"), "--name '../x': contains a path separator"),
    Case("name-absolute", tune("good.yaml", "--name", "<tmp>/abs"), "--name '<tmp>/abs': contains a path separator"),
    Case("name-empty", tune("good.yaml", "--name", ""), "--name '': is empty"),
    Case("name-dot", tune("good.yaml", "--name", "."), "--name '.': is not a folder name"),
    Case("name-newline", tune("good.yaml", "--name", "a\nb"), "--name 'a\\nb': contains a control character"),
    Case("name-absolute-uri-storage", ("tune", "<tmp>/good.yaml", "--storage", "s3://bucket/prefix", "--name", "/abs"),
         "--name '/abs': contains a path separator"),
    Case("name-in-space-file", tune("bad.yaml"), "<tmp>/bad.yaml: name: experiment name '../up' contains a path "
         "separator", space("task: defr\nname: ../up\n")),
    Case("storage-empty", ("tune", "<tmp>/good.yaml", "--storage", ""), "--storage '': is empty"),
    Case("storage-unknown-user", ("tune", "<tmp>/good.yaml", "--storage", "~nosuchuser/x"),
         "--storage '~nosuchuser/x': starts with '~nosuchuser', but there is no user 'nosuchuser'"),
    Case("storage-unknown-user-in-space", tune("bad.yaml"), "<tmp>/bad.yaml: storage.path: storage '~nosuchuser/x' "
         "starts with '~nosuchuser'", space("task: defr\nstorage: {path: ~nosuchuser/x}\n")),
    Case("yaml-alias-bomb", tune("bad.yaml"), "values through YAML aliases (*name); write the values out instead",
         space(_alias_bomb())),
    Case("yaml-recursive-alias", tune("bad.yaml"), f"{BAD}: description[1]: a YAML alias refers to its own anchor",
         space("task: defr\ndescription: &d [x, *d]\n")),
    Case("yaml-deep-nesting", tune("bad.yaml"), f"{BAD}: line 2: nested more than 50 levels deep",
         space("task: defr\nconfig: " + _nested(100_000) + "\n")),
    Case("yaml-duplicate-key", tune("bad.yaml"), f"{BAD}: search.optim.lr: duplicate key (lines 3 and 4)",
         space("task: defr\nsearch:\n  optim.lr: {distribution: loguniform, low: 1.0e-4, high: 1.0e-2}\n"
               "  optim.lr: {distribution: loguniform, low: 1.0e-3, high: 1.0e-1}\n")),
    Case("yaml-duplicate-top-key", tune("bad.yaml"), f"{BAD}: trials: duplicate key (lines 2 and 3)",
         space("task: defr\ntrials: {num_samples: 1}\ntrials: {num_samples: 2}\n")),
    Case("yaml-inf", tune("bad.yaml"), f"{BAD}: config.optim.lr: inf is not a finite number",
         space("task: defr\nconfig: {optim: {lr: .inf}}\n")),
    Case("yaml-overflow", tune("bad.yaml"), f"{BAD}: search.optim.lr.high: '1e999' is not a finite number",
         space("task: defr\nsearch: {optim.lr: {distribution: uniform, low: 0.1, high: 1e999}}\n")),
    Case("override-overflow", tune("good.yaml", "optim.lr=1e999"), "<tmp>/good.yaml: config.optim.lr: inf is not a "
         "finite number"),
    Case("validate-dev-zero", ("validate", "/dev/zero"), "/dev/zero: larger than 1 MiB; a search-space file is a "
         "small YAML text file"),
    Case("grid-duplicate-values", tune("bad.yaml"), f"{BAD}: search.train.seed.grid: values[2] (0) repeats values[0]",
         space("task: defr\nsearch: {train.seed: {distribution: grid, values: [0, 1, 0]}}\n")),
    # -- what Tune or a trial would reject only after Ray started
    Case("asha-grace-above-max-t", tune("bad.yaml"), f"{BAD}: scheduler: `grace_period <= max_t` must hold, but got "
         "(grace_period=5, max_t=2)", space("task: defr\nscheduler: {type: asha, grace_period: 5, max_t: 2}\n")),
    Case("asha-grace-above-epochs", tune("good.yaml", "scheduler.grace_period=3"),
         "<tmp>/good.yaml: scheduler.grace_period: 3 epochs, but no trial runs more than 1"),
    Case("asha-milestones-not-increasing", tune("good.yaml", "scheduler.milestones=[1,1]"),
         "<tmp>/good.yaml: scheduler: `milestones` must be increasing epochs >= 1, but got [1, 1]"),
    Case("asha-milestones-past-epochs", tune("good.yaml", "scheduler.milestones=[3]"),
         "<tmp>/good.yaml: scheduler.milestones: [3] go past the last epoch (1, the task's epochs or "
         "scheduler.max_t); rungs must be at most 1"),
    Case("asha-milestones-and-lr-drop", tune("good.yaml", "scheduler.milestones=[1]",
                                             "scheduler.rungs_after_lr_drop=true"),
         "<tmp>/good.yaml: scheduler: give either `milestones` or `rungs_after_lr_drop: true`, not both"),
    Case("asha-rungs-without-lr-drop", tune("good.yaml", "scheduler.rungs_after_lr_drop=true"),
         "<tmp>/good.yaml: scheduler.rungs_after_lr_drop: the config drops no learning rate before epoch 1 "
         "(optim.lr_drop, or optim.milestones with optim.schedule: multistep); give scheduler.milestones: [..] or "
         "drop the key"),
    Case("asha-rungs-with-searched-lr-drop", tune("good.yaml", "train.epochs=6", "optim.schedule=multistep",
                                                  "scheduler.rungs_after_lr_drop=true",
                                                  "search.optim.milestones={distribution: choice, values: [[3], [4]]}"),
         "<tmp>/good.yaml: scheduler.rungs_after_lr_drop: search.optim.milestones is searched, so trials drop their "
         "LR at different epochs; give the rungs as scheduler.milestones: [..]"),
    Case("optuna-seed-negative", tune("good.yaml", "optuna.seed=-1"),
         "<tmp>/good.yaml: optuna.seed: Input should be greater than or equal to 0 (got -1)"),
    Case("train-seed-negative", tune("good.yaml", "train.seed=-1"),
         "<tmp>/good.yaml: config.train.seed: Input should be greater than or equal to 0 (got -1)"),
    Case("dashboard-port-out-of-range", tune("good.yaml", "ray.dashboard_port=70000"),
         "<tmp>/good.yaml: ray.dashboard_port: Input should be less than or equal to 65535 (got 70000)"),
    Case("model-heads-not-dividing-width", tune("good.yaml", "model.heads=5"),
         "<tmp>/good.yaml: config: model.width 32 must be divisible by model.heads 5"),
    Case("model-image-size-not-patch-multiple", tune("good.yaml", "data.image_size=40"),
         "<tmp>/good.yaml: config: data.image_size 40 is not a multiple of the patch size 16 of model.backbone "
         "'vit_tiny'; use a multiple of 16 (e.g. 32)"),
    Case("weights-file-corrupt", tune("good.yaml", "data.root=<tmp>/hico", "model.weights=<tmp>/vit.pth"),
         "model.weights '<tmp>/vit.pth' for backbone 'vit_tiny' could not be loaded (",
         {"vit.pth": b"not a checkpoint"}),
    Case("weights-file-wrong-model", tune("good.yaml", "data.root=<tmp>/hico", "model.weights=<tmp>/vit.pth"),
         "for backbone 'vit_tiny' could not be loaded (RuntimeError: Error(s) in loading state_dict",
         {"vit.pth": lambda tmp: _torch_file({"cls_token": __import__("torch").zeros(1, 1, 7)})}),
    # -- files that would run code
    Case("anno-pickle-runs-code", tune("good.yaml", "data.root=<tmp>/hico"),
         "<tmp>/hico/anno.pkl: refused to unpickle: it names io.open", {"hico/anno.pkl": crafted_anno}),
    Case("eval-hico-anno-pickle-runs-code", ("eval", "hico", "--anno", "<tmp>/a.pkl", "--scores", "<tmp>/scores.npy"),
         "<tmp>/a.pkl: refused to unpickle: it names io.open, which is not a numpy or built-in data type", 
         {"a.pkl": crafted_anno}),
    # -- damaged experiment files (collect, report, --resume)
    Case("collect-result-line-not-object", ("collect", "<tmp>/store/old", "-o", "<tmp>/out.parquet"),
         "<tmp>/store/old/t1/result.json: line 2: expected a JSON object (one report per line), got list",
         {**DAMAGED_TRIAL, "store/old/t1/result.json": '{"epoch": 1}\n[1, 2]\n'}),
    Case("collect-epoch-not-numeric", ("collect", "<tmp>/store/old", "-o", "<tmp>/out.parquet"),
         "<tmp>/store/old/t1/result.json: line 1: 'epoch' is 'two', expected a finite number",
         {**DAMAGED_TRIAL, "store/old/t1/result.json": '{"epoch": "two"}\n'}),
    Case("collect-params-not-object", ("collect", "<tmp>/store/old", "-o", "<tmp>/out.parquet"),
         "<tmp>/store/old/t1/params.json: the file is [1, 2], expected dict",
         {**DAMAGED_TRIAL, "store/old/t1/params.json": "[1, 2]"}),
    Case("collect-state-status-wrong-type", ("collect", "<tmp>/store/old", "-o", "<tmp>/out.parquet"),
         "experiment_state-2024-01-01_00-00-00.json: trial t1: 'status' is ['TERMINATED'], expected str",
         {**DAMAGED_TRIAL, "store/old/experiment_state-2024-01-01_00-00-00.json": _state({"status": ["TERMINATED"]})}),
    Case("collect-state-config-wrong-type", ("collect", "<tmp>/store/old", "-o", "<tmp>/out.parquet"),
         "experiment_state-2024-01-01_00-00-00.json: trial t1: 'config' is 'lr', expected dict",
         {**DAMAGED_TRIAL, "store/old/experiment_state-2024-01-01_00-00-00.json": _state({"config": "lr"})}),
    Case("collect-state-failures-wrong-type", ("collect", "<tmp>/store/old", "-o", "<tmp>/out.parquet"),
         "experiment_state-2024-01-01_00-00-00.json: trial t1: 'num_failures' is 'one', expected int",
         {**DAMAGED_TRIAL, "store/old/experiment_state-2024-01-01_00-00-00.json": _state({}, {"num_failures": "one"})}),
    Case("collect-meta-overrides-wrong-type", ("collect", "<tmp>/store/old", "-o", "<tmp>/out.parquet"),
         "<tmp>/store/old/raysweep_meta.json: 'overrides' is 'optim.lr=1', expected list",
         {"store/old/raysweep_meta.json": _meta(overrides="optim.lr=1")}),
    Case("collect-meta-versions-wrong-type", ("collect", "<tmp>/store/old", "-o", "<tmp>/out.parquet"),
         "<tmp>/store/old/raysweep_meta.json: 'versions' is [], expected dict",
         {"store/old/raysweep_meta.json": _meta(versions=[])}),
    Case("collect-meta-task-mismatch", ("collect", "<tmp>/store/old", "-o", "<tmp>/out.parquet"),
         "<tmp>/store/old/raysweep_meta.json: 'task' is 'hqm' but the experiment's raysweep_space.yaml is for task "
         "'defr'", {"store/old/raysweep_meta.json": _meta(task="hqm")}),
    Case("collect-result-deep-json", ("collect", "<tmp>/store/old", "-o", "<tmp>/out.parquet"),
         "<tmp>/store/old/t1/result.json: line 1: nested too deeply to be a report",
         {**DAMAGED_TRIAL, "store/old/t1/result.json": _nested(100_000) + "\n"}),
    Case("report-result-line-not-object", ("report", "<tmp>/store/old"),
         "<tmp>/store/old/t1/result.json: line 1: expected a JSON object (one report per line), got int",
         {**DAMAGED_TRIAL, "store/old/t1/result.json": "3\n"}),
    Case("report-meta-name-wrong-type", ("report", "<tmp>/store/old"),
         "<tmp>/store/old/raysweep_meta.json: 'name' is 5, expected str or null",
         {"store/old/raysweep_meta.json": _meta(name=5)}),
    Case("report-outcome-typo", ("report", "<tmp>/out.parquet", "--outcome", "complted"),
         "--outcome: 'complted' (did you mean 'completed'?) is not one of completed, pruned, error"),
    Case("resume-meta-not-object", tune("good.yaml", "--resume", "--name", "old"),
         "<tmp>/store/old/raysweep_meta.json: the file is [], expected dict", {"store/old/raysweep_meta.json": "[]"}),
    Case("resume-meta-overrides-wrong-type", tune("good.yaml", "--resume", "--name", "old"),
         "<tmp>/store/old/raysweep_meta.json: 'overrides' is 5, expected list",
         {"store/old/raysweep_meta.json": _meta(overrides=5)}),
    Case("resume-meta-task-mismatch", tune("good.yaml", "--resume", "--name", "old"),
         "<tmp>/store/old/raysweep_meta.json: 'task' is 'hqm' but the experiment's raysweep_space.yaml is for task "
         "'defr'", {"store/old/raysweep_meta.json": _meta(task="hqm")}),
    Case("resume-meta-deep-json", tune("good.yaml", "--resume", "--name", "old"),
         "<tmp>/store/old/raysweep_meta.json: not valid JSON", {"store/old/raysweep_meta.json": _nested(100_000)}),
    # -- evaluation inputs
    Case("eval-hico-zero-test-images", ("eval", "hico", "--anno", "<tmp>/a.pkl", "--scores", "<tmp>/s.npy"),
         "<tmp>/a.pkl: anno_test has shape (3, 0) (classes x test images): nothing to evaluate",
         {"a.pkl": _pickle(_anno(files_test=np.array([], dtype=str), anno_test=np.zeros((3, 0)))),
          "s.npy": _npy(np.zeros((0, 3)))}),
    Case("eval-hicodet-pred-deep-json", ("eval", "hico-det", "--anno-dir", "<tmp>/hicodet", "--pred", "<tmp>/p.json"),
         "'<tmp>/p.json': nested too deeply to be a prediction list", {"p.json": _nested(100_000)}),
    Case("eval-hicodet-anno-deep-json", ("eval", "hico-det", "--anno-dir", "<tmp>/hicodet", "--pred",
                                         "<tmp>/preds.json"),
         "test_hico.json': nested too deeply to be a list of HICO-DET image records",
         {"hicodet/annotations/test_hico.json": _nested(100_000)}),
    Case("few-shot-lists-deep-json", ("eval", "hico", "--anno", "<tmp>/hico/anno.pkl", "--scores", "<tmp>/scores.npy",
                                      "--few-shot-lists", "<tmp>/few.json"),
         "<tmp>/few.json: cannot read few-shot lists as JSON (maximum recursion depth exceeded",
         {"few.json": _nested(100_000)}),
    # -- the command line itself
    Case("cli-unknown-option", ("tune", "<tmp>/good.yaml", "--storge", "<tmp>/store"),
         "No such option: --storge (Possible options: --storage) (see 'raysweep tune --help')"),
    Case("cli-missing-option", ("eval", "hico", "--anno", "<tmp>/hico/anno.pkl"),
         "Missing option '--scores'. (see 'raysweep eval hico --help')"),
    Case("cli-bad-integer", ("data", "synth", "hico", "--out", "<tmp>/s", "--num-train", "many"),
         "Invalid value for '--num-train': Input should be a valid integer"),
    Case("data-synth-out-below-a-file", ("data", "synth", "hico", "--out", "<tmp>/out.parquet/hico", "--num-train",
                                         "10", "--num-test", "10"), "<tmp>/out.parquet: File exists"),
    Case("cli-unknown-command", ("tnue", "<tmp>/good.yaml"), "No such command 'tnue'."),
]


# ---- the harness -----------------------------------------------------------------------------------------------------
def _expand(text: str, tmp: Path) -> str:
    return text.replace("<tmp>", str(tmp))


def _write_files(tmp: Path, files: Mapping[str, Content]) -> None:
    for rel, content in files.items():
        path = tmp / rel
        if content is None:  # a case removes a baseline file or folder
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is DIR:
            path.mkdir(exist_ok=True)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        elif callable(content):
            path.write_bytes(content(tmp))
        else:
            path.write_text(_expand(str(content), tmp))


def _snapshot(tmp: Path) -> dict[str, bytes | None]:
    """Every folder (None) and file (its bytes) under tmp, except the cache, which preparation may fill."""
    state: dict[str, bytes | None] = {}
    for folder, dirs, files in os.walk(tmp):
        dirs[:] = [d for d in dirs if not (folder == str(tmp) and d == "cache")]
        for name in dirs:
            state[os.path.relpath(os.path.join(folder, name), tmp)] = None
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as handle:
                state[os.path.relpath(path, tmp)] = handle.read()
    return state


@pytest.fixture(autouse=True)
def no_ray(monkeypatch):
    """Every case must fail before Ray starts."""
    import raysweep.sweep.runner as runner

    def refuse(*args, **kwargs):
        raise AssertionError("Ray was about to start: the bad input was not caught before it")

    monkeypatch.setattr(runner, "init_ray", refuse)


def assert_fails_cleanly(tmp: Path, argv: tuple[str, ...], expected: str, capsys, caplog) -> None:
    before = _snapshot(tmp)
    caplog.set_level(logging.WARNING)
    code, out, err = run_cli([_expand(a, tmp) for a in argv], capsys)
    assert "Traceback" not in err
    assert code == 2, (code, err)
    assert err.startswith("raysweep: error: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert _expand(expected, tmp) in err, err
    assert out == "", out
    # In the real CLI a warning is one more stderr line.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    after = _snapshot(tmp)
    assert sorted(set(after) - set(before)) == [], "created"
    assert sorted(set(before) - set(after)) == [], "removed"
    assert [k for k in before if before[k] != after[k]] == [], "changed"


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_bad_input_fails_with_one_line_and_writes_nothing(tmp_path: Path, capsys, caplog, case: Case) -> None:
    _write_files(tmp_path, {**BASE_FILES, **case.files})
    assert_fails_cleanly(tmp_path, case.argv, case.expected, capsys, caplog)


def test_catalogue_ids_are_unique_and_documented() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 30
    doc = (Path(__file__).resolve().parents[1] / "docs" / "bad_input.md").read_text()
    assert [i for i in ids if f"`{i}`" not in doc] == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permissions; storage-is-a-file covers root")
def test_read_only_storage(tmp_path: Path, capsys, caplog) -> None:
    _write_files(tmp_path, BASE_FILES)
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    try:
        assert_fails_cleanly(tmp_path, ("tune", "<tmp>/good.yaml", "--storage", "<tmp>/ro"),
                             "storage '<tmp>/ro' is not writable (Permission denied)", capsys, caplog)
    finally:
        (tmp_path / "ro").chmod(0o755)


def test_baseline_is_valid(tmp_path: Path, capsys) -> None:
    """The baseline the cases break is itself accepted, so each case fails for its own reason only."""
    _write_files(tmp_path, BASE_FILES)
    code, out, err = run_cli(["eval", "hico", "--anno", str(tmp_path / "hico/anno.pkl"),
                              "--scores", str(tmp_path / "scores.npy"), "--json"], capsys)
    assert code == 0 and json.loads(out)["full"] >= 0, err
    code, out, err = run_cli(["eval", "hico-det", "--anno-dir", str(tmp_path / "hicodet"),
                              "--pred", str(tmp_path / "preds.json"), "--json"], capsys)
    assert code == 0 and json.loads(out)["default"]["full"] == pytest.approx(1.0), err
    code, out, err = run_cli(["report", str(tmp_path / "out.parquet")], capsys)
    assert code == 0 and "50.00" in out, err
    # tune with the valid dataset gets through every check and stops only where Ray would start
    with pytest.raises(AssertionError, match="Ray was about to start"):
        main([_expand(a, tmp_path) for a in tune("good.yaml", "data.root=<tmp>/hico", "classifier.init=language",
                                                 "--name", "ok")])
    assert not (tmp_path / "store" / "ok").exists()


def test_unreachable_address_fails_in_seconds(tmp_path: Path, capsys) -> None:
    """Ray itself would retry for minutes; the reachability check answers first."""
    import time

    _write_files(tmp_path, BASE_FILES)
    main(["validate", str(tmp_path / "good.yaml")])  # imports done, so the timing is the check's own
    started = time.monotonic()
    code, _, err = run_cli([_expand(a, tmp_path) for a in tune("good.yaml", "--address", "127.0.0.1:1")], capsys)
    assert code == 2 and "nothing answers" in err
    assert time.monotonic() - started < 10


def test_a_real_process_prints_one_line(tmp_path: Path) -> None:
    """Outside pytest, logging writes to stderr too: the line must still be the only one."""
    import subprocess
    import sys

    _write_files(tmp_path, BASE_FILES)
    argv = [_expand(a, tmp_path) for a in tune("good.yaml", "data.root=<tmp>/hico", "data.few_shot_lists=<tmp>/f.json")]
    done = subprocess.run([sys.executable, "-m", "raysweep.cli", *argv], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"raysweep: error: {tmp_path}/f.json: few-shot lists file not found\n"


@pytest.mark.parametrize("name", ["vit_tiny", "vit_small", "ImageNet1k-ViT-B", "ImageNet21k-ViT-B", "CLIP-ViT-B",
                                  "CLIP-ViT-L", "CLIP-RN50", "open_clip:ViT-B-32", "vit_base_patch32_224.augreg_in21k",
                                  "test_vit"])
def test_every_backbone_form_passes_the_early_check(name: str) -> None:
    from raysweep.tasks.defr.config import DefrConfig

    config = {"model": {"backbone": name}, "data": {"image_size": 224}}  # a multiple of every patch size (14, 16, 32)
    assert DefrConfig.model_validate(config).model.backbone == name


def test_text_encoder_check_accepts_exactly_what_the_encoder_resolves() -> None:
    from pydantic import ValidationError

    from raysweep.errors import ConfigError
    from raysweep.tasks.defr.config import TEXT_ENCODER_NAMES, TEXT_ENCODER_PREFIXES, ClassifierConfig
    from raysweep.tasks.defr.embeddings import _resolve

    for name in [*TEXT_ENCODER_NAMES, *(prefix + "x" for prefix in TEXT_ENCODER_PREFIXES)]:
        assert ClassifierConfig(text_encoder=name).text_encoder == name
        _resolve(name, None)  # no ConfigError: the forms agree
    for name in ["bertt", "st:", "word2vec", "CLIP"]:
        with pytest.raises(ValidationError, match="is not a known text encoder"):
            ClassifierConfig(text_encoder=name)
        with pytest.raises(ConfigError, match="is not a known text encoder"):
            _resolve(name, None)
