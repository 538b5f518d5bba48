"""DEFR detection on the embedded default, measured against chance (the numbers in docs/defr_detection.md).

    python benchmarks/defr_detection_embedded.py [--epochs 6] [--cache DIR]

Generates the synthetic HICO-DET with its detection views (search_spaces/defr.yaml's data sizes), trains DEFR with
that file's fixed config on its recognition view in this process (no Ray), then runs the detection pipeline with
each mask mode × rescoring and scores it with the official protocol. Chance: the same predictions (same pairs,
boxes and submitted classes) with uniform random scores.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader

from raysweep.data.hicodet import load_hicodet
from raysweep.data.synth.detections import ensure_synthetic_detection_set
from raysweep.metrics.hicodet import evaluate_hicodet
from raysweep.tasks.base import evaluate_in_process
from raysweep.tasks.defr.config import DefrConfig
from raysweep.tasks.defr.data import NORMALISATION
from raysweep.tasks.defr.detection import DEFAULT_DETECTIONS, detect_hicodet, detection_metrics
from raysweep.tasks.defr.detection_format import load_detections
from raysweep.tasks.defr.task import DefrTask

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--cache", default=None, help="cache folder (default: a temporary one)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cache = Path(args.cache or tempfile.mkdtemp(prefix="raysweep-defr-det-"))
    tree = yaml.safe_load((REPO / "search_spaces" / "defr.yaml").read_text())["config"]
    tree["train"]["epochs"] = args.epochs
    tree["optim"]["lr"] = args.lr
    cfg = DefrConfig.model_validate(tree)
    root = ensure_synthetic_detection_set(cache, cfg.data.synth, cfg.detection.synth, progress=True)
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"root": str(root)})})
    DefrTask.prepare(cfg, cache)
    task = DefrTask(cfg, cache)
    torch.manual_seed(cfg.train.seed)
    parts = task.build(torch.device("cpu"))
    started = time.perf_counter()
    loader = DataLoader(parts.train_set, batch_size=parts.batch_size, shuffle=True)
    for epoch in range(task.epochs):
        parts.model.train()
        for it, batch in enumerate(loader):
            loss, _ = task.train_step(parts.model, batch, epoch, it, parts.state)
            parts.optimizer.zero_grad()
            loss.backward()
            parts.optimizer.step()
            parts.schedule.step_iteration(epoch + (it + 1) / len(loader))
    recognition = evaluate_in_process(task, parts)
    print(f"recognition after {task.epochs} epochs ({time.perf_counter() - started:.0f} s): map "
          f"{recognition['map']:.4f}")
    annotations = load_hicodet(root)
    detections = load_detections(root / DEFAULT_DETECTIONS, [r["file_name"] for r in annotations.test])
    print(f"{'mask_mode':<14}{'rescoring':<11}{'Full':>8}{'Rare':>8}{'Non-rare':>10}{'KO Full':>9}{'pairs':>8}"
          f"{'time s':>8}")
    for mode in ("additive_one", "hard"):
        for rescoring in ("cache", "test"):
            det = cfg.detection.model_copy(update={"mask_mode": mode, "rescoring": rescoring})
            t0 = time.perf_counter()
            preds = detect_hicodet(parts.model, annotations, detections, det, cfg.data.image_size,
                                   NORMALISATION["half"])
            m = detection_metrics(evaluate_hicodet(annotations, preds, "official"))
            pairs = sum(len(p["sub_ids"]) for p in preds)
            print(f"{mode:<14}{rescoring:<11}{m['det.map']:>8.4f}{m['det.map_rare']:>8.4f}"
                  f"{m['det.map_non_rare']:>10.4f}{m['det.map_ko']:>9.4f}{pairs:>8}{time.perf_counter() - t0:>8.1f}")
    rng = np.random.default_rng(0)
    chance = []
    for _ in range(5):
        for p in preds:
            p["verb_scores"] = ((p["verb_scores"] > 0) * rng.random(p["verb_scores"].shape)).astype(np.float32)
        chance.append(detection_metrics(evaluate_hicodet(annotations, preds, "official"))["det.map"])
    print(f"chance (uniform random scores, 5 draws): Full {np.mean(chance):.4f} ± {np.std(chance):.4f}")


if __name__ == "__main__":
    main()
