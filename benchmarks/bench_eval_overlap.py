"""Evaluation on or off the training critical path (`train.eval_overlap`), measured in one run.

    python benchmarks/bench_eval_overlap.py                 # both parts, ~5 minutes on the shared 2-core machine
    python benchmarks/bench_eval_overlap.py --epochs 6 --skip-scoring
    python benchmarks/bench_eval_overlap.py --skip-sweeps --no-ray   # part 2's scoring and pickling only, no Ray

Part 1, the HQM embedded sweep (search_spaces/hqm.yaml's data, model and recipe; two trials side by side, a grid over
the seed, no scheduler, `--epochs` epochs) three times: without evaluation (only the always-evaluated last epoch),
evaluating every epoch inline, and every epoch overlapped. Per epoch it reads the worker's own timings from each
trial's `result.json`: `epoch_time_s` (training) and `eval_time_s` (the evaluation's share of the critical path:
prediction and scoring inline; prediction, hand-off and any wait for the scores when overlapped). The critical path
of an epoch is their sum; the throughput ratio is training images per second of critical path with evaluation every
epoch over the same without evaluation, on the steady epochs (the first, which starts the scorer, and the last, always
evaluated, left out). Also the wall time of each whole `raysweep tune`.

Part 2, paper-sized HICO-DET (9,658 test images, 100 queries, synthetic predictions of
benchmarks/bench_hicodet_eval.py): the scoring time that overlapping takes off the critical path, against the
hand-off it adds (`ray.put` of the gathered predictions into the object store) and the round trip through a scorer
actor.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {  # name -> train.* overrides
    "no evaluation": {"eval_every": 10_000, "eval_overlap": False},
    "inline, every epoch": {"eval_every": 1, "eval_overlap": False},
    "overlapped, every epoch": {"eval_every": 1, "eval_overlap": True},
}


def bench_space(folder: Path, epochs: int, train: dict) -> Path:
    """hqm.yaml with a seed grid of two trials, no scheduler, `epochs` epochs and the variant's train keys."""
    raw = yaml.safe_load((REPO / "search_spaces" / "hqm.yaml").read_text())
    raw["name"] = "bench-eval-overlap"
    raw["config"]["train"].update({"epochs": epochs, "test_every": 1, **train})
    raw["config"]["optim"]["lr_drop"] = max(1, epochs - 1)
    raw["search"] = {"train.seed": {"distribution": "grid", "values": [0, 1]}}
    raw.pop("optuna", None)
    raw["scheduler"] = {"type": "none"}
    raw["trials"] = {"num_samples": 1, "max_concurrent": 2}
    path = folder / f"space-{len(list(folder.glob('space-*')))}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def run_sweep(space: Path, storage: Path, name: str) -> tuple[float, list[list[dict]]]:
    cmd = [sys.executable, "-m", "raysweep.cli", "tune", str(space), "--storage", str(storage), "--name", name]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:])
        raise SystemExit(f"raysweep tune exited {proc.returncode}")
    histories = []
    for result in sorted((storage / name).glob("*/result.json")):
        rows = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        histories.append(sorted(rows, key=lambda r: r["epoch"]))
    return wall, histories


def steady(histories: list[list[dict]]) -> list[dict]:
    """The epochs between the first and the last of every trial."""
    return [row for rows in histories for row in rows[1:-1]]


def critical_s(row: dict) -> float:
    return float(row["epoch_time_s"]) + float(row.get("eval_time_s", 0.0))


