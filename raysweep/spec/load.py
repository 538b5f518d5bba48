"""Load a search-space file, apply command-line overrides, and validate everything before Ray starts.

Every error is a `ConfigError` whose one-line message names the file, the YAML key path, the bad value and what
is allowed (with a did-you-mean for near misses).
"""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from raysweep.errors import ConfigError, did_you_mean
from raysweep.spec.schema import DISTRIBUTIONS, SECTIONS, SELECTIONS, Choice, Distribution, Grid, RandInt, Rows, SpaceFile
from raysweep.tasks.base import Task
from raysweep.tasks.registry import get_task


# ---------------------------------------------------------------------------------------------------------------
# dotted paths over nested dicts
def get_path(tree: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
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
    out: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


def _submodel(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is Union:
        for arg in get_args(annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                return arg
    return None


def check_key(model: type[BaseModel], dotted: str, where: str) -> None:
    """Raise if `dotted` is not a leaf field of `model` (e.g. 'optim.lr' in DefrConfig)."""
    node: type[BaseModel] | None = model
    walked: list[str] = []
    for part in dotted.split("."):
        if node is None:
            raise ConfigError(f"{where}: {'.'.join(walked)!r} has no sub-keys (asked for {dotted!r})")
        fields = node.model_fields
        if part not in fields:
            prefix = ".".join(walked)
            allowed = ", ".join(fields)
            raise ConfigError(
                f"{where}: unknown key {dotted!r}{did_you_mean(part, fields)}; "
                f"keys {'under ' + repr(prefix) if prefix else 'at the top'}: {allowed}")
        walked.append(part)
        node = _submodel(fields[part].annotation)
    if node is not None:
        raise ConfigError(f"{where}: {dotted!r} is a section, not a value; give one of its keys: "
                          f"{', '.join(dotted + '.' + k for k in node.model_fields)}")


def describe_validation_error(err: ValidationError, prefix: str, model: type[BaseModel] | None = None) -> str:
    """First pydantic error as 'key.path: message' with allowed keys / did-you-mean."""
    first = err.errors()[0]
    loc = [str(p) for p in first["loc"] if not isinstance(p, int) or True]
    path = ".".join(loc)
    full = f"{prefix}.{path}" if prefix and path else (prefix or path)
    kind = first["type"]
    if kind == "extra_forbidden" and model is not None:
        parent: type[BaseModel] | None = model
        for part in loc[:-1]:
            parent = _submodel(parent.model_fields[part].annotation) if parent and part in parent.model_fields else None
        allowed = list(parent.model_fields) if parent is not None else []
        return f"{full}: unknown key{did_you_mean(loc[-1], allowed)}; allowed: {', '.join(allowed)}"
    if kind == "union_tag_invalid":
        tag = str(first.get("ctx", {}).get("tag", first["input"]))
        return f"{full}: distribution {tag!r}{did_you_mean(tag, DISTRIBUTIONS)} is not one of {', '.join(DISTRIBUTIONS)}"
    if kind == "union_tag_not_found":
        return f"{full}: missing 'distribution:' (one of {', '.join(DISTRIBUTIONS)})"
    msg = first["msg"]
    if kind == "value_error" and msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if kind == "literal_error":
        msg = f"got {first['input']!r}{did_you_mean(str(first['input']), _literal_options(first))}; allowed: {first['ctx']['expected']}"
    elif kind == "missing":
        msg = "required key is missing"
    elif "input" in first and kind not in ("value_error", "assertion_error"):
        msg = f"{msg} (got {first['input']!r})"
    return f"{full}: {msg}"


def _literal_options(error: Mapping[str, Any]) -> list[str]:
    expected = error.get("ctx", {}).get("expected", "")
    return [part.strip(" '") for part in expected.replace(" or ", ",").split(",") if part.strip()]


# ---------------------------------------------------------------------------------------------------------------
# overrides: Hydra-style key=value
_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")

def parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value (e.g. trials.num_samples=4)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: cannot parse the value {raw!r} ({str(exc).splitlines()[0]})") from None
    if isinstance(value, str) and _FLOAT.match(value):  # YAML 1.1 reads 1e-4 (no dot) as a string
        value = float(value)
    return key, value


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Top-level sections by their name (`trials.num_samples=4`), task config keys directly (`data.root=/x`,
    or `config.data.root=/x`). Overriding a searched key fixes it (it leaves `search`)."""
    raw = copy.deepcopy(raw)
    for text in overrides:
        key, value = parse_override(text)
        head = key.split(".", 1)[0]
        if head == "search":
            raise ConfigError(f"override {text!r}: search parameters are edited in the YAML file; "
                              f"to fix a searched key give it directly (e.g. {key.split('.', 1)[-1]}=value)")
        if head in SECTIONS and head != "config":
            if "." in key:
                section = raw.get(head)
                if section is None:
                    section = raw[head] = {}
                if not isinstance(section, dict):
                    raise ConfigError(f"override {text!r}: {head!r} is not a section")
                set_path(section, key.split(".", 1)[1], value)
            else:
                raw[head] = value
            continue
        config_key = key.split(".", 1)[1] if head == "config" else key
        config = raw.setdefault("config", {})
        if not isinstance(config, dict):
            raise ConfigError(f"override {text!r}: 'config' is not a section")
        set_path(config, config_key, value)
        search = raw.get("search")
        if isinstance(search, dict):
            search.pop(config_key, None)
            _drop_rows_column(search, config_key)
            _settle_conditions(search, config_key, value)
    return raw


def _settle_conditions(search: dict[str, Any], key: str, value: Any) -> None:
    """An override that fixes `key` settles the `when` conditions on it: a parameter whose condition now always
    holds loses that condition; one whose condition can no longer hold is dropped (it would never be sampled), and
    so is anything conditional on a dropped parameter. (`classifier.init=rand` drops `prompts.template`.)"""
    dropped: set[str] = set()
    for label, entry in list(search.items()):
        when = entry.get("when") if isinstance(entry, dict) else None
        if not isinstance(when, dict) or key not in when:
            continue
        wanted = when[key] if isinstance(when[key], list) else [when[key]]
        if value in wanted:
            rest = {k: v for k, v in when.items() if k != key}
            search[label] = {k: v for k, v in entry.items() if k != "when"} | ({"when": rest} if rest else {})
        else:
            del search[label]
            dropped.add(label)
    while dropped:
        label = dropped.pop()
        for other, entry in list(search.items()):
            when = entry.get("when") if isinstance(entry, dict) else None
            if isinstance(when, dict) and label in when:
                del search[other]
                dropped.add(other)


def _drop_rows_column(search: dict[str, Any], key: str) -> None:
    """An override fixes a key of a `rows` entry too: its column goes; rows left identical run once."""
    for label, entry in list(search.items()):
        if not (isinstance(entry, dict) and entry.get("distribution") == "rows"):
            continue
        keys, rows = entry.get("keys"), entry.get("values")
        if not (isinstance(keys, list) and key in keys and isinstance(rows, list)):
            continue
        column = keys.index(key)
        kept_keys = keys[:column] + keys[column + 1:]
        if not kept_keys:
            del search[label]
            continue
        kept_rows: list[Any] = []
        for row in rows:
            short = row[:column] + row[column + 1:] if isinstance(row, list) else row
            if short not in kept_rows:
                kept_rows.append(short)
        search[label] = {**entry, "keys": kept_keys, "values": kept_rows}


# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Sweep:
    """A validated space file: everything `tune` needs, nothing started yet."""

    path: Path
    spec: SpaceFile
    task_cls: type[Task]
    base_config: dict[str, Any]  # validated task config (JSON-able), searched keys at their defaults
    overrides: list[str] = field(default_factory=list)

    @property
    def params(self) -> dict[str, Distribution]:
        """Swept config keys, each with its distribution. A `rows` entry appears as one grid per key over that column's
        values (so the sampler knows every value); `grid_points` keeps its rows together."""
        params: dict[str, Distribution] = {}
        for key, dist in self.spec.search.items():
            if isinstance(dist, Rows):
                params.update(rows_as_grids(dist))
            else:
                params[key] = dist
        return params

    @property
    def task_metric(self) -> str:
        """The objective as the task names it (`map`), without its split."""
        metric = self.spec.objective.metric or self.task_cls.metric_names[0]
        head, _, rest = metric.partition(".")
        return rest if head in SPLITS and rest else metric

    @property
    def selection_split(self) -> str:
        """The split whose metrics select: `val` when `selection: val`, else `test` (nothing searched, or a
        published test protocol reproduced on purpose)."""
        return "val" if self.spec.selection == "val" else "test"

    @property
    def metric(self) -> str:
        """The reported objective, e.g. `val.map`: what ASHA, Optuna and the results' best-epoch columns use."""
        return f"{self.selection_split}.{self.task_metric}"

    @property
    def mode(self) -> str:
        return self.spec.objective.mode

    @property
    def name(self) -> str:
        return self.spec.name or self.path.stem

    def config_for(self, sampled: Mapping[str, Any]) -> BaseModel:
        """The task config of one trial: base config with the sampled dotted keys set."""
        tree = copy.deepcopy(self.base_config)
        for key, value in sampled.items():
            set_path(tree, key, value)
        return self.task_cls.config_model.model_validate(tree)

    @property
    def max_epochs(self) -> int:
        """Upper bound of `epoch` over all trials: ASHA's max_t."""
        if self.spec.scheduler.max_t:
            return self.spec.scheduler.max_t
        candidates = [self.task_cls(self.task_cls.config_model.model_validate(self.base_config)).epochs]
        for key, dist in self.params.items():
            if key.endswith("epochs") and isinstance(dist, (Choice, Grid)):
                candidates += [self.task_cls(self.config_for({key: v})).epochs for v in dist.values]
            elif key.endswith("epochs") and isinstance(dist, RandInt):
                candidates.append(dist.high)
        return max(candidates)

    def grid_points(self) -> list[dict[str, Any]]:
        """Every combination of the grid keys' values, a `rows` entry contributing its rows (not their product)."""
        factors = []
        for key, dist in self.spec.search.items():
            if isinstance(dist, Grid):
                factors.append([{key: value} for value in dist.values])
            elif isinstance(dist, Rows):
                factors.append(dist.points())
        if not factors:
            return []
        return [{k: v for part in combo for k, v in part.items()} for combo in itertools.product(*factors)]

    @property
    def num_trials(self) -> int:
        return self.spec.trials.num_samples * max(1, len(self.grid_points()))

    def resolved_space(self) -> dict[str, Any]:
        return {k: d.model_dump(exclude_none=True) for k, d in self.spec.search.items()}


def rows_as_grids(rows: Rows) -> dict[str, Grid]:
    """Each key of a `rows` entry as a grid over the distinct values of its column, in order of appearance."""
    grids = {}
    for column, key in enumerate(rows.keys):
        values: list[Any] = []
        for row in rows.values:
            if row[column] not in values:
                values.append(row[column])
        grids[key] = Grid(distribution="grid", values=values)
    return grids


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError(f"{path}: no such file")
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, expected a search-space YAML file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}:{where}: malformed YAML: {problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file") from None
    if data is None:
        raise ConfigError(f"{path}: empty file; expected at least 'task:'")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping with 'task:', got {type(data).__name__}")
    return data


def load_sweep(path: str | Path, overrides: Sequence[str] = ()) -> Sweep:
    path = Path(path)
    raw = apply_overrides(read_yaml(path), overrides)
    for key in raw:
        if key not in SECTIONS:
            raise ConfigError(f"{path}: {key}: unknown key{did_you_mean(key, SECTIONS)}; allowed: {', '.join(SECTIONS)}")
    try:
        spec = SpaceFile.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{path}: {describe_validation_error(err, '', SpaceFile)}") from None
    task_cls = get_task(spec.task, where=f"{path}: task")
    model = task_cls.config_model
    try:
        base = model.model_validate(spec.config)
    except ValidationError as err:
        raise ConfigError(f"{path}: {describe_validation_error(err, 'config', model)}") from None
    base_config = base.model_dump(mode="json")
    _check_search(path, spec, model, base_config)
    _check_selection(path, spec, task_cls)
    set_path(base_config, task_cls.validation_key, spec.selection == "val")
    return Sweep(path=path, spec=spec, task_cls=task_cls, base_config=base_config, overrides=list(overrides))


SPLITS = ("val", "test")


def _check_selection(path: Path, spec: SpaceFile, task_cls: type[Task]) -> None:
    """Hyper-parameters are selected on validation data; a test metric selects only where the file says so."""
    metric = spec.objective.metric or task_cls.metric_names[0]
    head, _, rest = metric.partition(".")
    split, name = (head, rest) if head in SPLITS and rest else (None, metric)
    if name not in task_cls.metric_names:
        allowed = [*task_cls.metric_names, *(f"{s}.{m}" for s in SPLITS for m in task_cls.metric_names[:1])]
        raise ConfigError(f"{path}: objective.metric: {metric!r}{did_you_mean(name, task_cls.metric_names)} is not "
                          f"reported by task {spec.task!r}; allowed: {', '.join(allowed)}, ...")
    if spec.selection == "val" and split == "test":
        raise ConfigError(f"{path}: objective.metric: {metric!r} would select hyper-parameters on the test set; use "
                          f"{'val.' + name!r} (selection: val), or set `selection: test` to reproduce a published "
                          f"test-set protocol on purpose")
    if spec.selection != "val" and split == "val":
        raise ConfigError(f"{path}: objective.metric: {metric!r} needs a validation split, but selection is "
                          f"{spec.selection!r} (no split is carved out); use {name!r} or set `selection: val`")
    key = task_cls.validation_key
    written = get_path(spec.config, key, spec.config.get(key))
    if written is not None and bool(written) != (spec.selection == "val"):
        raise ConfigError(f"{path}: config.{key}: {written!r} contradicts selection: {spec.selection}; the split "
                          f"follows `selection` (val: carved out, none / test: full training set), drop the key")
    if key in spec.search:
        raise ConfigError(f"{path}: search.{key}: the validation split is not a hyper-parameter; it follows "
                          f"`selection` (allowed: {', '.join(SELECTIONS)})")
    if spec.selection == "none":
        searched = [k for k, d in spec.search.items() if not isinstance(d, (Grid, Rows))]
        if searched:
            raise ConfigError(f"{path}: search.{searched[0]}: selection: none runs a fixed grid, so only `grid` and "
                              f"`rows` distributions are allowed (a searched value needs `selection: val`)")
        if spec.scheduler.type != "none":
            raise ConfigError(f"{path}: scheduler.type: {spec.scheduler.type!r} would stop trials on test-set "
                              f"numbers under selection: none; set scheduler.type: none (or `selection: val`)")


def _validate_value(path: Path, model: type[BaseModel], base: dict, key: str, value: Any, where: str) -> None:
    tree = copy.deepcopy(base)
    set_path(tree, key, value)
    try:
        model.model_validate(tree)
    except ValidationError as err:
        detail = describe_validation_error(err, "", model)
        raise ConfigError(f"{path}: {where}: value {value!r} is invalid for {key!r} ({detail})") from None


def _check_rows(path: Path, spec: SpaceFile, model: type[BaseModel], base: dict, label: str, rows: Rows) -> None:
    where = f"search.{label}"
    try:
        check_key(model, label, "")
    except ConfigError:
        pass
    else:
        raise ConfigError(f"{path}: {where}: a `rows` entry is named by a label, not a config key; list "
                          f"{label!r} under its keys and give the entry another name (e.g. 'recipe')")
    for column, key in enumerate(rows.keys):
        check_key(model, key, f"{path}: {where}.keys[{column}]")
        if key in spec.search:
            raise ConfigError(f"{path}: {where}.keys[{column}]: {key!r} is also searched as search.{key}; "
                              f"a key is swept in one place only")
        for other_label, other in spec.search.items():
            if other_label != label and isinstance(other, Rows) and key in other.keys:
                raise ConfigError(f"{path}: {where}.keys[{column}]: {key!r} is also a key of search.{other_label}; "
                                  f"a key is swept in one place only")
    for i, row in enumerate(rows.values):
        if row in rows.values[:i]:
            raise ConfigError(f"{path}: {where}.values[{i}]: {row!r} repeats values[{rows.values.index(row)}]; "
                              f"to run a row several times raise trials.num_samples")
        tree = copy.deepcopy(base)
        for key, value in zip(rows.keys, row):
            set_path(tree, key, value)
        try:
            model.model_validate(tree)
        except ValidationError as err:
            detail = describe_validation_error(err, "", model)
            raise ConfigError(f"{path}: {where}.values[{i}]: row {row!r} is invalid ({detail})") from None


def _check_search(path: Path, spec: SpaceFile, model: type[BaseModel], base: dict) -> None:
    seen: dict[str, Distribution] = {}
    for key, dist in spec.search.items():
        where = f"search.{key}"
        if isinstance(dist, Rows):
            _check_rows(path, spec, model, base, key, dist)
            seen.update(rows_as_grids(dist))
            continue
        check_key(model, key, f"{path}: {where}")
        if isinstance(dist, (Choice, Grid)):
            for i, value in enumerate(dist.values):
                _validate_value(path, model, base, key, value, f"{where}.values[{i}]")
        elif isinstance(dist, RandInt):
            for end in ("low", "high"):
                _validate_value(path, model, base, key, getattr(dist, end), f"{where}.{end}")
        else:
            for end in ("low", "high"):
                _validate_value(path, model, base, key, getattr(dist, end), f"{where}.{end}")
        for cond_key, wanted in (dist.when or {}).items():
            cwhere = f"{where}.when.{cond_key}"
            wanted_values = wanted if isinstance(wanted, list) else [wanted]
            if not wanted_values:
                raise ConfigError(f"{path}: {cwhere}: empty list; the condition can never hold")
            if cond_key in seen:
                other = seen[cond_key]
                if isinstance(other, (Choice, Grid)):
                    possible = other.values
                    if not any(v in possible for v in wanted_values):
                        raise ConfigError(f"{path}: {cwhere}: condition can never hold: {wanted_values!r} is not among "
                                          f"search.{cond_key}'s values {possible!r}")
            elif cond_key in spec.search or any(cond_key in d.keys for d in spec.search.values() if isinstance(d, Rows)):
                raise ConfigError(f"{path}: {cwhere}: {cond_key!r} must be defined before {key!r} in 'search'")
            else:
                check_key(model, cond_key, f"{path}: {cwhere}")
                fixed = get_path(base, cond_key)
                if fixed not in wanted_values:
                    raise ConfigError(f"{path}: {cwhere}: condition can never hold: {cond_key!r} is fixed at {fixed!r}, "
                                      f"not in {wanted_values!r}")
        seen[key] = dist
