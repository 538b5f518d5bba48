"""Which Few@k class lists a DEFR evaluation uses (`data.few_shot_lists`), and the name a table footer gives them.

- unset (the default): DEFR's three hard-coded lists (49 / 125 / 162 classes, shipped as package data) when the data
  has the 600 HICO classes, so Few@k columns compare with the paper; otherwise (the embedded synthetic data) lists
  derived from the training split: classes with 1..k positive training images;
- "defr" / "derived": either of those, explicitly ("defr" needs 600 classes);
- a path: a user JSON file {"few@1": [...], "few@5": [...], "few@10": [...]} of 0-based class indices.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Union

from raysweep.errors import DataError
from raysweep.metrics.hico import (
    FEW_SHOT_DEFR,
    FEW_SHOT_DERIVED,
    FEW_SHOT_NAMED,
    HICO_NUM_CLASSES,
    few_shot_source,
    load_few_shot_lists,
)

CONFIG_KEY = "data.few_shot_lists"

__all__ = ["CONFIG_KEY", "FEW_SHOT_DEFR", "FEW_SHOT_DERIVED", "few_shot_lists_for", "few_shot_source_of_config"]


def few_shot_lists_for(setting: Optional[str], num_classes: int) -> tuple[Union[str, dict[str, list[int]]], str]:
    """(what `evaluate_hico` takes as few_shot_lists, the source's name) for `data.few_shot_lists` on data with
    `num_classes` classes. Raises DataError (one line naming the file, the list key and data.few_shot_lists) for a
    bad lists file, and for "defr" on data that does not have the 600 HICO classes."""
    if setting is None:
        setting = "defr" if num_classes == HICO_NUM_CLASSES else "derived"
    if setting in FEW_SHOT_NAMED:
        if setting == "defr" and num_classes != HICO_NUM_CLASSES:
            raise DataError(f"{CONFIG_KEY} 'defr': DEFR's lists index the {HICO_NUM_CLASSES} HICO classes, but the "
                            f"data has {num_classes}; use 'derived' or a lists file")
        return setting, few_shot_source(num_classes, setting)
    return load_few_shot_lists(setting, num_classes, CONFIG_KEY), few_shot_source(num_classes, setting)


def few_shot_source_of_config(config: Mapping[str, Any], num_classes: Optional[int] = None) -> str:
    """The Few@k source name of a trial from its flat config ({"data.root": ..., "data.few_shot_lists": ...}, as
    a results table holds it, with or without a "config." prefix), for a table footer: "defr-lists", "derived
    (<=k training images)" or "file <path>".

    The embedded synthetic data (`data.root` null) has 34 classes, so it is "derived"; a `data.root` is taken to be
    real HICO (600 classes) unless `num_classes` says otherwise.
    """
    def get(key: str) -> Any:
        value = config.get(key, config.get(f"config.{key}"))
        return None if value is None or (isinstance(value, float) and value != value) else value  # NaN: unset

    setting = get(CONFIG_KEY)
    if num_classes is None and get("data.root") is None:
        return FEW_SHOT_DERIVED if setting in (None, "derived") else few_shot_source(None, str(setting))
    return few_shot_source(num_classes, None if setting is None else str(setting))
