"""`raysweep detect hico-det`: DEFR's two-stage HOI detection with a trained DEFR trial's checkpoint.

The checkpoint is a trial of a sweep: its Train run folder `<experiment>/_train/<trial id>` (the latest checkpoint
is used), one of its `checkpoint_*` folders, the `state.pt` inside, or the trial's Tune folder. The trial's model
config is the experiment's saved space file and overrides plus the trial's sampled values.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Optional

from raysweep.errors import ConfigError, DataError, UserError
from raysweep.experiment.layout import META_FILE, SPACE_COPY, STATE_FILE, TRAIN_SUBDIR


def resolve_checkpoint(path: str | Path) -> tuple[Path, Path, str]:
    """(state.pt, experiment folder, trial id) of a checkpoint argument; UserError when it is none of the forms."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"--checkpoint {str(path)!r}: no such file or folder")
    if path.is_dir() and (path / META_FILE).is_file():
        trials = sorted(p.name for p in (path / TRAIN_SUBDIR).glob("*") if p.is_dir())
        raise UserError(f"--checkpoint {str(path)!r} is a whole experiment; give one trial's folder, e.g. "
                        f"{path / TRAIN_SUBDIR / (trials[0] if trials else '<trial id>')} (trials: "
                        f"{', '.join(trials) or 'none'})")
    if path.is_dir() and (path / "params.json").is_file():  # a Tune trial folder: its Train run is under _train/
        path = _train_run_of_tune_trial(path)
    if path.is_dir() and not (path / STATE_FILE).is_file():
        checkpoints = sorted((p for p in path.glob("checkpoint_*") if (p / STATE_FILE).is_file()),
                             key=lambda p: int(re.sub(r"\D", "", p.name) or -1))
        if not checkpoints:
            raise DataError(f"--checkpoint {str(path)!r}: no {STATE_FILE} and no checkpoint_*/{STATE_FILE} in it; "
                            f"give a trial's folder under <experiment>/{TRAIN_SUBDIR}/, a checkpoint folder or a "
                            f"{STATE_FILE}")
        path = checkpoints[-1]
    state = path / STATE_FILE if path.is_dir() else path
    run = state.resolve().parent.parent
    experiment = run.parent.parent
    if run.parent.name != TRAIN_SUBDIR or not (experiment / META_FILE).is_file():
        raise DataError(f"--checkpoint {str(state)!r} is not inside a raysweep experiment (expected "
                        f"<experiment>/{TRAIN_SUBDIR}/<trial id>/checkpoint_*/{STATE_FILE} with "
                        f"<experiment>/{META_FILE}); the trial's config is read from there")
    return state, experiment, run.name


def _train_run_of_tune_trial(folder: Path) -> Path:
    experiment = folder.parent
    result = folder / "result.json"
    if result.is_file():
        for line in result.read_text().splitlines():
            try:
                trial_id = json.loads(line).get("trial_id")
            except ValueError:
                continue
            if trial_id and (experiment / TRAIN_SUBDIR / trial_id).is_dir():
                return experiment / TRAIN_SUBDIR / trial_id
    for run in sorted((experiment / TRAIN_SUBDIR).glob("*")):
        if run.name in folder.name:
            return run
    raise DataError(f"--checkpoint {str(folder)!r}: no Train run of this trial under {experiment / TRAIN_SUBDIR}")


def trial_config(experiment: Path, trial_id: str):
    """The DefrConfig a trial trained with: saved space file + overrides + the trial's sampled values."""
    from pydantic import ValidationError

    from raysweep.results.collect import trial_rows
    from raysweep.spec.load import describe_validation_error, load_sweep
    from raysweep.sweep.driver import trial_config as merged
    from raysweep.tasks.defr.config import DefrConfig

    rows, meta = trial_rows(str(experiment))
    if meta.get("task") != "defr":
        raise UserError(f"{experiment}: task {meta.get('task')!r}; `raysweep detect hico-det` needs a DEFR sweep")
    sampled = next((row["sampled"] for row in rows if row["trial_id"] == trial_id), None)
    if sampled is None:
        raise DataError(f"{experiment}: no trial {trial_id!r} in the experiment's state")
    space = experiment / SPACE_COPY
    if not space.is_file():
        raise DataError(f"{space}: missing; the experiment's copy of its space file gives the model config")
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "space.yaml"
        copy.write_text(space.read_text())
        try:
            sweep = load_sweep(copy, meta.get("overrides", []))
        except UserError as err:
            raise UserError(str(err).replace(str(copy), str(space))) from None
    tree = merged(sweep.base_config, sampled)
    try:
        return DefrConfig.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(f"{space} (trial {trial_id}): {describe_validation_error(err, '', DefrConfig)}") from None


