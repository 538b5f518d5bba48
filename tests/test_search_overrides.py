"""`search.<param>.<field>=value` overrides edit one searched parameter from the command line; mistakes get a
suggestion that exists."""

from __future__ import annotations

from pathlib import Path

import pytest

from raysweep.errors import ConfigError
from raysweep.spec.load import load_sweep
from raysweep.spec.schema import Choice, LogUniform

REPO = Path(__file__).resolve().parents[1]
SPACE = REPO / "search_spaces" / "defr.yaml"


def test_field_override_changes_one_bound() -> None:
    sweep = load_sweep(SPACE, ["search.optim.lr.high=0.01"])
    lr = sweep.spec.search["optim.lr"]
    assert isinstance(lr, LogUniform) and (lr.low, lr.high) == (4.0e-4, 0.01)


def test_values_override_and_whole_entry() -> None:
    sweep = load_sweep(SPACE, ["search.loss.name.values=[bce]",
                               "search.train.epochs={distribution: choice, values: [1, 2]}"])
    assert sweep.spec.search["loss.name"].values == ["bce"]
    epochs = sweep.spec.search["train.epochs"]
    assert isinstance(epochs, Choice) and epochs.values == [1, 2]


def test_field_override_is_validated_like_the_file() -> None:
    with pytest.raises(ConfigError, match=r"`low < high` must hold, but got \(low=0.0004, high=1e-05\)"):
        load_sweep(SPACE, ["search.optim.lr.high=1e-5"])


@pytest.mark.parametrize("override,expected", [
    ("search.optim.lr.hgh=0.01", "'hgh' is not a field of search.optim.lr (loguniform) (did you mean 'high'?); "
                                 "fields: when, distribution, low, high"),
    ("search.optim.lrr.high=0.01", "'optim.lrr' is not searched (did you mean 'optim.lr'?); searched: "
                                   "classifier.init, loss.name, prompts.template, optim.lr. Edit a field as "
                                   "search.optim.lr.high=value"),
    ("search.optim.lr=0.001", "to fix a searched key give it directly (optim.lr=0.001)"),
])
def test_mistakes_get_a_suggestion_that_works(override: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_sweep(SPACE, [override])
    assert expected in str(info.value)
    suggested = str(info.value).rsplit("(", 1)[-1].rstrip(")") if "directly" in expected else None
    if suggested:  # the suggested override itself is accepted
        assert load_sweep(SPACE, [suggested]).base_config["optim"]["lr"] == 0.001
