"""HQM's paper table (row labels, columns, paper rows) and its two shipped space files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from optuna.trial import FixedTrial

from raysweep.results.tables import render_table
from raysweep.spec import load_sweep
from raysweep.spec.schema import Grid, LogUniform, Uniform
from raysweep.sweep.optuna_space import DefineByRun, grid_points_to_evaluate
from raysweep.tasks.hqm.paper import HICODET_TABLE, row_labels
from raysweep.tasks.hqm.task import HqmTask

REPO = Path(__file__).resolve().parents[1]
EMBEDDED, PAPER = REPO / "search_spaces" / "hqm.yaml", REPO / "search_spaces" / "hqm_paper.yaml"


def _labels(gbs, amm, backbone="resnet50", **extra) -> dict[str, str]:
    return row_labels({"hqm.gbs": gbs, "hqm.amm": amm, "model.backbone": backbone,
                       "hqm.alternation": "ajl", "eval.protocol": "qpic", **extra})


@pytest.mark.parametrize("gbs, amm, method", [(False, False, "QPIC"), (True, False, "QPIC + GBS"),
                                              (False, True, "QPIC + AMM"), (True, True, "QPIC + HQM")])
def test_row_labels_name_the_four_ablation_methods(gbs, amm, method) -> None:
    assert _labels(gbs, amm) == {"method": method, "backbone": "R50"}
    # As a results parquet may hold the flags: numpy bools or their strings.
    import numpy as np

    assert _labels(np.bool_(gbs), np.bool_(amm))["method"] == method
    assert _labels(str(gbs), str(amm).lower())["method"] == method


def test_row_labels_mark_options_that_change_the_row_and_name_backbones() -> None:
    assert _labels(True, True, **{"hqm.alternation": None})["method"] == "QPIC + HQM"  # missing: the default
    assert _labels(True, True, **{"hqm.alternation": "random"})["method"] == "QPIC + HQM (random alternation)"
    assert _labels(True, False, **{"hqm.alternation": "random"})["method"] == "QPIC + GBS"  # no alternation
    assert _labels(False, False, **{"eval.protocol": "official"})["method"] == "QPIC, official eval"
    assert [_labels(False, False, b)["backbone"] for b in ("resnet101", "resnet18", "tiny")] == ["R101", "R18", "tiny"]


def test_table_columns_are_default_then_known_object_from_the_metric_names() -> None:
    columns = ["Full", "Rare", "Non-rare", "Known-Object Full", "Known-Object Rare", "Known-Object Non-rare"]
    assert list(HICODET_TABLE.columns) == columns
    assert list(HICODET_TABLE.columns.values()) == list(HqmTask.metric_names[:6])
    assert list(HICODET_TABLE.known_object) == columns[3:]


def test_paper_rows_are_row_labels_with_the_published_numbers() -> None:
    assert HICODET_TABLE.rows == (_labels(False, False), _labels(True, True))
    assert HqmTask.paper_table([{"data.dataset": "hicodet"}]) is HICODET_TABLE
    assert HICODET_TABLE.published[0] == {"Full": 29.07, "Rare": 21.85, "Non-rare": 31.23, "Known-Object Full": 31.68,
                                          "Known-Object Rare": 24.14, "Known-Object Non-rare": 33.93}
    assert HICODET_TABLE.published[1]["Full"] == 31.34 and HICODET_TABLE.published[1]["Known-Object Non-rare"] == 35.42


def _frame(rows: list[tuple[bool, bool, str, float]]) -> pd.DataFrame:
    records = []
    for i, (gbs, amm, backbone, value) in enumerate(rows):
        record = {"task": "hqm", "trial_id": f"t{i}", "status": "TERMINATED", "outcome": "completed",
                  "config.hqm.gbs": gbs, "config.hqm.amm": amm, "config.model.backbone": backbone,
                  "config.hqm.alternation": "ajl", "config.eval.protocol": "qpic"}
        record.update({f"last.{m}": value + k / 100 for k, m in enumerate(HqmTask.metric_names)})
        records.append(record)
    return pd.DataFrame(records)


def test_report_paper_layout_puts_paper_rows_first_with_mean_and_std() -> None:
    frame = _frame([(True, True, "resnet50", 0.30), (True, True, "resnet50", 0.32), (True, False, "tiny", 0.5)])
    text = render_table(frame, layout="paper", with_ko=True)
    lines = text.splitlines()
    cells = [[cell.strip() for cell in line.split("|")[1:-1]] for line in lines if line.startswith("|")]
    assert cells[0] == ["method", "backbone", "Full", "Rare", "Non-rare", "Known-Object Full", "Known-Object Rare",
                        "Known-Object Non-rare", "n"]
    assert [rule.endswith(":") for rule in cells[1]] == [False] * 2 + [True] * 7  # labels left, numbers right
    assert cells[2][:3] == ["QPIC", "R50", "–"]  # a paper row without results
    assert cells[3][:4] == ["QPIC + HQM", "R50", "31.00 ± 1.41", "32.00 ± 1.41"] and cells[3][-1] == "2"
    assert "Not in the paper (1 row)" in text and ["QPIC + GBS", "tiny", "50.00"] in [row[:3] for row in cells]
    plain = render_table(frame, layout="paper")
    assert "Known-Object" not in plain and "Full" in plain and "Non-rare" in plain
    results = render_table(frame, layout="results")
    assert "Known-Object Non-rare" in results and results.index("QPIC + GBS") < results.index("QPIC + HQM")


def test_results_layout_lists_the_ablation_in_the_papers_order_not_alphabetically() -> None:
    frame = _frame([(True, True, "tiny", 0.3), (False, True, "tiny", 0.2), (True, False, "tiny", 0.4),
                    (False, False, "tiny", 0.1), (False, False, "resnet50", 0.1)])
    lines = render_table(frame, layout="results").splitlines()[2:7]
    assert [line.split("|")[1].strip() + " / " + line.split("|")[2].strip() for line in lines] == [
        "QPIC / tiny", "QPIC / R50", "QPIC + GBS / tiny", "QPIC + AMM / tiny", "QPIC + HQM / tiny"]


def test_embedded_space_is_the_four_way_ablation_with_conditional_hard_weight() -> None:
    sweep = load_sweep(EMBEDDED)
    assert sweep.task_cls is HqmTask and sweep.metric == "val.map" and sweep.spec.scheduler.type == "asha"
    assert {(p["hqm.gbs"], p["hqm.amm"]) for p in sweep.grid_points()} == {(False, False), (True, False),
                                                                         (False, True), (True, True)}
    assert sweep.num_trials == 4 * sweep.spec.trials.num_samples == len(grid_points_to_evaluate(sweep))
    assert isinstance(sweep.params["optim.lr"], LogUniform) and isinstance(sweep.params["hqm.gbs"], Grid)
    assert isinstance(sweep.params["hqm.hard_weight"], Uniform)
    assert (sweep.spec.resources.num_workers, sweep.spec.resources.cpus_per_worker) == (1, 1)
    assert sweep.spec.trials.max_concurrent == 2 and sweep.max_epochs == 36
    assert sweep.base_config["data"]["root"] is None and sweep.base_config["model"]["num_queries"] == 8
    define = DefineByRun(sweep)
    qpic = define(FixedTrial({"hqm.gbs": False, "hqm.amm": True, "optim.lr": 3e-4}))
    assert qpic == {"hqm.gbs": False, "hqm.amm": True, "optim.lr": 3e-4}  # no hard weight without GBS
    hqm = define(FixedTrial({"hqm.gbs": True, "hqm.amm": True, "optim.lr": 3e-4, "hqm.hard_weight": 0.8}))
    assert hqm["hqm.hard_weight"] == 0.8
    # Overriding a grid key fixes it: the end-to-end test's 2-trial sweep.
    two = load_sweep(EMBEDDED, ["hqm.gbs=true", "trials.num_samples=1"])
    assert two.num_trials == 2 and "hqm.gbs" not in two.params


def test_paper_space_holds_the_published_recipes_per_row() -> None:
    sweep = load_sweep(PAPER)
    rows = {(p["hqm.gbs"], p["hqm.amm"]): p for p in sweep.grid_points() if p["data.dataset"] == "hicodet"}
    assert len(rows) == 4 and sweep.num_trials == 6 and sweep.spec.scheduler.type == "none"
    qpic, hqm = rows[(False, False)], rows[(True, True)]
    assert (qpic["train.epochs"], qpic["optim.lr_drop"], qpic["train.eval_every"]) == (150, 100, 1)
    assert (hqm["train.epochs"], hqm["optim.lr_drop"], hqm["hqm.hard_weight"]) == (80, 55, 0.8)
    assert rows[(True, False)]["hqm.hard_weight"] == rows[(False, True)]["hqm.hard_weight"] == 1.0
    assert hqm["model.layout"] == "hqm" and qpic["model.layout"] == "qpic"
    base = sweep.base_config
    assert (base["model"]["backbone"], base["model"]["num_queries"], base["model"]["d_model"]) == ("resnet50", 100, 256)
    assert (base["model"]["enc_layers"], base["model"]["dec_layers"]) == (6, 6)
    assert (base["optim"]["lr"], base["optim"]["lr_backbone"], base["optim"]["weight_decay"]) == (1e-4, 1e-5, 1e-4)
    assert base["optim"]["clip_max_norm"] == 0.1 and base["train"]["batch_size"] == 2
    assert (sweep.spec.resources.num_workers, sweep.spec.resources.use_gpu) == (8, True)
    assert sweep.max_epochs == 150
    # Both label rows of the paper are among the grid's rows.
    labels = [row_labels({**p, "model.backbone": "resnet50"}) for p in sweep.grid_points()]
    assert all(row in labels for row in HICODET_TABLE.rows)


def test_paper_space_gives_each_row_its_reference_final_norm_before_the_amm_heads() -> None:
    """Only HQM's combined model file skips decoder.norm before the AMM heads; the AMM-only file applies it."""
    sweep = load_sweep(PAPER)
    skip = {row_labels({**p, "model.backbone": "resnet50"})["method"]: p["hqm.amm_skip_final_norm"]
            for p in sweep.grid_points()}
    assert skip == {"QPIC": False, "QPIC + GBS": False, "QPIC + AMM": False, "QPIC + HQM": True}
