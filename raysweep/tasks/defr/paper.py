"""DEFR's main table (spec C.7): its rows in the paper's order, as `DefrTask.row_labels` writes them, and the
numbers the DEFR README reports for them (HICO test, mAP %), kept for reference; `raysweep report` never shows them
as results. `search_spaces/defr_paper.yaml` runs exactly these rows.
"""

from __future__ import annotations

_COLUMNS = ("Full", "Few@1", "Few@5", "Few@10")

# (backbone init, classifier init, loss, Full, Few@1, Few@5, Few@10)
_TABLE = (
    ("IN-1K", "random", "BCE", 37.77, 7.91, 13.45, 14.88),
    ("IN-1K", "random", "LSE-Sign", 44.07, 14.30, 20.03, 22.64),
    ("IN-1K", "BERT", "BCE", 50.56, 20.12, 27.75, 29.96),
    ("IN-1K", "BERT", "LSE-Sign", 53.45, 27.23, 35.09, 37.10),
    ("IN-1K", "CLIP", "BCE", 51.51, 24.77, 31.23, 33.42),
    ("IN-1K", "CLIP", "LSE-Sign", 54.73, 34.75, 39.78, 40.84),
    ("IN-1K", "SimCSE", "LSE-Sign", 53.75, 30.26, 37.73, 40.04),
    ("CLIP", "random", "BCE", 34.15, 6.21, 9.44, 11.93),
    ("CLIP", "random", "LSE-Sign", 36.84, 9.48, 13.90, 15.85),
    ("CLIP", "BERT", "BCE", 44.36, 15.35, 21.75, 24.72),
    ("CLIP", "BERT", "LSE-Sign", 50.96, 24.80, 31.68, 33.57),
    ("CLIP", "CLIP", "BCE", 57.88, 42.17, 45.71, 46.56),
    ("CLIP", "CLIP", "LSE-Sign", 60.50, 49.61, 52.60, 52.86),
)

PAPER_ROWS: tuple[dict[str, str], ...] = tuple({"backbone init": backbone, "classifier init": classifier, "loss": loss}
                                               for backbone, classifier, loss, *_ in _TABLE)
# The README's numbers per row (same order as PAPER_ROWS), mAP in %.
PAPER_NUMBERS: tuple[dict[str, float], ...] = tuple(dict(zip(_COLUMNS, row[3:])) for row in _TABLE)
