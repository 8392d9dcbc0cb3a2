"""Data rows of a setting: read JSONL or Parquet and check each row against a small schema.

    rows = read_rows("train.jsonl", {"request": str, "response": str, "tests": list[str],
                                     "label": Field(int, check=lambda v: 0 <= v <= 4, must="be 0 to 4")})

A malformed row stops everything with one InputError sentence naming the file, the line
(JSONL, counting from 1) or row (Parquet, counting from 1) and the field. Fields the schema
does not name are kept as they are, so a user's extra columns do no harm.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from inocray.errors import InputError


@dataclass(frozen=True)
class Field:
    """A field's type (str, int, float, bool or list[...] of one of them) and what else it must be."""

    type: Any
    required: bool = True
    check: Callable[[Any], bool] | None = None
    must: str = ""  # what `check` demands, read after "must": e.g. "be between 0 and 4"


Schema = Mapping[str, "Field | type | Any"]

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def optional(schema: Schema) -> dict[str, Field]:
    """The same fields, each allowed to be missing."""
    return {name: dataclasses.replace(_field(spec), required=False) for name, spec in schema.items()}


def _field(spec: Any) -> Field:
    return spec if isinstance(spec, Field) else Field(spec)


def read_rows(path: str | Path, schema: Schema) -> list[dict]:
    """The rows of a JSONL or Parquet file, each checked against `schema`."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"{path}: no such data file")
    if path.suffix == ".parquet":
        where, rows = "row", _parquet_rows(path)
    else:
        where, rows = "line", _jsonl_rows(path)
    out = []
    for number, row in rows:
        _check_row(row, schema, f"{path}, {where} {number}")
        out.append(row)
    if not out:
        raise InputError(f"{path}: holds no data rows")
    return out


def _jsonl_rows(path: Path):
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a UTF-8 text file (JSONL expected, or a .parquet file)") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}, line {number}: not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(row, dict):
            raise InputError(f"{path}, line {number}: must be a JSON object of fields, not {type(row).__name__}")
        yield number, row


def _parquet_rows(path: Path):
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as e:  # pyarrow raises several kinds for a damaged file
        raise InputError(f"{path}: not a readable Parquet file ({type(e).__name__}: {e})") from None
    for number, row in enumerate(rows, 1):
        yield number, {k: v for k, v in row.items() if v is not None}  # a null is a missing field


def _check_row(row: dict, schema: Schema, where: str) -> None:
    for name, spec in schema.items():
        field = _field(spec)
        if name not in row:
            if field.required:
                raise InputError(f"{where}: field '{name}' is missing")
            continue
        value = row[name]
        if not _has_type(value, field.type):
            raise InputError(f"{where}: field '{name}' must be {_describe(field.type)}, not {value!r:.60}")
        if field.check is not None and not field.check(value):
            raise InputError(f"{where}: field '{name}' must {field.must or 'be valid'}, not {value!r:.60}")


def _has_type(value: Any, tp: Any) -> bool:
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp)
        return isinstance(value, list) and all(_has_type(v, item) for v in value)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def _describe(tp: Any) -> str:
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp)
        return f"a list of {_TYPE_NAMES[item].removeprefix('a ').removeprefix('an ')}s"
    return _TYPE_NAMES[tp]
