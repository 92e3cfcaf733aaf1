"""Writing and reading archive tables as Parquet, with the settings every writer must share."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .schema import PARQUET_COMPRESSION, PARQUET_COMPRESSION_LEVEL, PLAIN_COLUMNS, UNSTATISTICAL_COLUMNS


class RowMismatch(ValueError):
    """A row that its table's schema cannot hold (a number out of range, text that is not UTF-8...)."""


_INT_BOUNDS = {
    pa.int8(): 7, pa.int16(): 15, pa.int32(): 31, pa.int64(): 63,
}  # fmt: skip
_checks: dict[int, list[tuple[str, str, int, bool]]] = {}


def _column_checks(schema: pa.Schema) -> list[tuple[str, str, int, bool]]:
    """(column, "int" | "str", bits, nullable) for the columns a row can get wrong."""
    checks = _checks.get(id(schema))
    if checks is None:
        checks = []
        for field in schema:
            if pa.types.is_timestamp(field.type):
                checks.append((field.name, "int", 63, field.nullable))
            elif field.type in _INT_BOUNDS:
                checks.append((field.name, "int", _INT_BOUNDS[field.type], field.nullable))
            elif pa.types.is_string(field.type):
                checks.append((field.name, "str", 0, field.nullable))
        _checks[id(schema)] = checks
    return checks


def check_row(row: Mapping[str, Any], schema: pa.Schema) -> None:
    """Raise RowMismatch unless `schema` can hold the row: one bad row must never fail a whole part."""
    for name, kind, bits, nullable in _column_checks(schema):
        value = row.get(name)
        if value is None:
            if not nullable:
                raise RowMismatch(f"{name} is missing")
        elif kind == "int":
            if type(value) is not int or not -(1 << bits) <= value < (1 << bits):
                raise RowMismatch(f"{name} {value!r} does not fit a {bits + 1}-bit integer")
        elif type(value) is not str:
            raise RowMismatch(f"{name} must be text, got {type(value).__name__}")
        elif not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise RowMismatch(f"{name} is not valid Unicode text: {exc.reason}") from exc


def rows_to_table(rows: Sequence[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    columns = {name: [row.get(name) for row in rows] for name in schema.names}
    return pa.Table.from_pydict(columns, schema=schema)


def column_options(schema: pa.Schema) -> dict[str, Any]:
    """The per-column Parquet settings of a table (schema.PLAIN_COLUMNS, UNSTATISTICAL_COLUMNS), for every writer."""
    name = (schema.metadata or {}).get(b"ray_history.table", b"").decode()
    encodings = PLAIN_COLUMNS.get(name, {})
    unstatistical = UNSTATISTICAL_COLUMNS.get(name, ())
    return {
        "use_dictionary": [column for column in schema.names if column not in encodings],
        "column_encoding": encodings or None,
        "write_statistics": [column for column in schema.names if column not in unstatistical],
    }


def table_to_parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(
        table,
        sink,
        compression=PARQUET_COMPRESSION,
        compression_level=PARQUET_COMPRESSION_LEVEL,
        row_group_size=256 * 1024,
        **column_options(table.schema),
    )
    return sink.getvalue()


def parquet_to_table(data: bytes) -> pa.Table:
    """Read a part; a truncated or corrupt file raises pyarrow.ArrowInvalid naming the problem."""
    return pq.read_table(io.BytesIO(data))


def table_rows(table: pa.Table) -> list[dict[str, Any]]:
    """Rows as dicts, timestamps as int ns since the epoch (Python's datetime stops at microseconds)."""
    for index, column in enumerate(table.schema):
        if pa.types.is_timestamp(column.type):
            table = table.set_column(index, column.name, table.column(index).cast(pa.int64()))
    return table.to_pylist()


def read_checked(data: bytes, schema: pa.Schema, metadata: Mapping[bytes, str],
                 error: type[Exception]) -> pa.Table:  # fmt: skip
    """An object the server wrote for itself (an index), as `schema`: `error` with the reason if it is not
    readable Parquet, its `metadata` (table name, versions) is not as given, or its columns do not fit."""
    try:
        table = parquet_to_table(data)
    except (pa.ArrowException, OSError) as exc:
        raise error(f"not a readable Parquet file: {exc}") from exc
    found = {key: (table.schema.metadata or {}).get(key, b"").decode() for key in metadata}
    if found != dict(metadata):
        raise error(f"{found}, not {dict(metadata)}")
    try:
        return table.select(schema.names).cast(schema)
    except (pa.ArrowException, KeyError) as exc:
        raise error(f"unexpected columns: {exc}") from exc
