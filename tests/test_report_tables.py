"""`raysweep report`'s tables from a task's `PaperTable`: the unit and columns come from the table (or, for a task
without one, a column per metric), every LaTeX header and cell is escaped, and a PaperTable refuses rows that do
not fit it."""

from __future__ import annotations

from typing import Any, ClassVar, Mapping, Sequence

import pandas as pd
import pytest

from raysweep.errors import UserError
from raysweep.results.tables import render_table, summarise
from raysweep.tasks import registry
from raysweep.tasks.base import Task
from raysweep.tasks.paper_table import PaperTable, Unit, published_table


class PlainTask(Task):  # never instantiated: the report reads only class attributes
    """A task without a paper table."""

    name: ClassVar[str] = "plain"
    metric_names: ClassVar[tuple[str, ...]] = ("acc_top1", "acc_top5")


LOSS_TABLE = PaperTable(columns={"Loss {x}": "loss_x"}, labeller=lambda c: {"opt#im": str(c.get("optim.name"))},
                        unit=Unit("mean loss", scale=1.0, symbol="", decimals=3))


class LossTask(PlainTask):
    """A task whose table prints raw losses (no percent) under headers LaTeX must escape."""

    name: ClassVar[str] = "loss"
    metric_names: ClassVar[tuple[str, ...]] = ("loss_x",)

    @classmethod
    def paper_table(cls, configs: Sequence[Mapping[str, Any]]) -> PaperTable:
        return LOSS_TABLE


@pytest.fixture(autouse=True)
def registered(monkeypatch) -> None:
    monkeypatch.setitem(registry.TASKS, "plain", f"{__name__}:PlainTask")
    monkeypatch.setitem(registry.TASKS, "loss", f"{__name__}:LossTask")


def _frame(task: str, trials: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame([{"task": task, "trial_id": f"t{i}", "status": "TERMINATED", "outcome": "completed",
                          "config.train.seed": 0, **t} for i, t in enumerate(trials)])


def test_a_task_without_a_paper_table_gets_a_column_per_metric_in_percent() -> None:
    frame = _frame("plain", [{"config.optim.lr": 0.1, "last.acc_top1": 0.5, "last.acc_top5": 0.75},
                             {"config.optim.lr": 0.2, "last.acc_top1": 0.25, "last.acc_top5": 0.125}])
    summary, table = summarise(frame)
    assert list(table.columns) == ["acc_top1", "acc_top5"] and not table.rows
    assert sorted(summary["optim.lr"]) == [0.1, 0.2]  # no label columns: the differing key tells rows apart
    text = render_table(frame)
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in text.splitlines() if line.startswith("|")]
    assert rows[0] == ["optim.lr", "acc_top1", "acc_top5", "n"]
    assert sorted(rows[2:]) == [["0.1", "50.00", "75.00", "1"], ["0.2", "25.00", "12.50", "1"]]
    assert "Test metrics in %, mean ± std" in text
    with pytest.raises(UserError, match="task 'plain' has no paper table; use --layout results"):
        render_table(frame, layout="paper")


def test_the_unit_comes_from_the_table() -> None:
    frame = _frame("loss", [{"config.optim.name": "sgd", "config.train.seed": s, "last.loss_x": v}
                            for s, v in ((0, 1.25), (1, 1.75))])
    text = render_table(frame)
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in text.splitlines() if line.startswith("|")]
    assert rows[0] == ["opt#im", "Loss {x}", "n"] and rows[2] == ["sgd", "1.500 ± 0.354", "2"]
    assert "Test mean loss, mean ± std" in text and "%" not in text
    trials = render_table(frame, layout="trials").splitlines()
    best = [c.strip() for c in trials[2].split("|")[1:-1]]
    assert best[0] == "t1" and best[-2:] == ["1.750", "1.750"]  # objective loss_x (max), then the Loss {x} column
    assert "at last (mean loss)" in trials[-3]


def test_latex_escapes_every_header_and_cell() -> None:
    specials = "#$%&~_^\\{}"
    frame = _frame("loss", [{"config.optim.name": f"a{specials}b", "last.loss_x": 0.5},
                            {"config.optim.name": "c", "config.train.seed": 1, "last.loss_x": 0.25},
                            {"config.optim.name": "c", "config.train.seed": 2, "last.loss_x": 0.75}])
    text = render_table(frame, "latex")
    escaped = r"a\#\$\%\&\textasciitilde{}\_\^{}\textbackslash{}\{\}b"
    assert escaped in text
    assert r"opt\#im" in text and r"Loss \{x\}" in text  # headers too
    assert r"0.500 $\pm$ 0.354" in text
    lines = text.splitlines()
    assert lines[0] == r"\begin{tabular}{lrr}" and lines[1] == r"\toprule" and lines[-1] == r"\end{tabular}"
    # Nothing LaTeX treats specially is left bare: drop the escapes and the markup the table itself writes.
    body = "\n".join(lines[2:-2]).replace(escaped, "").replace(r"opt\#im", "").replace(r"Loss \{x\}", "")
    body = body.replace(r"$\pm$", "").replace(r"\\", "").replace("&", "").replace(r"\midrule", "")
    assert not any(ch in body for ch in specials), body


def test_paper_table_refuses_rows_that_do_not_fit_it() -> None:
    label = lambda c: {}  # noqa: E731
    with pytest.raises(ValueError, match="same label columns"):
        PaperTable(columns={"A": "a"}, labeller=label, rows=({"x": "1"}, {"y": "1"}))
    with pytest.raises(ValueError, match="known_object"):
        PaperTable(columns={"A": "a"}, labeller=label, known_object=("B",))
    with pytest.raises(ValueError, match="1 rows of numbers for 2 rows"):
        PaperTable(columns={"A": "a"}, labeller=label, rows=({"x": "1"}, {"x": "2"}), published=({"A": 1.0},))


def test_published_table_reads_the_printed_table() -> None:
    rows, numbers = published_table("""
        method | backbone | S1   | S2
        QPIC   | R50      | 58.8 | –
    """, label_count=2)
    assert rows == ({"method": "QPIC", "backbone": "R50"},) and numbers == ({"S1": 58.8, "S2": None},)
    with pytest.raises(ValueError, match="every line needs 3 cells"):
        published_table("a | b | c\n1 | 2", label_count=1)
    assert Unit("role AP").show(0.636) == "63.60" and str(Unit("role AP")) == "role AP in %"
    assert Unit("x").show(float("nan")) == "–" and Unit("loss", scale=1, symbol="").suffix == ""
