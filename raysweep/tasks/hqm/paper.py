"""The HQM paper's HICO-DET rows, as `HqmTask.row_labels` writes them, and the numbers the QPIC and HQM READMEs
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
