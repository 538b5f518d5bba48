"""End to end on a real local Ray: `raysweep tune search_spaces/hqm.yaml` (2 trials, toy scale) → parquet → report."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest

from support import run_cli_process

REPO = Path(__file__).resolve().parents[1]
SPACE = REPO / "search_spaces" / "hqm.yaml"
pytestmark = pytest.mark.slow

# The real code path at toy scale: 60 + 16 images of 64 px showing two objects (10 classes, so the test split holds
# both rare and non-rare ones), 2 epochs. Fixing hqm.gbs leaves the amm grid: QPIC + GBS and QPIC + HQM
# (alternating), so both hard-positive branches and the conditional hard weight run.
TINY = ["data.synth.num_train=60", "data.synth.num_test=16", "data.synth.objects=[ball,dog]",
        "data.synth.image_size=64", "data.train_scales=[64]",
        "data.crop_resize_scales=[64]", "data.crop_min=64", "data.crop_max=64", "data.test_size=64",
        "train.epochs=2", "train.eval_every=1", "optim.lr_drop=1", "scheduler.grace_period=1",
        "hqm.gbs=true", "trials.num_samples=1"]
METRICS = ("map", "map_rare", "map_non_rare", "ko_map", "ko_map_rare", "ko_map_non_rare")
COLUMNS = ("Full", "Rare", "Non-rare", "Known-Object Full", "Known-Object Rare", "Known-Object Non-rare")


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    workdir = tmp_path_factory.mktemp("e2e_hqm")
    proc = run_cli_process(["tune", str(SPACE), *TINY, f"storage.cache_dir={workdir / 'cache'}", "--storage",
                    str(workdir / "store"), "--name", "hqm"], cwd=workdir)
    return workdir, workdir / "store" / "hqm", proc


def test_two_trial_sweep_writes_the_six_metrics(finished) -> None:
    _, experiment, proc = finished
    frame = pd.read_parquet(experiment / "results.parquet")
    assert f"Results: {experiment / 'results.parquet'}" in proc.stdout
    assert len(frame) == 2 and frame["trial_id"].is_unique
    assert set(frame["status"]) == {"TERMINATED"} and frame["epochs_done"].eq(2).all()
    assert frame["config.hqm.gbs"].astype(bool).all()
    assert sorted(frame["config.hqm.amm"].astype(bool)) == [False, True]
    assert frame["config.hqm.hard_weight"].between(0.4, 1.2).all()  # sampled: GBS runs in both trials
    assert frame["config.optim.lr"].between(1.5e-4, 4.5e-4).all()
    assert frame["config.model.num_queries"].eq(8).all() and frame["config.data.synth.image_size"].eq(64).all()
    for metric in METRICS:
        for prefix in ("last.val.", "last.test.", "best_val.test.", "best_test.test."):
            assert f"{prefix}{metric}" in frame.columns, metric
    for metric in ("map", "map_rare", "map_non_rare", "ko_map"):
        assert frame[f"last.test.{metric}"].between(0, 1).all(), metric
        assert frame[f"last.val.{metric}"].dropna().between(0, 1).all(), metric
    assert (frame["last.train_loss_hard"] > 0).all()  # a hard-positive branch ran in every iteration


def test_tune_prints_the_hicodet_table_and_report_renders_both_layouts(finished) -> None:
    workdir, experiment, proc = finished
    header = next(line for line in proc.stdout.splitlines() if line.startswith("| method"))
    assert [c.strip() for c in header.split("|")[1:-1]] == ["method", "backbone", "val", *COLUMNS, "n"]
    assert "| QPIC + GBS | tiny" in proc.stdout and "| QPIC + HQM | tiny" in proc.stdout
    parquet = experiment / "results.parquet"
    paper = run_cli_process(["report", str(parquet), "--layout", "paper", "--with-ko"], cwd=workdir).stdout
    lines = paper.splitlines()
    assert [c.strip() for c in lines[0].split("|")[1:-1]] == ["method", "backbone", "val", *COLUMNS, "n"]
    assert lines[2].startswith("| QPIC       | R50") and lines[3].startswith("| QPIC + HQM | R50")  # no results: –
    assert "Not in the paper (2 rows)" in paper
    csv = run_cli_process(["report", str(experiment), "--format", "csv"], cwd=workdir).stdout
    assert "Known-Object Non-rare mean" in csv and len(csv.strip().splitlines()) == 3  # header + 2 rows
