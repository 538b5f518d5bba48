"""Small things users hit: `validate` warns when this machine cannot run the sweep, `data synth` names a flag that
exists for overwriting and has it, trackers that cannot start are refused before Ray."""

from __future__ import annotations

import os
from pathlib import Path


from support import run_cli

REPO = Path(__file__).resolve().parents[1]
SPACE = str(REPO / "search_spaces" / "defr.yaml")


def test_validate_warns_when_resources_exceed_this_machine(capsys) -> None:
    workers = (os.cpu_count() or 1) + 1
    code, out, err = run_cli(["validate", SPACE, f"resources.num_workers={workers}"], capsys)
    assert code == 0 and "— OK" in out
    assert err.startswith("raysweep: warning: resources: a trial needs") and err.count("\n") == 1
    assert f"but this machine has {os.cpu_count():g} CPUs" in err and "--address" in err


def test_validate_is_quiet_when_the_machine_fits(capsys) -> None:
    code, _, err = run_cli(["validate", SPACE], capsys)
    assert code == 0 and err == ""


def test_validate_does_not_judge_a_cluster_by_this_machine(capsys) -> None:
    code, _, err = run_cli(["validate", SPACE, "resources.num_workers=64", "ray.address=auto"], capsys)
    assert code == 0 and "resources" not in err


def test_validate_warns_about_wandb_without_a_key(monkeypatch, tmp_path: Path, capsys) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc from `wandb login`
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    code, out, err = run_cli(["validate", SPACE, "tracking.wandb=true"], capsys)
    assert code == 0 and "wandb: true" in out
    assert "tracking.wandb: no W&B API key; export WANDB_API_KEY" in err and "tracking.wandb_mode=offline" in err
    code, _, err = run_cli(["validate", SPACE, "tracking.wandb=true", "tracking.wandb_mode=offline"], capsys)
    assert code == 0 and err == ""


def test_data_synth_refusal_names_the_overwrite_flag_and_the_flag_works(tmp_path: Path, capsys) -> None:
    out_dir = tmp_path / "hico"
    args = ["data", "synth", "hico", "--out", str(out_dir), "--num-train", "20", "--num-test", "10",
            "--image-size", "32"]
    code, _, err = run_cli([*args, "--seed", "0"], capsys)
    assert code == 0, err
    code, _, err = run_cli([*args, "--seed", "1"], capsys)
    assert code == 2 and err.count("\n") == 1 and "was generated with other parameters" in err
    assert "pass --overwrite to `raysweep data synth`" in err
    code, out, err = run_cli([*args, "--seed", "1", "--overwrite"], capsys)
    assert code == 0 and f"synthetic HICO written to {out_dir}" in out
    import json

    assert json.loads((out_dir / ".complete").read_text())["seed"] == 1


def test_data_synth_shows_a_progress_bar(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("RAYSWEEP_PROGRESS", "1")  # shown on a terminal; forced here, where stderr is captured
    code, _, err = run_cli(["data", "synth", "hicodet", "--out", str(tmp_path / "det"), "--num-train", "8",
                            "--num-test", "4", "--image-size", "64"], capsys)
    assert code == 0
    assert "synthetic HICO-DET train2015" in err and "img" in err


def test_progress_only_where_wanted(monkeypatch, capsys) -> None:
    from raysweep import progress
    from raysweep.sweep.console import preparing

    monkeypatch.setenv("RAYSWEEP_PROGRESS", "0")
    with preparing("nothing"):
        assert not progress.enabled()
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("RAYSWEEP_PROGRESS", "1")
    with preparing("data"):
        assert progress.enabled() and list(progress.bar(range(3), desc="x")) == [0, 1, 2]
    err = capsys.readouterr().err
    assert err.startswith("Preparing data ...\n") and err.rstrip().endswith("ready (0 s)")
    monkeypatch.delenv("RAYSWEEP_PROGRESS")
    assert progress.wanted() is False  # pytest's stderr is no terminal: logs and pipes stay clean
