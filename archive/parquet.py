"""Writing and reading archive tables as Parquet, with the settings every writer must share."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .schema import PARQUET_COMPRESSION, PARQUET_COMPRESSION_LEVEL, PLAIN_COLUMNS, UNSTATISTICAL_COLUMNS


def rows_to_table(rows: Sequence[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    columns = {name: [row.get(name) for row in rows] for name in schema.names}
    return pa.Table.from_pydict(columns, schema=schema)


def table_to_parquet(table: pa.Table) -> bytes:
    name = (table.schema.metadata or {}).get(b"ray_history.table", b"").decode()
    encodings = PLAIN_COLUMNS.get(name, {})
    unstatistical = UNSTATISTICAL_COLUMNS.get(name, ())
    sink = io.BytesIO()
    pq.write_table(
        table,
        sink,
        compression=PARQUET_COMPRESSION,
        compression_level=PARQUET_COMPRESSION_LEVEL,
        row_group_size=256 * 1024,
        use_dictionary=[column for column in table.column_names if column not in encodings],
        column_encoding=encodings or None,
        write_statistics=[column for column in table.column_names if column not in unstatistical],
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
