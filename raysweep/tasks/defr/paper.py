"""DEFR's main table: a row per backbone init · classifier init · loss, its rows in the paper's order and
the numbers the DEFR README reports for them (HICO test, mAP %), kept for reference; `raysweep report` never shows
them as results. `search_spaces/defr_paper.yaml` runs exactly these rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from raysweep.tasks.defr.few_shot import few_shot_source_of_config
from raysweep.tasks.paper_table import PERCENT_MAP, PaperTable, published_table

ENCODER_NAMES = {"minilm": "MiniLM", "bert": "BERT", "simcse": "SimCSE", "clip": "CLIP"}
LOSS_NAMES = {"lse_sign": "LSE-Sign", "bce": "BCE", "wbce": "WBCE", "focal": "Focal"}

_PUBLISHED = """
backbone init | classifier init | loss     | Full  | Few@1 | Few@5 | Few@10
IN-1K         | random          | BCE      | 37.77 |  7.91 | 13.45 | 14.88
IN-1K         | random          | LSE-Sign | 44.07 | 14.30 | 20.03 | 22.64
IN-1K         | BERT            | BCE      | 50.56 | 20.12 | 27.75 | 29.96
IN-1K         | BERT            | LSE-Sign | 53.45 | 27.23 | 35.09 | 37.10
IN-1K         | CLIP            | BCE      | 51.51 | 24.77 | 31.23 | 33.42
IN-1K         | CLIP            | LSE-Sign | 54.73 | 34.75 | 39.78 | 40.84
IN-1K         | SimCSE          | LSE-Sign | 53.75 | 30.26 | 37.73 | 40.04
CLIP          | random          | BCE      | 34.15 |  6.21 |  9.44 | 11.93
CLIP          | random          | LSE-Sign | 36.84 |  9.48 | 13.90 | 15.85
CLIP          | BERT            | BCE      | 44.36 | 15.35 | 21.75 | 24.72
CLIP          | BERT            | LSE-Sign | 50.96 | 24.80 | 31.68 | 33.57
CLIP          | CLIP            | BCE      | 57.88 | 42.17 | 45.71 | 46.56
CLIP          | CLIP            | LSE-Sign | 60.50 | 49.61 | 52.60 | 52.86
"""


def row_labels(config: Mapping[str, Any]) -> dict[str, str]:
    """A trial's row as in DEFR's table (backbone init · classifier init · loss), from its flat config."""
    backbone, weights = str(config.get("model.backbone")), str(config.get("model.weights"))
    if weights == "random":
        backbone_init = f"random ({backbone})"
    elif "CLIP" in backbone or backbone.startswith("open_clip"):
        backbone_init = "CLIP"
    elif "21k" in backbone or "in21k" in weights:
        backbone_init = "IN-21K"
    elif "ImageNet1k" in backbone or backbone.startswith("vit_"):
        backbone_init = "IN-1K"
    else:
        backbone_init = backbone
    if config.get("classifier.init") == "language":
        encoder = str(config.get("classifier.text_encoder"))
        classifier_init = ENCODER_NAMES.get(encoder, encoder)
        if config.get("classifier.shuffle"):
            classifier_init += " (shuffled)"
    else:
        classifier_init = "random"
    head = config.get("classifier.head")
    if head and head != "cosine":
        classifier_init += f", {head}"
    loss = LOSS_NAMES.get(str(config.get("loss.name")), str(config.get("loss.name")))
    return {"backbone init": backbone_init, "classifier init": classifier_init, "loss": loss}


def footer_notes(config: Mapping[str, Any]) -> list[str]:
    """Which Few@k class lists the trials' Few@k columns use (DEFR's or lists derived from the training split)."""
    return [f"Few@k classes: {few_shot_source_of_config(config)}."]


_ROWS, _NUMBERS = published_table(_PUBLISHED, label_count=3)
# The paper has no Known-Object column; `report --with-ko` adds it.
DEFR_TABLE = PaperTable(
    columns={"Full": "map", "Few@1": "map_few1", "Few@5": "map_few5", "Few@10": "map_few10", "Known-Object": "map_ko"},
    labeller=row_labels, rows=_ROWS, unit=PERCENT_MAP, known_object=("Known-Object",), notes=footer_notes,
    published=_NUMBERS)