def detection_options(base, **fields: Any):
    """The trial's detection block with the command-line options that were given (None = keep)."""
    from pydantic import ValidationError

    from raysweep.tasks.defr.detection_config import DetectionConfig

    tree = base.model_dump()
    tree.update({k: v for k, v in fields.items() if v is not None})
    try:
        return DetectionConfig.model_validate(tree)
    except ValidationError as err:
        first = err.errors()[0]
        key = "--" + str(first["loc"][0]).replace("_", "-")
        raise UserError(f"{key}: {first['msg']} (got {first.get('input')!r})") from None


def _device(name: Optional[str]):
    import torch

    if not name:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r}: not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and (not torch.cuda.is_available()
                                  or (device.index or 0) >= torch.cuda.device_count()):
        raise UserError(f"--device {name!r}: no such CUDA device here ({torch.cuda.device_count()} visible); "
                        f"use cpu")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"--device {name!r}: use cpu, cuda or cuda:N")
    return device


def run(checkpoint: str, anno_dir: str, detections: Optional[str], out: str, evaluate: bool, protocol: str,
        device: Optional[str], **options: Any) -> None:
    from raysweep.data.hicodet import load_hicodet
    from raysweep.tasks.defr.backbones import normalisation_for
    from raysweep.tasks.defr.data import NORMALISATION
    from raysweep.tasks.defr.detection import DEFAULT_DETECTIONS, detect_hicodet, predictions_as_json
    from raysweep.tasks.defr.detection_format import load_detections
    from raysweep.tasks.defr.detection_model import build_net_from_state, load_state

    out_path = Path(out).expanduser()
    if out_path.suffix.lower() != ".json":
        raise UserError(f"--out {out!r}: predictions are written as JSON; give a .json path")
    if not out_path.parent.is_dir():
        raise UserError(f"--out {out!r}: folder {str(out_path.parent)!r} does not exist")
    if protocol not in ("official", "qpic"):
        raise UserError(f"--protocol: {protocol!r} is not one of official, qpic")
    _device(device)  # a bad --device fails before any work
    state_path, experiment, trial_id = resolve_checkpoint(checkpoint)
    cfg = trial_config(experiment, trial_id)
    det_cfg = detection_options(cfg.detection, **options)
    annotations = load_hicodet(anno_dir)
    source = Path(detections) if detections else annotations.root / DEFAULT_DETECTIONS
    if not detections and not source.exists():
        raise DataError(f"{source}: no detections; give --detections (a raysweep detection JSON file, or a folder of "
                        f"per-image <stem>.json files)")
    found = load_detections(source, [rec["file_name"] for rec in annotations.test])
    net = build_net_from_state(cfg, load_state(state_path), str(state_path))
    norm = cfg.data.normalisation if cfg.data.normalisation != "auto" else normalisation_for(cfg.model)
    target = _device(device)
    predictions = detect_hicodet(net, annotations, found, det_cfg, cfg.data.image_size, NORMALISATION[norm],
                                 target, progress=True)
    with tempfile.NamedTemporaryFile("w", dir=out_path.parent, suffix=".tmp", delete=False) as f:
        json.dump(predictions_as_json(predictions), f, separators=(",", ":"))
    os.replace(f.name, out_path)
    pairs = sum(len(p["sub_ids"]) for p in predictions)
    print(f"DEFR detection (trial {trial_id}, mask {det_cfg.mask_mode}, rescoring {det_cfg.rescoring}): "
          f"{len(predictions)} test images, {pairs} pairs scored; predictions written to {out_path}")
    if evaluate:
        from raysweep.metrics.hicodet import evaluate_hicodet
        from raysweep.metrics.hicodet_eval_cli import format_table

        print(format_table(evaluate_hicodet(annotations, predictions, protocol, source=str(out_path))))
