"""Results files as teammates and SQL engines meet them: `collect -o x.csv`, `--flat-names`, one parquet schema across
experiments, and the process umask on every atomically written file. No Ray: the experiment folders hold the files
Tune writes (experiment state, params, result.json), laid out by hand."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from support import run_cli

REPO = Path(__file__).resolve().parents[1]
SPACE = (REPO / "search_spaces" / "defr.yaml").read_text()


def make_experiment(root: Path, name: str, trials: list[dict]) -> Path:
    """An experiment folder as `raysweep tune` leaves it. Each trial: id, status, sampled config, history rows."""
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "raysweep_meta.json").write_text(json.dumps({"name": name, "task": "defr", "overrides": [],
                                                           "versions": {"ray": "2.60.0"}}))
    (folder / "raysweep_space.yaml").write_text(SPACE)
    trial_data = []
    for trial in trials:
        logdir = f"raysweep_trial_{trial['id']}"
        (folder / logdir).mkdir()
        (folder / logdir / "result.json").write_text(
            "".join(json.dumps({"trial_id": trial["id"], **row}) + "\n" for row in trial["history"]))
        trial_data.append([json.dumps({"trial_id": trial["id"], "status": trial["status"], "relative_logdir": logdir,
                                       "config": trial["config"]}),
                           json.dumps({"num_failures": 0, "error_filename": None})])
    (folder / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps({"trial_data": trial_data}))
    return folder


def history(epochs: int, total: int = 2, base: float = 0.3) -> list[dict]:
    return [{"epoch": e, "epochs_total": total, "val.map": base + 0.1 * e, "test.map": base + 0.1 * e,
             "evaluated": True, "test_evaluated": True, "loss": 1.0 / e, "time_total_s": 2.0 * e}
            for e in range(1, epochs + 1)]


@pytest.fixture()
def experiments(tmp_path: Path) -> tuple[Path, Path]:
    """Two experiments whose values differ in kind: no errors vs an error; an int-valued vs a float-valued lr."""
    clean = make_experiment(tmp_path / "store", "clean", [
        {"id": "a_00000", "status": "TERMINATED", "config": {"optim.lr": 1, "classifier.init": "rand"},
         "history": history(2)},
    ])
    mixed = make_experiment(tmp_path / "store", "mixed", [
        {"id": "b_00000", "status": "TERMINATED", "config": {"optim.lr": 0.001, "classifier.init": "language"},
         "history": history(1)},
        {"id": "b_00001", "status": "ERROR", "config": {"optim.lr": 0.002, "classifier.init": "rand"},
         "history": [{**history(1)[0], "trial_failure": "loss became nan at epoch 1, iteration 3"}]},
    ])
    return clean, mixed


def test_parquet_schema_is_the_same_across_experiments(experiments, tmp_path: Path, capsys) -> None:
    schemas = []
    for folder in experiments:
        code, _, err = run_cli(["collect", str(folder), "-o", str(tmp_path / f"{folder.name}.parquet")], capsys)
        assert code == 0, err
        schemas.append(pq.read_schema(tmp_path / f"{folder.name}.parquet"))
    clean, mixed = schemas
    assert [f for f in clean if pa.types.is_null(f.type)] == []
    assert clean.field("error").type == pa.string() and clean.field("config.data.root").type == pa.string()
    assert clean.field("config.optim.lr").type == pa.float64()  # an lr of 1 is still a float column
    assert clean.field("epochs_total").type == pa.int64() and clean.field("last.test.map").type == pa.float64()
    common = sorted(set(clean.names) & set(mixed.names))
    assert len(common) > 40
    assert {n: clean.field(n).type for n in common} == {n: mixed.field(n).type for n in common}
    both = pa.concat_tables([pq.read_table(tmp_path / "clean.parquet").select(common),
                             pq.read_table(tmp_path / "mixed.parquet").select(common)])
    assert both.num_rows == 3
    frame = pd.read_parquet(tmp_path / "mixed.parquet").set_index("trial_id")
    assert frame.loc["b_00001", "error"] == "TrialFailure: loss became nan at epoch 1, iteration 3"
    assert frame.loc["b_00000", "outcome"] == "pruned" and frame.loc["b_00000", "epochs_done"] == 1


def test_collect_writes_csv_for_a_csv_name(experiments, tmp_path: Path, capsys) -> None:
    target = tmp_path / "out.csv"
    code, out, err = run_cli(["collect", str(experiments[1]), "-o", str(target)], capsys)
    assert code == 0, err
    assert f"{target}: 2 trials" in out
    frame = pd.read_csv(target)
    assert sorted(frame["trial_id"]) == ["b_00000", "b_00001"]
    assert frame["last.test.map"].tolist() == pytest.approx([0.4, 0.4])
    assert frame["config.optim.lr"].tolist() == pytest.approx([0.001, 0.002])


def test_collect_refuses_an_unknown_suffix_and_writes_nothing(experiments, tmp_path: Path, capsys) -> None:
    code, _, err = run_cli(["collect", str(experiments[0]), "-o", str(tmp_path / "out.json")], capsys)
    assert code == 2 and err.count("\n") == 1 and "'.json'" in err and "*.parquet, *.pq, *.csv" in err
    assert not (tmp_path / "out.json").exists()


def test_flat_names_are_sql_identifiers(experiments, tmp_path: Path, capsys) -> None:
    import re

    target = tmp_path / "flat.parquet"
    code, _, err = run_cli(["collect", str(experiments[1]), "-o", str(target), "--flat-names"], capsys)
    assert code == 0, err
    names = pq.read_schema(target).names
    assert all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n) for n in names), names
    assert {"config__optim__lr", "last__test__map", "best_val__test__map", "trial_id"} <= set(names)


def test_flat_name_collisions_are_refused() -> None:
    from raysweep.errors import UserError
    from raysweep.results.columns import flat_name, flat_names

    assert flat_name("config.optim.lr") == "config__optim__lr" and flat_name("last.map_few@1") == "last__map_few_1"
    assert flat_name("1st") == "c_1st"
    with pytest.raises(UserError, match="both become 'a__b'"):
        flat_names(["a.b", "a__b"])


def test_results_files_follow_the_process_umask(experiments, tmp_path: Path, capsys) -> None:
    old = os.umask(0o022)
    try:
        target = tmp_path / "shared.parquet"
        code, _, err = run_cli(["collect", str(experiments[0]), "-o", str(target)], capsys)
        assert code == 0, err
        assert stat.S_IMODE(target.stat().st_mode) == 0o644  # mkstemp alone would leave 0600
        os.umask(0o002)
        from raysweep.experiment.storage import write_text_atomic

        write_text_atomic(str(tmp_path / "meta.json"), "{}")
        assert stat.S_IMODE((tmp_path / "meta.json").stat().st_mode) == 0o664
    finally:
        os.umask(old)
