"""DEFR training-step throughput: fp32 vs TF32 vs bf16 autocast (`train.amp: bf16`) on the same model and batch.

    python3 benchmarks/bench_defr_step.py --device cuda                        # ViT-B/32 at 224, batch 128
    python3 benchmarks/bench_defr_step.py --device cuda --patch 16 --batch-size 64
    python3 benchmarks/bench_defr_step.py --backbone vit_tiny --image-size 64   # embedded default (CPU)

A step is the DEFR network (a random ViT from the paper aliases, the cosine classifier over 600 HOI classes),
LSE-Sign on a fixed multi-label batch, backward and an AdamW step: the work of `DefrTask.train_step` plus the
optimiser, without data loading. Variants are stepped round-robin so drifting load hits all alike; the median of
`--steps` timed steps after `--warmup` is reported with images/s, peak GPU memory and the ratio to fp32.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from raysweep.tasks.defr.backbones import build_backbone  # noqa: E402
from raysweep.tasks.defr.classifier import build_classifier  # noqa: E402
from raysweep.tasks.defr.config import DefrConfig  # noqa: E402
from raysweep.tasks.defr.losses import lse_sign_loss  # noqa: E402
from raysweep.tasks.defr.model import DefrNet  # noqa: E402

NUM_CLASSES = 600


class Variant:
    def __init__(self, name: str, cfg: DefrConfig, image_size: int, device: torch.device):
        torch.manual_seed(0)
        self.name, self.device = name, device
        backbone = build_backbone(cfg.model, image_size)
        classifier = build_classifier(cfg.classifier, backbone.width, NUM_CLASSES, None, 0, backbone.clip_proj)
        self.model = DefrNet(backbone, classifier).to(device).train()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4, weight_decay=1e-4)
        self.times: list[float] = []
        self.peak = 0

    def _context(self):
        if self.name == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def step(self, images: torch.Tensor, targets: torch.Tensor, record: bool) -> None:
        cuda = self.device.type == "cuda"
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = self.name == "tf32"
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        with self._context():
            loss = lse_sign_loss(self.model(images).float(), targets).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        loss.item()
        if cuda:
            torch.cuda.synchronize()
            self.peak = max(self.peak, torch.cuda.max_memory_allocated())
        if record:
            self.times.append(time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--backbone", default="ImageNet1k-ViT-B", help="a DEFR model.backbone (random weights)")
    p.add_argument("--patch", type=int, default=32)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = DefrConfig.model_validate({"model": {"backbone": args.backbone, "patch_size": args.patch},
                                     "classifier": {"init": "rand"}})
    g = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch_size, 3, args.image_size, args.image_size, generator=g).to(device)
    targets = torch.where(torch.rand(args.batch_size, NUM_CLASSES, generator=g) < 0.01, 1.0,
                          torch.where(torch.rand(args.batch_size, NUM_CLASSES, generator=g) < 0.2, -1.0, 0.0))
    targets = targets.to(device)
    names = ["fp32", "tf32", "bf16"] if device.type == "cuda" else ["fp32"]
    variants = [Variant(n, cfg, args.image_size, device) for n in names]
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"torch {torch.__version__}, {gpu}, backbone {args.backbone} /{args.patch} at {args.image_size} px, "
          f"batch {args.batch_size}, {sum(p.numel() for p in variants[0].model.parameters()) / 1e6:.1f} M params")
    for it in range(args.warmup + args.steps):
        for v in variants:
            v.step(images, targets, record=it >= args.warmup)
    base = None
    for v in variants:
        q1, med, q3 = statistics.quantiles(v.times, n=4)
        base = base or med
        memory = f"  peak {v.peak / 2**30:.2f} GiB" if v.peak else ""
        print(f"{v.name:5s} median {med * 1e3:8.1f} ms  IQR [{q1 * 1e3:.1f}, {q3 * 1e3:.1f}]  "
              f"{args.batch_size / med:8.0f} img/s  speed-up x{base / med:.2f}{memory}")


if __name__ == "__main__":
    main()