def part_sweeps(epochs: int) -> None:
    print(f"## HQM embedded sweep: 2 trials x {epochs} epochs side by side, 1 CPU each")
    folder = Path(tempfile.mkdtemp(prefix="raysweep-bench-eval-"))
    measured = {}
    for i, (variant, train) in enumerate(VARIANTS.items()):
        wall, histories = run_sweep(bench_space(folder, epochs, train), folder / "storage", f"v{i}")
        rows = steady(histories)
        measured[variant] = {"wall": wall, "rows": rows, "histories": histories}
    base = statistics.mean(critical_s(r) for r in measured["no evaluation"]["rows"])
    print("| evaluation | training s / epoch | evaluation on the critical path s / epoch | epoch s | "
          "throughput vs no evaluation | sweep wall s |")
    print("|---|---|---|---|---|---|")
    for variant, m in measured.items():
        train = statistics.mean(float(r["epoch_time_s"]) for r in m["rows"])
        evaluation = statistics.mean(float(r.get("eval_time_s", 0.0)) for r in m["rows"])
        epoch = statistics.mean(critical_s(r) for r in m["rows"])
        print(f"| {variant} | {train:.2f} | {evaluation:.2f} | {epoch:.2f} | {base / epoch:.3f}x | {m['wall']:.0f} |")
    same = all(
        {k: v for k, v in a.items() if k.startswith(("val.", "test.", "loss"))}
        == {k: v for k, v in b.items() if k.startswith(("val.", "test.", "loss"))}
        for ha, hb in zip(measured["inline, every epoch"]["histories"],
                          measured["overlapped, every epoch"]["histories"], strict=True)
        for a, b in zip(ha, hb, strict=True))
    print(f"inline and overlapped histories equal (losses, val.*, test.*, every epoch): {same}")
    overlapped, inline = measured["overlapped, every epoch"], measured["inline, every epoch"]
    print(f"ratio training throughput with evaluation every epoch / without: inline "
          f"{base / statistics.mean(critical_s(r) for r in inline['rows']):.3f}x, overlapped "
          f"{base / statistics.mean(critical_s(r) for r in overlapped['rows']):.3f}x (goal >= 0.95x)")


def part_scoring(with_ray: bool = True) -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_hicodet_eval import make_benchmark_data

    from raysweep.metrics.hicodet import evaluate_hicodet

    print("\n## Paper-sized HICO-DET evaluation (9,658 test images, 100 queries, QPIC protocol, one thread)")
    annotations, predictions = make_benchmark_data()
    outputs = dict(enumerate(predictions))
    started, cpu = time.perf_counter(), time.process_time()
    evaluate_hicodet(annotations, predictions, "qpic")
    score_s, score_cpu = time.perf_counter() - started, time.process_time() - cpu
    started, cpu = time.perf_counter(), time.process_time()
    size = len(pickle.dumps(outputs, protocol=5))
    pickle_s, pickle_cpu = time.perf_counter() - started, time.process_time() - cpu

    print("| step | wall s | CPU s |")
    print("|---|---|---|")
    print(f"| scoring inline (`evaluate_hicodet`, what overlapping takes off the critical path) | {score_s:.2f} | "
          f"{score_cpu:.2f} |")
    print(f"| pickling the gathered predictions ({size / 2**20:.0f} MiB; `gather_object` does it either way) | "
          f"{pickle_s:.2f} | {pickle_cpu:.2f} |")
    if not with_ray:
        return
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        @ray.remote(num_cpus=0)
        class Scorer:
            def __init__(self, annotations):
                self.annotations = annotations

            def score(self, outputs):
                return evaluate_hicodet(self.annotations, [outputs[i] for i in range(len(outputs))], "qpic")["default"]

        scorer = Scorer.remote(annotations)
        put_s, round_trip_s = [], []
        for _ in range(2):
            started = time.perf_counter()
            ref = ray.put(outputs)
            put_s.append(time.perf_counter() - started)
            result = scorer.score.remote(ref)
            ray.get(result)
            round_trip_s.append(time.perf_counter() - started)
    finally:
        ray.shutdown()
    print(f"| hand-off to the scorer (`ray.put`, on the critical path when overlapped) | {min(put_s):.2f} | |")
    print(f"| put + scoring in the actor, waited for (nothing training beside it) | {min(round_trip_s):.2f} | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--skip-sweeps", action="store_true")
    parser.add_argument("--skip-scoring", action="store_true")
    parser.add_argument("--no-ray", action="store_true", help="part 2 without the Ray hand-off (starts no Ray)")
    args = parser.parse_args()
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    started = time.perf_counter()
    if not args.skip_sweeps:
        part_sweeps(args.epochs)
    if not args.skip_scoring:
        part_scoring(with_ray=not args.no_ray)
    print(f"\nbenchmark wall: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
