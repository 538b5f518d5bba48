"""Dotted keys over config trees: the one way a trial's config is made from a base config and {dotted key: value}.

Plain dicts and pydantic models both go through `with_updates`; nothing here imports torch, ray or a task, so the
space-file loader, the Tune driver and the task code share it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel

Config = TypeVar("Config", bound="dict[str, Any] | BaseModel")


def get_path(tree: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    """The value at `dotted` ('optim.lr') in a nested mapping, or `default` where a part is missing."""
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `dotted` in a nested dict in place, creating the sections on the way."""
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{dotted key: leaf value} of a nested mapping (an empty section counts as a leaf)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


def with_updates(config: Config, updates: Mapping[str, Any]) -> Config:
    """A new config: `config` with each dotted key of `updates` set; the original is left alone.

    A plain dict comes back as a plain dict (not validated: the Tune driver passes it on, the worker validates it);
    a pydantic model comes back as a new, validated instance of its own class (pydantic's ValidationError on a bad
    value).
    """
    if isinstance(config, BaseModel):
        tree = config.model_dump(mode="json")
        for key, value in updates.items():
            set_path(tree, key, value)
        return type(config).model_validate(tree)
    tree = copy.deepcopy(dict(config))
    for key, value in updates.items():
        set_path(tree, key, value)
    return tree  # type: ignore[return-value]
