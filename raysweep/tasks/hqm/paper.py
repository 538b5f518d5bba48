"""HQM's tables: the HICO-DET ablation (method · backbone; Default and Known-Object mAP), V-COCO's role AP
(Scenario 1 / 2, point-instr left out) and, for a sweep over both datasets, the two side by side under a dataset
column; `table_for` picks the one that fits a set of trials.

The published rows carry the numbers the QPIC and HQM READMEs report (HICO-DET test, mAP %;
V-COCO: the QPIC README's R50 / R101 rows and the HQM README's QPIC + HQM R50, Scenario 1 only), kept for
reference: `raysweep report` never shows them as results. `search_spaces/hqm_paper.yaml` runs these recipes (and
the GBS-only / AMM-only ablation rows, whose numbers were not available). The Known-Object numbers cannot come from
the repositories' evaluators, which compute Default only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from raysweep.tasks.paper_table import PERCENT_MAP, PaperTable, Unit, published_table

DATASET_NAMES = {"hicodet": "HICO-DET", "vcoco": "V-COCO"}
BACKBONE_NAMES = {"resnet18": "R18", "resnet34": "R34", "resnet50": "R50", "resnet101": "R101"}
METHODS = ("QPIC", "QPIC + GBS", "QPIC + AMM", "QPIC + HQM")

_HICODET_PUBLISHED = """
method     | backbone | Full  | Rare  | Non-rare | Known-Object Full | Known-Object Rare | Known-Object Non-rare
QPIC       | R50      | 29.07 | 21.85 | 31.23    | 31.68             | 24.14             | 33.93
QPIC + HQM | R50      | 31.34 | 26.54 | 32.78    | 34.09             | 29.63             | 35.42
"""
_VCOCO_PUBLISHED = """
method     | backbone | Scenario 1 | Scenario 2
QPIC       | R50      | 58.8       | 61.0
QPIC       | R101     | 58.3       | 60.7
QPIC + HQM | R50      | 63.6       | –
"""


def _flag(value: Any) -> bool:
    """A boolean config value as the results parquet may hold it (bool, numpy bool, or its string)."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value) if value is not None else False


def row_labels(config: Mapping[str, Any]) -> dict[str, str]:
    """A trial's row as in the HQM ablation: method (from hqm.gbs / hqm.amm) · backbone, from its flat config.

    Non-default options that change what a row measures are appended to the method: the random branch choice of
    GBS + AMM and the official evaluation protocol.
    """
    gbs, amm = _flag(config.get("hqm.gbs")), _flag(config.get("hqm.amm"))
    method = METHODS[gbs + 2 * amm]  # neither, GBS, AMM, both
    if gbs and amm and (config.get("hqm.alternation") or "ajl") != "ajl":
        method += f" ({config.get('hqm.alternation')} alternation)"
    if (config.get("eval.protocol") or "qpic") != "qpic" and (config.get("data.dataset") or "hicodet") != "vcoco":
        method += f", {config.get('eval.protocol')} eval"
    backbone = str(config.get("model.backbone"))
    return {"method": method, "backbone": BACKBONE_NAMES.get(backbone, backbone)}


def dataset_row_labels(config: Mapping[str, Any]) -> dict[str, str]:
    """`row_labels` behind a dataset column (HICO-DET / V-COCO)."""
    dataset = str(config.get("data.dataset") or "hicodet")
    return {"dataset": DATASET_NAMES.get(dataset, dataset), **row_labels(config)}


_ORDER = {"method": METHODS, "backbone": ("tiny", "R50", "R101")}
_HICODET_ROWS, _HICODET_NUMBERS = published_table(_HICODET_PUBLISHED, label_count=2)
_VCOCO_ROWS, _VCOCO_NUMBERS = published_table(_VCOCO_PUBLISHED, label_count=2)

# Default and Known-Object, each Full / Rare / Non-rare; the paper layout shows the Known-Object half with --with-ko.
HICODET_TABLE = PaperTable(
    columns={"Full": "map", "Rare": "map_rare", "Non-rare": "map_non_rare", "Known-Object Full": "ko_map",
             "Known-Object Rare": "ko_map_rare", "Known-Object Non-rare": "ko_map_non_rare"},
    labeller=row_labels, rows=_HICODET_ROWS, order=_ORDER, unit=PERCENT_MAP,
    known_object=("Known-Object Full", "Known-Object Rare", "Known-Object Non-rare"), published=_HICODET_NUMBERS)

VCOCO_TABLE = PaperTable(columns={"Scenario 1": "role_ap_s1", "Scenario 2": "role_ap_s2"}, labeller=row_labels,
                         rows=_VCOCO_ROWS, order=_ORDER, unit=Unit("role AP"), published=_VCOCO_NUMBERS)

# Both datasets' numbers are average precisions in %; the published numbers stay with the single-dataset tables.
BOTH_DATASETS_TABLE = PaperTable(
    columns={**HICODET_TABLE.columns, **VCOCO_TABLE.columns}, labeller=dataset_row_labels,
    rows=(tuple({"dataset": "HICO-DET", **row} for row in HICODET_TABLE.rows)
          + tuple({"dataset": "V-COCO", **row} for row in VCOCO_TABLE.rows)),
    order={"dataset": ("HICO-DET", "V-COCO"), **_ORDER}, unit=Unit("mAP / role AP"),
    known_object=HICODET_TABLE.known_object)


def table_for(configs: Sequence[Mapping[str, Any]]) -> PaperTable:
    """The table a set of trials (flat configs) is laid out in: HICO-DET's, V-COCO's as the papers print it, or, for
    a sweep over both datasets, both column groups with a dataset column in front of the rows."""
    datasets = {str(c.get("data.dataset") or "hicodet") for c in configs} or {"hicodet"}
    if datasets == {"hicodet"}:
        return HICODET_TABLE
    if datasets == {"vcoco"}:
        return VCOCO_TABLE
    return BOTH_DATASETS_TABLE
