"""The `rows` distribution: listed combinations of several keys, run like grid points (not their product)."""

from __future__ import annotations

from pathlib import Path

import pytest

from raysweep.errors import ConfigError
from raysweep.spec.load import load_sweep
from raysweep.spec.schema import Grid
from raysweep.sweep.optuna_space import DefineByRun, grid_points_to_evaluate
from support import FixedTrial, write_space

SPACE = """
task: defr
search:
  recipe:
    distribution: rows
    keys: [classifier.init, loss.name, train.epochs]
    values:
      - [rand, bce, 4]
      - [language, bce, 2]
      - [language, lse_sign, 3]
  train.seed: {distribution: grid, values: [0, 1]}
  prompts.template: {distribution: choice, values: [default, gerund], when: {classifier.init: language}}
trials: {num_samples: 2}
"""


def test_rows_are_grid_points_combined_with_other_grids(tmp_path: Path) -> None:
    sweep = load_sweep(write_space(tmp_path, SPACE))
    points = sweep.grid_points()
    assert len(points) == 3 * 2 and sweep.num_trials == 12
    assert points[0] == {"classifier.init": "rand", "loss.name": "bce", "train.epochs": 4, "train.seed": 0}
    assert {(p["classifier.init"], p["loss.name"], p["train.epochs"]) for p in points} == {
        ("rand", "bce", 4), ("language", "bce", 2), ("language", "lse_sign", 3)}
    assert len(grid_points_to_evaluate(sweep)) == 12
    # The sampler sees one grid per key over its column's values; conditions may name row keys.
    assert sweep.params["loss.name"] == Grid(distribution="grid", values=["bce", "lse_sign"])
    assert list(sweep.params) == ["classifier.init", "loss.name", "train.epochs", "train.seed", "prompts.template"]
    assert sweep.max_epochs == 4
    trial = FixedTrial({"classifier.init": "rand", "loss.name": "bce", "train.epochs": 4, "train.seed": 1})
    assert DefineByRun(sweep)(trial) == {"classifier.init": "rand", "loss.name": "bce", "train.epochs": 4,
                                         "train.seed": 1}
    assert "recipe" in sweep.resolved_space() and "recipe" not in sweep.params


def test_override_fixes_a_row_column(tmp_path: Path) -> None:
    sweep = load_sweep(write_space(tmp_path, SPACE), ["train.epochs=1", "loss.name=bce"])
    assert sweep.base_config["train"]["epochs"] == 1 and "train.epochs" not in sweep.params
    # Without epochs and loss, the two language rows coincide and run once.
    assert [p["classifier.init"] for p in sweep.grid_points()] == ["rand", "rand", "language", "language"]
    only = load_sweep(write_space(tmp_path, SPACE), ["classifier.init=rand", "loss.name=bce", "train.epochs=1",
                                                     "prompts.template=default"])
    assert "recipe" not in only.spec.search and len(only.grid_points()) == 2


@pytest.mark.parametrize("rows, message", [
    ("{distribution: rows, keys: [loss.name, optim.lr], values: [[bce]]}", "values[0] has 1 entries but there are 2"),
    ("{distribution: rows, keys: [loss.name, loss.name], values: [[bce, bce]]}", "keys must be distinct"),
    ("{distribution: rows, keys: [loss.nam], values: [[bce]]}", "recipe.keys[0]: unknown key 'loss.nam'"),
    ("{distribution: rows, keys: [loss.name], values: [[bce], [lse]]}", "recipe.values[1]: row ['lse'] is invalid"),
    ("{distribution: rows, keys: [loss.name], values: [[bce], [bce]]}", "recipe.values[1]: ['bce'] repeats values[0]"),
    ("{distribution: rows, keys: [train.seed], values: [[1]]}", "'train.seed' is also searched as search.train.seed"),
    ("{distribution: rows, keys: [loss.name], values: [[bce]], when: {classifier.init: rand}}", "when"),
])
def test_bad_rows_fail_with_their_key_path(tmp_path: Path, rows: str, message: str) -> None:
    text = f"task: defr\nsearch:\n  recipe: {rows}\n  train.seed: {{distribution: grid, values: [0]}}\n"
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_sweep(write_space(tmp_path, text))


def test_rows_label_must_not_be_a_config_key_and_conditions_come_after(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="search.loss.name: a `rows` entry is named by a label"):
        load_sweep(write_space(tmp_path, "task: defr\nsearch:\n  loss.name: {distribution: rows, keys: [optim.lr], "
                                   "values: [[0.1]]}\n"))
    with pytest.raises(ConfigError, match="'loss.name' must be defined before 'optim.lr'"):
        load_sweep(write_space(tmp_path, "task: defr\nsearch:\n  optim.lr: {distribution: choice, values: [0.1], "
                                   "when: {loss.name: bce}}\n  recipe: {distribution: rows, keys: [loss.name], "
                                   "values: [[bce]]}\n"))
