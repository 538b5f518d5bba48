"""Column types and names of the results table: one Arrow schema whatever the experiment, and SQL-safe names.

pandas infers a column's type from its values, so the same column is `null` in an experiment where every trial left
it unset (`error` when nothing failed, `config.data.root` on the embedded default), `double` where an integer column
has one gap, and `int64` elsewhere; files of several experiments then do not concatenate (`pyarrow.dataset`, DuckDB,
Spark refuse or widen). Here every column's type comes from what the column *is*: fixed columns from a table below,
`config.<key>` and `resources.<key>` from the pydantic field that defines the key, metrics always float64.
"""

from __future__ import annotations

import re
import types
import typing
from typing import Any, Optional

import pandas as pd
import pyarrow as pa
from pydantic import BaseModel

from raysweep.errors import UserError

FIXED_TYPES: dict[str, pa.DataType] = {
    "experiment": pa.string(),
    "task": pa.string(),
    "trial_id": pa.string(),
    "status": pa.string(),
    "outcome": pa.string(),
    "error": pa.string(),
    "num_failures": pa.int64(),
    "epochs_done": pa.int64(),
    "epochs_total": pa.int64(),
    "wall_time_s": pa.float64(),
    "seed": pa.int64(),
}
FLOAT_PREFIXES = ("last.", "best.")  # every reported number is a float, whatever its first values looked like
STRING_PREFIXES = ("version.",)
_SQL_UNSAFE = re.compile(r"[^0-9A-Za-z_]")


def field_type(model: Optional[type[BaseModel]], dotted: str) -> Optional[pa.DataType]:
    """The Arrow type of config key `dotted` from its pydantic annotation (None when unknown or not a scalar).

    Lists and dicts are stored as JSON text by `collect`, hence string."""
    node: Any = model
    annotation: Any = None
    for part in dotted.split("."):
        if not (isinstance(node, type) and issubclass(node, BaseModel)) or part not in node.model_fields:
            return None
        annotation = node.model_fields[part].annotation
        node = _strip_optional(annotation)
    return _arrow_type(_strip_optional(annotation))


def _strip_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _arrow_type(annotation: Any) -> Optional[pa.DataType]:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        values = typing.get_args(annotation)
        if all(isinstance(v, bool) for v in values):
            return pa.bool_()
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            return pa.int64()
        return pa.string() if all(isinstance(v, str) for v in values) else None
    if origin in (list, dict, tuple) or annotation in (list, dict, tuple):
        return pa.string()
    if origin in (typing.Union, types.UnionType):  # e.g. Union[float, str]: a column holding either is text
        return pa.string()
    return {bool: pa.bool_(), int: pa.int64(), float: pa.float64(), str: pa.string()}.get(annotation)


def _inferred_type(values: pd.Series) -> pa.DataType:
    """For columns nothing defines: float64 for numbers, bool for booleans, else string (never `null`)."""
    present = values.dropna()
    if len(present) and all(isinstance(v, bool) for v in present):
        return pa.bool_()
    if len(present) and pd.api.types.is_numeric_dtype(present.infer_objects()):
        return pa.float64()
    return pa.string()


def results_schema(
    frame: pd.DataFrame,
    config_model: Optional[type[BaseModel]] = None,
    resources_model: Optional[type[BaseModel]] = None,
) -> pa.Schema:
    """One type per column, decided by what the column is, not by which values this experiment happened to have."""
    fields = []
    for column in frame.columns:
        kind: Optional[pa.DataType] = FIXED_TYPES.get(column)
        if kind is None and column.startswith(FLOAT_PREFIXES):
            kind = pa.float64()
        elif kind is None and column.startswith(STRING_PREFIXES):
            kind = pa.string()
        elif kind is None and column.startswith("config."):
            kind = field_type(config_model, column[len("config.") :])
        elif kind is None and column.startswith("resources."):
            kind = field_type(resources_model, column[len("resources.") :])
        fields.append(pa.field(column, kind or _inferred_type(frame[column])))
    return pa.schema(fields)


def arrow_table(
    frame: pd.DataFrame,
    config_model: Optional[type[BaseModel]] = None,
    resources_model: Optional[type[BaseModel]] = None,
) -> pa.Table:
    schema = results_schema(frame, config_model, resources_model)
    frame = frame.copy()
    for field in schema:
        if pa.types.is_string(field.type):  # numbers in a text column (e.g. a Union field) become their text
            frame[field.name] = frame[field.name].map(
                lambda v: v if v is None or isinstance(v, str) or (isinstance(v, float) and v != v) else str(v)
            )
    return pa.Table.from_pandas(frame, schema=schema, preserve_index=False)


def flat_name(column: str) -> str:
    """`config.optim.lr` -> `config__optim__lr`: letters, digits and underscores only, so SQL engines (DuckDB,
    Spark, BigQuery) take it unquoted. Dots become a double underscore so `a.b_c` and `a_b.c` stay distinct."""
    name = _SQL_UNSAFE.sub("_", column.replace(".", "__"))
    return f"c_{name}" if name[:1].isdigit() else name


def flat_names(columns: list[str]) -> dict[str, str]:
    """Old -> new names; a collision (two columns flattening to one name) is refused rather than silently merged."""
    mapping = {column: flat_name(column) for column in columns}
    seen: dict[str, str] = {}
    for column, name in mapping.items():
        if name in seen:
            raise UserError(
                f"--flat-names: columns {seen[name]!r} and {column!r} both become {name!r}; collect "
                f"without --flat-names"
            )
        seen[name] = column
    return mapping
