"""Training-step time of QPIC vs +GBS vs +AMM vs +HQM (alternating) on the same batch.

    python3 benchmarks/bench_hqm_step.py                          # embedded-default tiny model, CPU, 1 thread
    python3 benchmarks/bench_hqm_step.py --paper --device cuda    # R50, d 256, 6+6 layers, 100 queries

A step is forward (main branch + the iteration's hard branch), the criterion with Hungarian matching on every
decoder layer, backward, gradient clipping and an AdamW step. The batch is fixed (random images, 1-3 GT pairs per
image), and every variant starts from the same initial weights. Variants are stepped round-robin (one step each in
turn) so that drifting machine load affects all alike. Reports the median and interquartile range over `--steps`
timed steps after `--warmup` untimed ones; HQM alternates GBS/AMM, so its median mixes both.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from raysweep.tasks.hqm.alternation import hard_branch  # noqa: E402
from raysweep.tasks.hqm.config import HqmConfig  # noqa: E402
from raysweep.tasks.hqm.criterion import build_criterion  # noqa: E402
from raysweep.tasks.hqm.model import build_model  # noqa: E402
from raysweep.tasks.hqm.padded import PaddedBatch  # noqa: E402
from raysweep.tasks.hqm.task import param_groups  # noqa: E402

VARIANTS = {"QPIC": (False, False), "+GBS": (True, False), "+AMM": (False, True), "+HQM (ajl)": (True, True)}
PAPER_MODEL = {"backbone": "resnet50", "d_model": 256, "nhead": 8, "enc_layers": 6, "dec_layers": 6,
               "dim_feedforward": 2048, "num_queries": 100}


def make_batch(batch_size: int, short: int, long: int, device: torch.device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for i in range(batch_size):
        h, w = (short, long) if i % 2 == 0 else (long, short)
        images.append(torch.randn(3, h, w, generator=g))
        n = 1 + i % 3
        centre = torch.rand(n, 2, generator=g) * 0.5 + 0.25
        size = torch.rand(n, 2, generator=g) * 0.3 + 0.1
        verbs = torch.zeros(n, 117)
        verbs[torch.arange(n), torch.randint(0, 117, (n,), generator=g)] = 1
        targets.append({"sub_boxes": torch.cat([centre, size], 1).to(device),
                        "obj_boxes": torch.cat([(centre + 0.1).clamp(max=0.9), size * 0.7], 1).to(device),
                        "obj_labels": torch.randint(0, 80, (n,), generator=g).to(device),
                        "verb_labels": verbs.to(device), "size": torch.tensor([h, w], device=device)})
    return PaddedBatch.from_images(images).to(device), targets


class Variant:
    """One model + criterion + optimiser, stepped on the shared batch."""

    def __init__(self, cfg: HqmConfig, device: torch.device):
        torch.manual_seed(0)
        self.cfg = cfg
        self.model = build_model(cfg, 80, 117).to(device).train()
        self.criterion = build_criterion(cfg, 80).to(device)
        self.opt = torch.optim.AdamW(param_groups(self.model, cfg.optim.lr_backbone), lr=cfg.optim.lr,
                                     weight_decay=1e-4)
        self.device = device
        self.it = 0
        self.times: list[float] = []

    def step(self, batch, record: bool) -> None:
        images, targets = batch
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        sync()
        start = time.perf_counter()
        h = self.cfg.hqm
        branch = hard_branch(h.gbs, h.amm, h.alternation, self.it)
        loss = self.criterion.weighted_total(self.criterion(self.model(images, targets, branch), targets))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 0.1)
        self.opt.step()
        loss.item()
        sync()
        self.it += 1
        if record:
            self.times.append(time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--short", type=int, default=96, help="shorter image side (paper scale: 800)")
    p.add_argument("--long", type=int, default=128, help="longer image side (paper scale: ~1066)")
    p.add_argument("--paper", action="store_true", help="the papers' model sizes instead of the embedded default")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--steps", type=int, default=30)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    batch = make_batch(args.batch_size, args.short, args.long, device)
    model_cfg = PAPER_MODEL if args.paper else {}
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, device {device}, "
          f"threads {args.threads}, batch {args.batch_size} x {args.short}x{args.long}, "
          f"model {'paper (R50)' if args.paper else 'embedded default (tiny)'}")
    variants = {name: Variant(HqmConfig.model_validate({"model": model_cfg, "hqm": {"gbs": gbs, "amm": amm}}), device)
                for name, (gbs, amm) in VARIANTS.items()}
    # round-robin, so drifting machine load hits every variant alike
    for it in range(args.warmup + args.steps):
        for v in variants.values():
            v.step(batch, record=it >= args.warmup)
    base = None
    for name, v in variants.items():
        q1, med, q3 = statistics.quantiles(v.times, n=4)
        base = base or med
        print(f"{name:12s} median {med * 1e3:8.1f} ms  IQR [{q1 * 1e3:.1f}, {q3 * 1e3:.1f}]  x{med / base:.2f}")


if __name__ == "__main__":
    main()
