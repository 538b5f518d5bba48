"""Load a search-space file, apply command-line overrides, and validate everything before Ray starts.

Every error is a `ConfigError` whose one-line message names the file, the YAML key path, the bad value and what
is allowed (with a did-you-mean for near misses).
"""

from __future__ import annotations

import copy
import itertools
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from raysweep.config_tree import flatten as flatten  # re-exported: results/ and commands/ import it from here
from raysweep.config_tree import get_path, set_path, with_updates
from raysweep.errors import ConfigError, did_you_mean
from raysweep.spec.rungs import rung_epochs
from raysweep.spec.schema import (
    DISTRIBUTIONS,
    SECTIONS,
    SELECTIONS,
    Choice,
    Distribution,
    Grid,
    RandInt,
    Rows,
    SpaceFile,
)
from raysweep.tasks.card import TaskCard
from raysweep.tasks.config_base import TaskConfig
from raysweep.tasks.registry import get_card

if TYPE_CHECKING:
    from raysweep.tasks.base import Task

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------------
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
                f"keys {'under ' + repr(prefix) if prefix else 'at the top'}: {allowed}"
            )
        walked.append(part)
        node = _submodel(fields[part].annotation)
    if node is not None:
        raise ConfigError(
            f"{where}: {dotted!r} is a section, not a value; give one of its keys: "
            f"{', '.join(dotted + '.' + k for k in node.model_fields)}"
        )


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
        return (
            f"{full}: distribution {tag!r}{did_you_mean(tag, DISTRIBUTIONS)} is not one of {', '.join(DISTRIBUTIONS)}"
        )
    if kind == "union_tag_not_found":
        return f"{full}: missing 'distribution:' (one of {', '.join(DISTRIBUTIONS)})"
    msg = first["msg"]
    if kind == "value_error" and msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if kind == "literal_error":
        msg = f"got {short_repr(first['input'])}{did_you_mean(str(first['input']), _literal_options(first))}; allowed: {first['ctx']['expected']}"
    elif kind == "missing":
        msg = "required key is missing"
    elif "input" in first and kind not in ("value_error", "assertion_error"):
        msg = f"{msg} (got {short_repr(first['input'])})"
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
    except RecursionError:
        raise ConfigError(f"override {short_repr(text)}: the value is nested too deeply") from None
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
            _override_search(raw, text, key, value)
            continue
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


def _override_search(raw: dict[str, Any], text: str, key: str, value: Any) -> None:
    """`search.<param>.<field>=value` edits one field of a searched parameter (`search.optim.lr.high=0.01`,
    `search.loss.name.values=[bce]`); `search.<param>={...}` replaces or adds a whole entry. Parameter names hold dots
    themselves, so the longest searched name that prefixes the key wins."""
    search = raw.get("search")
    if search is None:
        search = raw["search"] = {}
    if not isinstance(search, dict):
        raise ConfigError(f"override {text!r}: 'search' is not a section")
    rest = key.split(".", 1)[1] if "." in key else ""
    if not rest:
        raise ConfigError(f"override {text!r}: give a parameter, e.g. search.optim.lr.high=0.01")
    if isinstance(value, dict):  # a whole entry: new or replacing
        search[rest] = value
        return
    if rest in search:
        raise ConfigError(
            f"override {text!r}: search parameters are edited in the YAML file or field by field "
            f"(search.{rest}.high=..., search.{rest}.values=[...]); to fix a searched key give it "
            f"directly ({rest}={text.split('=', 1)[1]})"
        )
    label = max((name for name in search if rest.startswith(name + ".")), key=len, default=None)
    if label is None:
        wanted, field_name = rest.rsplit(".", 1) if "." in rest else (rest, "high")
        hint = did_you_mean(wanted, search) if search else ""
        example = hint.split("'")[1] if hint else "<param>"
        raise ConfigError(
            f"override {text!r}: {wanted!r} is not searched{hint}; searched: "
            f"{', '.join(search) or '(none)'}. Edit a field as search.{example}.{field_name}=value, "
            f"or give a whole entry: search.{wanted}={{distribution: ..., ...}}"
        )
    entry = search[label]
    field_name = rest[len(label) + 1 :]
    if not isinstance(entry, dict):
        raise ConfigError(f"override {text!r}: search.{label} is not a mapping")
    fields = _distribution_fields(entry.get("distribution"))
    if fields and field_name not in fields:
        raise ConfigError(
            f"override {text!r}: {field_name!r} is not a field of search.{label} "
            f"({entry.get('distribution')}){did_you_mean(field_name, fields)}; fields: "
            f"{', '.join(fields)}"
        )
    search[label] = {**entry, field_name: value}


