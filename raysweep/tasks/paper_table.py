"""A task's published results table as one value: what labels a row, which metric fills each column, the paper's
rows in its order and the unit its numbers are printed in. `raysweep report` lays trials out on it; the task only
says which table applies (`Task.paper_table`). Plain Python: results code and task code both read it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Labeller = Callable[[Mapping[str, Any]], dict[str, str]]  # a trial's flat config (dotted keys) → row-label cells
Notes = Callable[[Mapping[str, Any]], list[str]]  # a trial's flat config → footer sentences


@dataclass(frozen=True)
class Unit:
    """How a metric value (as `evaluate` returns it) is printed: `scale × value` with `decimals` digits, and what the
    footer calls the numbers ("mAP in %")."""

    name: str  # what the numbers measure: "mAP", "role AP"
    scale: float = 100.0  # metrics are fractions in [0, 1]; 100 prints them as percent
    symbol: str = "%"  # the printed unit, "" for none
    decimals: int = 2

    def show(self, value: float) -> str:
        """One number as printed; "–" for a missing (NaN) one."""
        return "–" if math.isnan(value) else f"{self.scale * value:.{self.decimals}f}"

    @property
    def suffix(self) -> str:
        """" in %" (empty without a symbol), for sentences such as "the validation objective, in %"."""
        return f" in {self.symbol}" if self.symbol else ""

    def __str__(self) -> str:
        return f"{self.name}{self.suffix}"


PERCENT_MAP = Unit("mAP")


@dataclass(frozen=True)
class PaperTable:
    """One results table of a paper. `rows` empty: the task has a table layout but no published rows to match."""

    columns: Mapping[str, str]  # display name → metric name (`Task.metric_names`), in column order
    labeller: Labeller  # the row-label cells of one trial; a trial is a paper row when its cells equal one of `rows`
    rows: tuple[Mapping[str, str], ...] = ()  # the paper's rows in its order, as `labeller` writes them
    order: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # label column → values in display order
    unit: Unit = PERCENT_MAP
    known_object: tuple[str, ...] = ()  # display columns the paper layout shows only with `--with-ko`
    notes: Notes | None = None  # footer sentences that say how a trial's columns are defined
    published: tuple[Mapping[str, float | None], ...] = ()  # the paper's numbers per row (in `unit`), for reference

    def __post_init__(self) -> None:
        if self.rows and len({tuple(row) for row in self.rows}) != 1:
            raise ValueError("PaperTable.rows: every row must have the same label columns, in the same order")
        unknown = [c for c in self.known_object if c not in self.columns]
        if unknown:
            raise ValueError(f"PaperTable.known_object: {unknown} are not display columns {list(self.columns)}")
        if self.published and len(self.published) != len(self.rows):
            raise ValueError(f"PaperTable.published: {len(self.published)} rows of numbers for {len(self.rows)} rows")

    @property
    def label_columns(self) -> list[str]:
        """The paper rows' label columns (empty without paper rows)."""
        return list(self.rows[0]) if self.rows else []

    def row_labels(self, config: Mapping[str, Any]) -> dict[str, str]:
        return self.labeller(config)

    def footer_notes(self, config: Mapping[str, Any]) -> list[str]:
        return self.notes(config) if self.notes is not None else []

    def is_paper_row(self, labels: Mapping[str, Any]) -> bool:
        return self.row_key(labels) in {self.row_key(row) for row in self.rows}

    def row_key(self, labels: Mapping[str, Any]) -> tuple[str, ...]:
        """A row's label cells in the paper's label columns, as text (what identifies a paper row)."""
        return tuple(str(labels.get(c)) for c in self.label_columns)

    def sort_key(self, row: Mapping[str, Any], label_cols: Sequence[str]) -> tuple:
        """Rows by `order` per label column (listed values first, in order), then by the label text."""
        key = []
        for col in label_cols:
            listed = self.order.get(col, ())
            value = str(row.get(col))
            key.append((listed.index(value) if value in listed else len(listed), value))
        return tuple(key)


def metrics_table(metric_names: Sequence[str]) -> PaperTable:
    """The layout of a task without a paper table: a column per metric under its own name, no label columns (rows
    are told apart by the config keys that differ)."""
    return PaperTable(columns={name: name for name in metric_names}, labeller=lambda config: {},
                      unit=Unit("metrics"))


def published_table(text: str, label_count: int) -> tuple[tuple[dict[str, str], ...],
                                                           tuple[dict[str, float | None], ...]]:
    """A table as the paper prints it, one `|`-separated line per row under a header line, the first `label_count`
    cells labels and the rest numbers ("–": not published) → (`PaperTable.rows`, `PaperTable.published`)."""
    lines = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in text.strip().splitlines()]
    header, body = lines[0], lines[1:]
    if any(len(cells) != len(header) for cells in body):
        raise ValueError(f"published table: every line needs {len(header)} cells: {text!r}")
    rows = tuple(dict(zip(header[:label_count], cells[:label_count], strict=True)) for cells in body)
    numbers = tuple({name: None if cell == "–" else float(cell)
                     for name, cell in zip(header[label_count:], cells[label_count:], strict=True)} for cells in body)
    return rows, numbers
