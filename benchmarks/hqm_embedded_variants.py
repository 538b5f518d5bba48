"""Why the embedded HQM default looks the way it does: one QPIC trial per variant of search_spaces/hqm.yaml, no Ray.

    python3 benchmarks/hqm_embedded_variants.py                       # the variants below, one after another
    python3 benchmarks/hqm_embedded_variants.py --only full-scene     # one of them

Each variant is the space file's config plus the overrides listed in VARIANTS (and the fixed searched values:
QPIC, lr 3e-4), trained by `HqmTask` in a plain loop on one thread with the space file's epochs, LR drop and
evaluation cadence, like a trial but without Ray. Prints the test mAP at each evaluation and the wall time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from raysweep.spec import load_sweep  # noqa: E402
from raysweep.sweep.worker import seed_everything  # noqa: E402
from raysweep.tasks.base import evaluate_in_process  # noqa: E402

SEARCHED = {"hqm.gbs": False, "hqm.amm": False, "optim.lr": 3e-4}
VARIANTS = {
    "default": [],
    # the full synthetic scene: all eight objects (34 HOI classes), 1-3 pairs per image, objects at natural size
    "full-scene": ["data.synth.objects=[ball,bicycle,book,chair,cup,dog,kite,umbrella]",
                   "data.synth.pairs_per_image=[0.4,0.4,0.2]", "data.synth.object_scale=1.0"],
    # QPIC's augmentation scaled down to 128 px: multi-scale resize, random crops, colour jitter
    "qpic-augment": ["data.train_scales=[96,104,112,120,128]", "data.crop_resize_scales=[96,112,128]",
                     "data.crop_min=64", "data.crop_max=112", "data.color_jitter=0.4"],
}


def run(name: str, overrides: list[str], cache: Path) -> None:
    sweep = load_sweep(REPO / "search_spaces" / "hqm.yaml", overrides)
    task_cls = sweep.task_cls
    config = sweep.config_for(SEARCHED)
    updates = task_cls.prepare(config, cache)
    tree = config.model_dump(mode="json")
    tree["data"]["root"] = updates.get("data.root", tree["data"]["root"])
    config = task_cls.config_model.model_validate(tree)
    seed_everything(config.train.seed)
    task = task_cls(config, cache)
    parts = task.build(torch.device("cpu"))
    loader = DataLoader(parts.train_set, batch_size=parts.batch_size, shuffle=True, collate_fn=parts.collate_fn)
    started = time.time()
    for epoch in range(task.epochs):
        parts.model.train()
        task.on_epoch_start(epoch)
        for it, batch in enumerate(loader):
            loss, _ = task.train_step(parts.model, batch, epoch, it, parts.state)
            parts.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parts.model.parameters(), parts.grad_clip_norm)
            parts.optimizer.step()
        parts.schedule.step_epoch(epoch, None)
        if task.should_evaluate(epoch) or epoch == task.epochs - 1:
            metrics = evaluate_in_process(task, parts)
            print(f"{name}: epoch {epoch + 1}, mAP {metrics['map']:.3f} (rare {metrics['map_rare']:.3f}), "
                  f"{time.time() - started:.0f} s", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", choices=sorted(VARIANTS))
    args = p.parse_args()
    torch.set_num_threads(1)
    cache = Path(tempfile.mkdtemp(prefix="raysweep-hqm-variants-"))
    for name, overrides in VARIANTS.items():
        if args.only in (None, name):
            run(name, overrides, cache)


if __name__ == "__main__":
    main()