def _distribution_fields(distribution: Any) -> list[str]:
    """The keys a search entry of this distribution takes (empty when the distribution is unknown)."""
    for model in get_args(get_args(Distribution)[0]):
        if distribution in get_args(model.model_fields["distribution"].annotation):
            return list(model.model_fields)
    return []


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
        kept_keys = keys[:column] + keys[column + 1 :]
        if not kept_keys:
            del search[label]
            continue
        kept_rows: list[Any] = []
        for row in rows:
            short = row[:column] + row[column + 1 :] if isinstance(row, list) else row
            if short not in kept_rows:
                kept_rows.append(short)
        search[label] = {**entry, "keys": kept_keys, "values": kept_rows}


# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Sweep:
    """A validated space file: everything `tune` needs, nothing started yet."""

    path: Path
    spec: SpaceFile
    card: TaskCard  # the task without its code: `task_cls` imports that (torch), where work is done
    base_config: dict[str, Any]  # validated task config (JSON-able), searched keys at their defaults
    overrides: list[str] = field(default_factory=list)

    @property
    def task_cls(self) -> type[Task]:
        """The task's class (imports torch and the model code: not in the sweep's own process)."""
        return self.card.load()

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
        metric = self.spec.objective.metric or self.card.metric_names[0]
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

    def config_for(self, sampled: Mapping[str, Any]) -> TaskConfig:
        """The task config of one trial, validated: base config with the sampled dotted keys set."""
        return self.card.config_model.model_validate(with_updates(self.base_config, sampled))

    @property
    def max_epochs(self) -> int:
        """Upper bound of `epoch` over all trials: ASHA's max_t.

        The task declares its epochs in its config's `train` section (`Task.train_section`), so this asks the task
        for every value the search can set: each choice / grid value and `rows` row, both ends of a range. A searched
        key that is not the epoch count (say `optim.warmup_epochs`) leaves the answer alone.
        """
        if self.spec.scheduler.max_t:
            return self.spec.scheduler.max_t
        points: list[dict[str, Any]] = [{}]
        for key, dist in self.spec.search.items():
            if isinstance(dist, Rows):
                points += dist.points()
            elif isinstance(dist, (Choice, Grid)):
                points += [{key: value} for value in dist.values]
            else:
                points += [{key: dist.low}, {key: dist.high}]
        return max(self.card.train_section(self.config_for(point)).epochs for point in points)

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


MAX_SPACE_BYTES = 1 << 20  # a search-space file is a few KiB; reading stops here (e.g. /dev/zero)
MAX_YAML_DEPTH = 50  # nesting levels; the YAML composer recurses, so deeper files would raise RecursionError
MAX_YAML_VALUES = 100_000  # values after expanding aliases: a "billion laughs" file stops here, unexpanded
MAX_ECHO_CHARS = 120  # longest value quoted back in an error message


