"""A trial's history over resumed sessions: merged by epoch, newest source wins, wall time summed (no Ray started)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.fs as pafs
import pytest
import torch

from raysweep.results.trial_history import merge_by_epoch, read_trial_history, segment_wall_time
from raysweep.sweep import sessions


def _lines(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _row(epoch: int, loss: float, t: float) -> dict:
    return {"epoch": epoch, "loss": loss, "time_total_s": t, "epoch_time_s": 1.0, "eval_time_s": 0.5}


def test_newest_source_wins_for_an_epoch_reported_twice() -> None:
    old = [{"epoch": 1, "v": "a"}, {"epoch": 2, "v": "a"}]
    new = [{"epoch": 2, "v": "b"}, {"epoch": 3, "v": "b"}]
    merged = merge_by_epoch([old, new])
    assert [(r["epoch"], r["v"]) for r in merged] == [(1, "a"), (2, "b"), (3, "b")]


def test_rows_without_epoch_follow_the_epoch_rows() -> None:
    merged = merge_by_epoch([[{"x": 1}, {"epoch": 2}], [{"epoch": 1}]])
    assert [r.get("epoch") for r in merged] == [1, 2, None]


def test_wall_time_sums_restarted_segments() -> None:
    assert segment_wall_time([_row(1, 0, 10), _row(2, 0, 20), _row(3, 0, 5), _row(4, 0, 12)]) == 32


def test_sessions_and_checkpoint_history_merge_without_loss_or_duplicates(tmp_path: Path) -> None:
    trial, train = tmp_path / "trial", tmp_path / "_train" / "t1"
    trial.mkdir()
    # Session 1 synced epochs 1-2 before the kill; its checkpoint remembers 1-4; session 2 resumed from epoch 3's
    # checkpoint and redid epoch 4 (the checkpoint commit lags one report) onwards.
    _lines(trial / "result.session-1.json", [_row(1, 1.0, 10), _row(2, 0.9, 20)])
    for name, rows in (("checkpoint_a", [_row(e, 1.1 - e / 10, 0) for e in (1, 2, 3)]),
                       ("checkpoint_b", [_row(e, 1.1 - e / 10, 0) for e in (1, 2, 3, 4)])):
        (train / name).mkdir(parents=True)
        (train / name / "history.json").write_text(json.dumps(rows))
    (train / "checkpoint_c").mkdir()
    (train / "checkpoint_c" / "history.json").write_text("{torn")  # damaged: ignored
    _lines(trial / "result.json", [_row(4, 0.66, 7), _row(5, 0.5, 14)])
    history = read_trial_history(pafs.LocalFileSystem(), str(trial), str(train))
    assert [r["epoch"] for r in history.rows] == [1, 2, 3, 4, 5]
    assert [r["loss"] for r in history.rows] == pytest.approx([1.0, 0.9, 0.8, 0.66, 0.5])
    # 20 s (session 1) + 14 s (session 2) + epoch 3, known only from the checkpoint: 1.0 + 0.5 s.
    assert history.wall_time_s == pytest.approx(35.5)


def test_archive_moves_each_trial_result_to_the_next_session_number(tmp_path: Path) -> None:
    trial = tmp_path / "exp" / "raysweep_trial_x"
    trial.mkdir(parents=True)
    (trial / "result.session-1.json").write_text("old\n")
    (trial / "result.json").write_text("new\n")
    (trial / "progress.csv").write_text("a\n")
    (tmp_path / "exp" / "_train").mkdir()
    assert sessions.archive_results(str(tmp_path / "exp")) == 1
    assert sorted(p.name for p in trial.iterdir()) == ["progress.session-2.csv", "result.session-1.json",
                                                        "result.session-2.json"]
    assert (trial / "result.session-2.json").read_text() == "new\n"


def test_an_experiment_without_trials_is_replaceable(tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    exp.mkdir()
    for name in ("raysweep_meta.json", "raysweep_space.yaml", "tuner.pkl", "experiment_state-1.json",
                 "searcher-state-1.pkl"):
        (exp / name).write_text("x")
    assert not sessions.has_started_trials(str(exp))
    assert sorted(sessions.clear_unstarted(str(exp))) == ["experiment_state-1.json", "searcher-state-1.pkl",
                                                          "tuner.pkl"]
    assert sorted(p.name for p in exp.iterdir()) == ["raysweep_meta.json", "raysweep_space.yaml"]
    (exp / "_train" / "abc").mkdir(parents=True)
    assert sessions.has_started_trials(str(exp))


def _checkpoint(folder: Path, epoch: int) -> None:
    from raysweep.sweep.checkpoints import write_history

    folder.mkdir(parents=True)
    torch.save({"model": {"w": torch.ones(1) * epoch}, "epoch": epoch}, folder / "state.pt")
    write_history(folder, [{"epoch": e + 1} for e in range(epoch + 1)])


def test_an_unreadable_checkpoint_falls_back_to_the_previous_one_and_names_the_file(tmp_path: Path) -> None:
    from ray.train import Checkpoint

    from raysweep.sweep.checkpoints import load_resume_point

    run = tmp_path / "run"
    _checkpoint(run / "checkpoint_2026-01-01_00-00-01.000000", 1)
    _checkpoint(run / "checkpoint_2026-01-01_00-00-02.000000", 2)
    latest = run / "checkpoint_2026-01-01_00-00-02.000000"
    (latest / "state.pt").write_bytes(b"not a torch file")
    point = load_resume_point(Checkpoint(str(latest)), torch.device("cpu"))
    assert point.state is not None and point.state["epoch"] == 1
    assert [r["epoch"] for r in point.history] == [1, 2]
    assert str(latest / "state.pt") in point.warning() and "resumed from" in point.warning()

    (run / "checkpoint_2026-01-01_00-00-01.000000" / "state.pt").write_bytes(b"")
    point = load_resume_point(Checkpoint(str(latest)), torch.device("cpu"))
    assert point.unreadable
    assert [r["epoch"] for r in point.history] == [1, 2, 3]  # the longest history.json, beside a damaged state.pt
    reason = point.warning()
    assert reason.startswith("no readable checkpoint to resume from: ")
    assert str(latest / "state.pt") in reason and "checkpoint_2026-01-01_00-00-01.000000/state.pt" in reason
