"""Typed records <-> JSON, and the JSON Schema of a record, from one description: the type hints.

Every record of the results file is a frozen dataclass. Rather than hand-writing `to_dict`,
`from_dict` and a schema for each (three descriptions of one shape that drift apart), this module
walks the dataclass fields and their annotations once, for all three. The supported annotations
are the few the results file needs:

    str, int, bool, float             float may be NaN in memory; JSON has no NaN, so it is null
    X | None                          optional (JSON null)
    Literal["a", "b"]                 a closed set of strings
    tuple[X, ...]                     a JSON array (tuples keep records immutable)
    Mapping[str, X]                   a JSON object with free keys
    Json                              any JSON value, kept as parsed (open-ended breakdowns)
    a record (dataclass)              a JSON object with exactly the record's keys

Field metadata: `omit_none=True` leaves the key out of the JSON when the value is None (used where
an older writer never wrote the key, so round-trips stay byte-identical).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from ..errors import RecordError, UnstorableValueError  # RecordError: re-exported, as before

#: Any JSON value (open-ended payloads such as a metric's breakdown or a backend's settings).
Json = Any

R = TypeVar("R")


def omit_none(default: Any = None) -> Any:
    """A field whose key is absent from the JSON when its value is None."""
    return dataclasses.field(default=default, metadata={"omit_none": True})


@lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_optional(tp: Any) -> tuple[bool, Any]:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(get_args(tp)) == 2:
            return True, args[0]
    return False, tp


def _ordered_fields(cls: type) -> list[dataclasses.Field[Any]]:
    """A record's fields in its JSON key order: `__json_keys__` when it declares one, else field order.

    (A record may keep its constructor's argument order for callers while the file keeps the key
    order it has always had.)"""
    fields = list(dataclasses.fields(cls))
    order = getattr(cls, "__json_keys__", None)
    if not order:
        return fields
    rank = {name: i for i, name in enumerate(order)}
    return sorted(fields, key=lambda f: rank.get(f.name, len(rank)))


# ---------------------------------------------------------------------------------------------
# records -> JSON


def to_json(value: Any) -> Any:
    """A record (or any value inside one) as plain JSON data: NaN/inf become null."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in _ordered_fields(type(value)):
            v = getattr(value, f.name)
            if v is None and f.metadata.get("omit_none"):
                continue
            out[f.name] = to_json(v)
        return out
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return to_json(value.item())
    raise UnstorableValueError(
        f"cannot store a {type(value).__name__} ({value!r:.80}) in a results file, which holds JSON values only "
        "(numbers, strings, booleans, lists and dicts of them); convert it to one of those where it is made, e.g. "
        "in a custom metric's details or a suite's metric_params")


# ---------------------------------------------------------------------------------------------
# JSON -> records


def from_json(tp: type[R], data: Any, where: str = "$") -> R:
    """Build a record of type `tp` from parsed JSON; RecordError names the path of a bad value."""
    return typing.cast(R, _read(tp, data, where))


def _read(tp: Any, data: Any, where: str) -> Any:
    optional, inner = _is_optional(tp)
    if data is None:
        if optional:
            return None
        if inner is float:
            return math.nan  # how an undefined number was stored
        if inner is Any:
            return None
        raise RecordError(f"{where}: expected {_describe(inner)}, got null")
    tp = inner
    if tp is Any:
        return data
    if dataclasses.is_dataclass(tp):
        if not isinstance(data, Mapping):
            raise RecordError(f"{where}: expected an object, got {_json_type(data)}")
        hints = _hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise RecordError(f"{where}: unexpected key(s) {', '.join(map(repr, unknown))}")
        kwargs = {}
        for f in dataclasses.fields(tp):
            if f.name in data:
                kwargs[f.name] = _read(hints[f.name], data[f.name], f"{where}.{f.name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise RecordError(f"{where}: missing the key {f.name!r}")
        return tp(**kwargs)
    origin = get_origin(tp)
    if origin is Literal:
        if data not in get_args(tp):
            raise RecordError(f"{where}: expected one of {', '.join(map(repr, get_args(tp)))}, got {data!r}")
        return data
    if origin is tuple:
        if not isinstance(data, list):
            raise RecordError(f"{where}: expected an array, got {_json_type(data)}")
        item = get_args(tp)[0]
        return tuple(_read(item, v, f"{where}[{i}]") for i, v in enumerate(data))
    if origin in (Mapping, dict, typing.Mapping):
        if not isinstance(data, Mapping):
            raise RecordError(f"{where}: expected an object, got {_json_type(data)}")
        item = get_args(tp)[1]
        return {str(k): _read(item, v, f"{where}.{k}") for k, v in data.items()}
    if tp is float:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise RecordError(f"{where}: expected a number, got {_json_type(data)}")
        return float(data) if isinstance(data, float) else data
    if tp is int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise RecordError(f"{where}: expected an integer, got {_json_type(data)}")
        return data
    if tp in (str, bool):
        if not isinstance(data, tp):
            raise RecordError(f"{where}: expected {_describe(tp)}, got {_json_type(data)}")
        return data
    raise TypeError(f"{where}: unsupported annotation {tp!r}")


def _json_type(data: Any) -> str:
    if data is None:
        return "null"
    if isinstance(data, bool):
        return "a boolean"
    if isinstance(data, (int, float)):
        return "a number"
    if isinstance(data, str):
        return "a string"
    if isinstance(data, list):
        return "an array"
    return "an object"


def _describe(tp: Any) -> str:
    return {str: "a string", bool: "a boolean", int: "an integer", float: "a number"}.get(tp, "a value")


# ---------------------------------------------------------------------------------------------
# JSON Schema


def json_schema(root: type, *, schema_id: str, title: str, description: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of `root` and every record it contains, as `$defs`."""
    defs: dict[str, Any] = {}
    top = _schema(root, defs)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": schema_id, "title": title,
            "description": description, **top, "$defs": dict(sorted(defs.items()))}


def _schema(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    optional, inner = _is_optional(tp)
    if optional:
        return {"anyOf": [_schema(inner, defs), {"type": "null"}]}
    if tp is Any:
        return {}
    if dataclasses.is_dataclass(tp):
        name = tp.__name__
        if name not in defs:
            defs[name] = {}  # placeholder: records may nest themselves
            hints = _hints(tp)
            props = {f.name: _schema(hints[f.name], defs) for f in _ordered_fields(tp)}
            required = [f.name for f in dataclasses.fields(tp)
                        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
            doc = (tp.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
            defs[name] = {"type": "object", "description": doc, "properties": props, "required": required,
                          "additionalProperties": False}
        return {"$ref": f"#/$defs/{name}"}
    origin = get_origin(tp)
    if origin is Literal:
        return {"enum": list(get_args(tp))}
    if origin is tuple:
        return {"type": "array", "items": _schema(get_args(tp)[0], defs)}
    if origin in (Mapping, dict, typing.Mapping):
        return {"type": "object", "additionalProperties": _schema(get_args(tp)[1], defs)}
    if tp is float:
        return {"type": ["number", "null"]}  # null: an undefined value (NaN in memory)
    if tp is int:
        return {"type": "integer"}
    if tp is str:
        return {"type": "string"}
    if tp is bool:
        return {"type": "boolean"}
    raise TypeError(f"unsupported annotation {tp!r}")


__all__ = ["Json", "RecordError", "from_json", "json_schema", "omit_none", "to_json"]
