"""End to end on a real local Ray: `raysweep tune search_spaces/hqm_vcoco.yaml` (2 trials, toy scale) → parquet with
the V-COCO metrics → `raysweep report` in the V-COCO layout (Scenario 1 / Scenario 2)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest
from support import run_cli_process

REPO = Path(__file__).resolve().parents[1]
SPACE = REPO / "search_spaces" / "hqm_vcoco.yaml"
pytestmark = pytest.mark.slow

# 60 + 16 synthetic V-COCO images of 64 px with two objects, 2 epochs; fixing hqm.gbs leaves the amm grid
# (QPIC + GBS, QPIC + HQM).
TINY = ["data.synth.num_train=60", "data.synth.num_test=16", "data.synth.objects=[ball,dog]",
        "data.synth.image_size=64", "data.train_scales=[64]", "data.crop_resize_scales=[64]", "data.crop_min=64",
        "data.crop_max=64", "data.test_size=64", "train.epochs=2", "train.eval_every=1", "optim.lr_drop=1",
        "hqm.gbs=true", "trials.num_samples=1"]
METRICS = ("map", "role_ap_s1", "role_ap_s2", "agent_ap")


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    workdir = tmp_path_factory.mktemp("e2e_hqm_vcoco")
    proc = run_cli_process(["tune", str(SPACE), *TINY, f"storage.cache_dir={workdir / 'cache'}", "--storage",
                            str(workdir / "store"), "--name", "vcoco"], cwd=workdir)
    return workdir, workdir / "store" / "vcoco", proc


def test_two_trial_vcoco_sweep_writes_the_role_aps(finished) -> None:
    _, experiment, _ = finished
    frame = pd.read_parquet(experiment / "results.parquet")
    assert len(frame) == 2 and set(frame["status"]) == {"TERMINATED"} and frame["epochs_done"].eq(2).all()
    assert frame["config.data.dataset"].eq("vcoco").all()
    assert sorted(frame["config.hqm.amm"].astype(bool)) == [False, True]
    for metric in METRICS:
        assert frame[f"last.test.{metric}"].between(0, 1).all(), metric
        assert f"last.val.{metric}" in frame.columns and f"best_val.test.{metric}" in frame.columns
    assert (frame["last.test.map"] == frame["last.test.role_ap_s1"]).all()
    assert (frame["objective"] == "val.role_ap_s1").all()  # the space file selects on Scenario 1 role AP
    assert "last.test.ko_map" not in frame.columns  # HICO-DET's metrics are not reported on V-COCO


def test_tune_and_report_print_the_vcoco_table(finished) -> None:
    workdir, experiment, proc = finished
    header = next(line for line in proc.stdout.splitlines() if line.startswith("| method"))
    assert [c.strip() for c in header.split("|")[1:-1]] == ["method", "backbone", "val", "Scenario 1", "Scenario 2", "n"]
    paper = run_cli_process(["report", str(experiment / "results.parquet"), "--layout", "paper"], cwd=workdir).stdout
    lines = paper.splitlines()
    assert lines[2].startswith("| QPIC       | R50") and "R101" in lines[3] and "Not in the paper (2 rows)" in paper
    assert "| QPIC + GBS | tiny" in paper and "| QPIC + HQM | tiny" in paper
