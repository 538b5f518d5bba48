"""End to end on a real local Ray: a DEFR sweep with `detection.enabled=true` on the embedded default reports
recognition and detection columns in one parquet, and `raysweep detect hico-det` runs on one of its trials."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from support import run_cli_process

REPO = Path(__file__).resolve().parents[1]
SPACE = REPO / "search_spaces" / "defr.yaml"
pytestmark = pytest.mark.slow

TINY = ["data.synth.num_train=80", "data.synth.num_test=30", "data.synth.image_size=32", "data.image_size=32",
        "model.depth=2", "model.patch_size=8", "train.batch_size=16", "train.eval_batch_size=40",
        "scheduler.type=none", "trials.num_samples=1", "train.epochs=2", "detection.enabled=true",
        "detection.mask_mode=hard"]
DET_COLUMNS = ("last.test.det.map", "last.test.det.map_rare", "last.test.det.map_non_rare", "last.test.det.map_ko",
               "last.test.det.map_ko_rare", "last.test.det.map_ko_non_rare")


def test_defr_sweep_with_detection_reports_both_and_detect_runs_on_its_trial(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    run_cli_process(["tune", str(SPACE), *TINY, f"storage.cache_dir={cache}", "--storage", str(tmp_path / "store"),
                     "--name", "det"], cwd=tmp_path, timeout=300)
    experiment = tmp_path / "store" / "det"
    frame = pd.read_parquet(experiment / "results.parquet")
    assert len(frame) == 1 and frame["status"].eq("TERMINATED").all()
    for column in ("last.val.map", "last.test.map", *DET_COLUMNS):
        assert column in frame.columns, column
    assert frame["last.test.det.map"].between(0, 1).all() and frame["last.val.map"].between(0, 1).all()
    assert frame["config.detection.enabled"].all()
    # DEFR trained on the recognition view of the synthetic HICO-DET that detection evaluates on
    (dataset,) = list((cache / "synth_hicodet_defr").iterdir())
    assert (dataset / "anno.pkl").is_file() and not (cache / "synth_hico").exists()

    trial = frame["trial_id"][0]
    out = tmp_path / "preds.json"
    proc = run_cli_process(["detect", "hico-det", "--checkpoint", str(experiment / "_train" / trial),
                            "--anno-dir", str(dataset), "--out", str(out), "--eval", "--device", "cpu"],
                           cwd=tmp_path, timeout=120)
    assert "mask hard" in proc.stdout and "Known-Object" in proc.stdout
    proc = run_cli_process(["eval", "hico-det", "--anno-dir", str(dataset), "--pred", str(out), "--protocol",
                            "official", "--json"], cwd=tmp_path, timeout=120)
    # the same final checkpoint, the same options: the command reproduces the sweep's number
    assert json.loads(proc.stdout)["default"]["full"] == pytest.approx(frame["last.test.det.map"][0], abs=1e-9)
