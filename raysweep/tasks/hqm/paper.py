"""The HQM paper's HICO-DET rows (and the V-COCO rows further down), as `HqmTask.row_labels` writes them, and the numbers the QPIC and HQM READMEs
report for them (HICO-DET test, mAP %; spec §E.7, §F.8), kept for reference: `raysweep report` never shows them as
results. `search_spaces/hqm_paper.yaml` runs these recipes (and the GBS-only / AMM-only ablation rows, whose numbers
were not available).

The Known-Object numbers cannot come from the repositories' evaluators, which compute Default only (spec §F.8, §J).
"""

from __future__ import annotations

# Display columns of `HqmTask.table_columns`, in order.
COLUMNS = ("Full", "Rare", "Non-rare", "Known-Object Full", "Known-Object Rare", "Known-Object Non-rare")

# (method, backbone, Full, Rare, Non-rare, KO Full, KO Rare, KO Non-rare)
_TABLE = (
    ("QPIC", "R50", 29.07, 21.85, 31.23, 31.68, 24.14, 33.93),
    ("QPIC + HQM", "R50", 31.34, 26.54, 32.78, 34.09, 29.63, 35.42),
)

PAPER_ROWS: tuple[dict[str, str], ...] = tuple({"method": method, "backbone": backbone}
                                               for method, backbone, *_ in _TABLE)
# The READMEs' numbers per row (same order as PAPER_ROWS), mAP in %.
PAPER_NUMBERS: tuple[dict[str, float], ...] = tuple(dict(zip(COLUMNS, row[2:])) for row in _TABLE)


# ---- V-COCO (role AP, point-instr left out; spec §2.9) ----------------------------------------------------------
# The QPIC README's R50 / R101 rows and the HQM README's QPIC + HQM R50 (Scenario 1 only).
VCOCO_COLUMNS = ("Scenario 1", "Scenario 2")
_VCOCO_TABLE = (
    ("QPIC", "R50", 58.8, 61.0),
    ("QPIC", "R101", 58.3, 60.7),
    ("QPIC + HQM", "R50", 63.6, None),
)
VCOCO_PAPER_ROWS: tuple[dict[str, str], ...] = tuple({"method": method, "backbone": backbone}
                                                     for method, backbone, *_ in _VCOCO_TABLE)
VCOCO_PAPER_NUMBERS: tuple[dict[str, float | None], ...] = tuple(dict(zip(VCOCO_COLUMNS, row[2:]))
                                                                 for row in _VCOCO_TABLE)
DATASET_NAMES = {"hicodet": "HICO-DET", "vcoco": "V-COCO"}