def short_repr(value: Any, limit: int = MAX_ECHO_CHARS) -> str:
    """repr(value), cut to `limit` characters: error messages quote values, never whole expanded documents."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_yaml_text(text: str, where: str) -> Any:
    """YAML text → Python data with the loader's work bounded: nesting depth, values after alias expansion and
    duplicate mapping keys are checked on the event stream and the node graph before anything is constructed."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    mark = event.start_mark
                    line = f" line {mark.line + 1}:" if mark is not None else ""
                    raise ConfigError(
                        f"{where}:{line} nested more than {MAX_YAML_DEPTH} levels deep; a "
                        f"search-space file is a few levels of mappings and lists"
                    )
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _check_nodes(node, where)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}:{at} malformed YAML: {problem}") from None
    except RecursionError:  # a structure the depth count above did not see (e.g. a recursive alias)
        raise ConfigError(f"{where}: nested too deeply to load") from None


def _check_nodes(root: yaml.Node, where: str) -> None:
    """Duplicate keys (the second would silently win) and the size after alias expansion, without expanding."""
    sizes: dict[int, int] = {}
    visiting: set[int] = set()  # entered, children not sized yet: meeting one again is a cycle
    stack: list[tuple[yaml.Node, str, bool]] = [(root, "", False)]
    while stack:  # post-order walk: a node's size once its children's are known
        node, key_path, children_done = stack.pop()
        if id(node) in sizes:
            continue
        if not children_done:
            if id(node) in visiting:
                raise ConfigError(
                    f"{where}: {key_path or 'the document'}: a YAML alias refers to its own anchor "
                    f"(a structure that contains itself)"
                )
            visiting.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            sizes[id(node)] = 1
            continue
        if isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
            if not children_done:
                seen: dict[Any, int] = {}
                for key_node, _ in node.value:
                    if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "<<":
                        continue
                    if key_node.value in seen:
                        label = f"{key_path}.{key_node.value}" if key_path else key_node.value
                        raise ConfigError(
                            f"{where}: {label}: duplicate key (lines {seen[key_node.value]} and "
                            f"{key_node.start_mark.line + 1}); each key may appear once"
                        )
                    seen[key_node.value] = key_node.start_mark.line + 1
            named = [
                (v, f"{key_path}.{k.value}" if key_path else str(k.value))
                for k, v in node.value
                if isinstance(k, yaml.ScalarNode)
            ]
            child_paths = {id(v): p for v, p in named}
        else:
            children = list(node.value)
            child_paths = {id(v): f"{key_path}[{i}]" for i, v in enumerate(children)}
        if children_done:
            sizes[id(node)] = 1 + sum(sizes[id(child)] for child in children)
            if sizes[id(node)] > MAX_YAML_VALUES:
                raise ConfigError(
                    f"{where}: {key_path or 'the document'}: expands to more than {MAX_YAML_VALUES} "
                    f"values through YAML aliases (*name); write the values out instead"
                )
            continue
        stack.append((node, key_path, True))
        stack.extend(
            (child, child_paths.get(id(child), key_path), False) for child in children if id(child) not in sizes
        )


def read_yaml(path: Path) -> dict[str, Any]:
    """The space file's top-level mapping. Reads at most MAX_SPACE_BYTES, loads with bounded work."""
    if not path.exists():
        raise ConfigError(f"{path}: no such file")
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, expected a search-space YAML file")
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_SPACE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(raw) > MAX_SPACE_BYTES:
        raise ConfigError(
            f"{path}: larger than {MAX_SPACE_BYTES >> 20} MiB; a search-space file is a small YAML text file"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file") from None
    if "\x00" in text:
        raise ConfigError(f"{path}: not a text file")
    data = parse_yaml_text(text, str(path))
    if data is None:
        raise ConfigError(f"{path}: empty file; expected at least 'task:'")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping with 'task:', got {type(data).__name__}")
    return data


_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _check_finite(value: Any, where: str, key_path: str) -> None:
    """inf / nan (`.inf`, `1e999`, `1.0e400`) anywhere in the file: no setting of raysweep takes one."""
    if isinstance(value, dict):
        for key, child in value.items():
            _check_finite(child, where, f"{key_path}.{key}" if key_path else str(key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            _check_finite(child, where, f"{key_path}[{i}]")
    elif (
        isinstance(value, float)
        and not math.isfinite(value)
        or (isinstance(value, str) and _NUMBER.match(value.strip()) and not math.isfinite(float(value)))
    ):
        raise ConfigError(
            f"{where}: {key_path or 'value'}: {short_repr(value)} is not a finite number; give a finite value"
        )


def load_sweep(path: str | Path, overrides: Sequence[str] = ()) -> Sweep:
    path = Path(path)
    raw = apply_overrides(read_yaml(path), overrides)
    _check_finite(raw, str(path), "")
    for key in raw:
        if key not in SECTIONS:
            raise ConfigError(
                f"{path}: {key}: unknown key{did_you_mean(key, SECTIONS)}; allowed: {', '.join(SECTIONS)}"
            )
    try:
        spec = SpaceFile.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{path}: {describe_validation_error(err, '', SpaceFile)}") from None
    card = get_card(spec.task, where=f"{path}: task")
    model = card.config_model
    try:
        base = model.model_validate(spec.config)
    except ValidationError as err:
        raise ConfigError(f"{path}: {describe_validation_error(err, 'config', model)}") from None
    base_config = base.model_dump(mode="json")
    _check_search(path, spec, model, base_config)
    _check_selection(path, spec, card)
    set_path(base_config, card.validation_key, spec.selection == "val")
    sweep = Sweep(path=path, spec=spec, card=card, base_config=base_config, overrides=list(overrides))
    _check_scheduler(path, sweep)
    if spec.ray.dashboard_is_public and not spec.ray.address:
        log.warning(
            "%s: ray.dashboard_host %r is not a loopback address: the dashboard (which can submit jobs "
            "that run code) will be reachable from the network; keep 127.0.0.1 and use an SSH tunnel",
            path,
            spec.ray.dashboard_host,
        )
    return sweep


SPLITS = ("val", "test")


def _check_selection(path: Path, spec: SpaceFile, card: TaskCard) -> None:
    """Hyper-parameters are selected on validation data; a test metric selects only where the file says so."""
    metric = spec.objective.metric or card.metric_names[0]
    head, _, rest = metric.partition(".")
    split, name = (head, rest) if head in SPLITS and rest else (None, metric)
    if name not in card.metric_names:
        allowed = [*card.metric_names, *(f"{s}.{m}" for s in SPLITS for m in card.metric_names[:1])]
        raise ConfigError(
            f"{path}: objective.metric: {metric!r}{did_you_mean(name, card.metric_names)} is not "
            f"reported by task {spec.task!r}; allowed: {', '.join(allowed)}, ..."
        )
    if spec.selection == "val" and split == "test":
        raise ConfigError(
            f"{path}: objective.metric: {metric!r} would select hyper-parameters on the test set; use "
            f"{'val.' + name!r} (selection: val), or set `selection: test` to reproduce a published "
            f"test-set protocol on purpose"
        )
    if spec.selection != "val" and split == "val":
        raise ConfigError(
            f"{path}: objective.metric: {metric!r} needs a validation split, but selection is "
            f"{spec.selection!r} (no split is carved out); use {name!r} or set `selection: val`"
        )
    key = card.validation_key
    written = get_path(spec.config, key, spec.config.get(key))
    if written is not None and bool(written) != (spec.selection == "val"):
        raise ConfigError(
            f"{path}: config.{key}: {written!r} contradicts selection: {spec.selection}; the split "
            f"follows `selection` (val: carved out, none / test: full training set), drop the key"
        )
    if key in spec.search:
        raise ConfigError(
            f"{path}: search.{key}: the validation split is not a hyper-parameter; it follows "
            f"`selection` (allowed: {', '.join(SELECTIONS)})"
        )
    if spec.selection == "none":
        searched = [k for k, d in spec.search.items() if not isinstance(d, (Grid, Rows))]
        if searched:
            raise ConfigError(
                f"{path}: search.{searched[0]}: selection: none runs a fixed grid, so only `grid` and "
                f"`rows` distributions are allowed (a searched value needs `selection: val`)"
            )
        if spec.scheduler.type != "none":
            raise ConfigError(
                f"{path}: scheduler.type: {spec.scheduler.type!r} would stop trials on test-set "
                f"numbers under selection: none; set scheduler.type: none (or `selection: val`)"
            )


def _check_scheduler(path: Path, sweep: Sweep) -> None:
    """What ASHA would only reject once Tune builds it: a grace period longer than any trial runs."""
    sched = sweep.spec.scheduler
    rung_epochs(sweep)  # scheduler.milestones / rungs_after_lr_drop that cannot be placed
    if sched.type != "asha" or sched.max_t is not None:
        return  # an explicit max_t is compared with grace_period by the schema
    longest = sweep.max_epochs
    if sched.grace_period > longest:
        raise ConfigError(
            f"{path}: scheduler.grace_period: {sched.grace_period} epochs, but no trial runs more than "
            f"{longest} (the task's epochs, ASHA's max_t); `grace_period <= max_t` must hold: lower "
            f"it or set scheduler.type: none"
        )


def _validate_value(path: Path, model: type[BaseModel], base: dict, key: str, value: Any, where: str) -> None:
    _validate_updates(model, base, {key: value}, f"{path}: {where}: value {short_repr(value)} is invalid for {key!r}")


def _validate_updates(model: type[BaseModel], base: dict, updates: Mapping[str, Any], culprit: str) -> None:
    """Refuse (one line: `culprit (what pydantic found)`) when the base config with `updates` set is invalid."""
    try:
        model.model_validate(with_updates(base, updates))
    except ValidationError as err:
        raise ConfigError(f"{culprit} ({describe_validation_error(err, '', model)})") from None


def _check_rows(path: Path, spec: SpaceFile, model: type[BaseModel], base: dict, label: str, rows: Rows) -> None:
    where = f"search.{label}"
    try:
        check_key(model, label, "")
    except ConfigError:
        pass
    else:
        raise ConfigError(
            f"{path}: {where}: a `rows` entry is named by a label, not a config key; list "
            f"{label!r} under its keys and give the entry another name (e.g. 'recipe')"
        )
    for column, key in enumerate(rows.keys):
        check_key(model, key, f"{path}: {where}.keys[{column}]")
        if key in spec.search:
            raise ConfigError(
                f"{path}: {where}.keys[{column}]: {key!r} is also searched as search.{key}; "
                f"a key is swept in one place only"
            )
        for other_label, other in spec.search.items():
            if other_label != label and isinstance(other, Rows) and key in other.keys:
                raise ConfigError(
                    f"{path}: {where}.keys[{column}]: {key!r} is also a key of search.{other_label}; "
                    f"a key is swept in one place only"
                )
    for i, row in enumerate(rows.values):
        if row in rows.values[:i]:
            raise ConfigError(
                f"{path}: {where}.values[{i}]: {row!r} repeats values[{rows.values.index(row)}]; "
                f"to run a row several times raise trials.num_samples"
            )
        _validate_updates(
            model,
            base,
            dict(zip(rows.keys, row, strict=True)),
            f"{path}: {where}.values[{i}]: row {short_repr(row)} is invalid",
        )


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
                        raise ConfigError(
                            f"{path}: {cwhere}: condition can never hold: {wanted_values!r} is not among "
                            f"search.{cond_key}'s values {possible!r}"
                        )
            elif cond_key in spec.search or any(
                cond_key in d.keys for d in spec.search.values() if isinstance(d, Rows)
            ):
                raise ConfigError(f"{path}: {cwhere}: {cond_key!r} must be defined before {key!r} in 'search'")
            else:
                check_key(model, cond_key, f"{path}: {cwhere}")
                fixed = get_path(base, cond_key)
                if fixed not in wanted_values:
                    raise ConfigError(
                        f"{path}: {cwhere}: condition can never hold: {cond_key!r} is fixed at {fixed!r}, "
                        f"not in {wanted_values!r}"
                    )
        seen[key] = dist
