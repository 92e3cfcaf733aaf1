"""Compacted objects (`layout.compacted_key`): a node's parts of one kind rewritten as one Parquet file.

Lossless: the same rows and columns, with the same per-column settings as the parts (`parquet.column_options`),
in the parts' order (sequence order, one part after another). Only the file settings differ. A part is
written while the collector waits, so it takes zstd level 1 and 256Ki-row groups; a compacted object is
written once, off the hot path, and read for as long as the session is kept, so it takes a stronger level
and row groups as large as memory allows. Text gains most: compacted logs take less than gzip -6 of the same
text, where their parts took more (docs/compaction.md has the measures).

The file's footer also says which parts it holds (`SOURCES_KEY`: JSON `[[sequence, rows], ...]`, the
original parts even when compacted objects are merged again), so what was merged can be audited; the Arrow
schema readers get is the parts' own.
"""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq

from .layout import PartKind
from .parquet import column_options
from .schema import PARQUET_COMPRESSION

# zstd levels measured on Ray-shaped logs (bench/compaction.py): up to 15 the text column alone costs about
# what gzip -6 of the files does, and the other columns (offsets above all) then take the object past it;
# 16, zstd's first optimal-parsing level, takes 6% less than gzip, at a third of level 12's speed. Events and
# metrics gain 5% from level 1 to 6 and little past it.
COMPACTED_LEVELS: dict[PartKind, int] = {"events": 6, "logs": 16, "metrics": 6}
ROW_GROUP_ROWS = 1 << 20
# Rows held in memory before a row group is written: log rows take ~350 bytes each in Arrow, so a
# row group of logs stops here before it reaches ROW_GROUP_ROWS.
ROW_GROUP_BYTES = 128 << 20
SOURCES_KEY = b"ray_history.compacted_from"

Sources = list[tuple[str, int]]


def same_schema(a: pa.Schema, b: pa.Schema) -> bool:
    """Whether rows of `a` and `b` may share one file: same columns, types, table name and schema version."""
    return a.equals(b, check_metadata=True)


def read_object(data: bytes, sequence: str) -> tuple[pa.Table, Sources]:
    """A part's or a compacted object's rows, and the parts they came from (`sequence`: a part's own)."""
    file = pq.ParquetFile(io.BytesIO(data))
    table = file.read()
    metadata = dict(table.schema.metadata or {})
    # ParquetFile.read puts the footer's keys in the schema's metadata: the list is the file's, not the rows'.
    listed = metadata.pop(SOURCES_KEY, None)
    if listed is None:
        return table, [(sequence, table.num_rows)]
    return table.replace_schema_metadata(metadata), [(str(seq), int(rows)) for seq, rows in json.loads(listed)]


class CompactedWriter:
    """Appends the tables of several parts, in order, to one Parquet file held in memory."""

    def __init__(self, kind: PartKind, schema: pa.Schema) -> None:
        self.schema = schema
        self.sources: Sources = []
        self.rows = 0
        self._sink = io.BytesIO()
        self._writer = pq.ParquetWriter(
            self._sink,
            self.schema,
            compression=PARQUET_COMPRESSION,
            compression_level=COMPACTED_LEVELS[kind],
            **column_options(self.schema),
        )
        self._held: list[pa.Table] = []
        self._held_rows = 0
        self._held_bytes = 0

    def accepts(self, schema: pa.Schema) -> bool:
        return same_schema(self.schema, schema)

    def append(self, table: pa.Table, sources: Sources) -> None:
        """Add the rows of one object (from `read_object`) after the others."""
        if not self.accepts(table.schema):
            raise ValueError("a compacted object holds parts of one schema; start another at a schema change")
        self.sources += sources
        self.rows += table.num_rows
        self._held.append(table)
        self._held_rows += table.num_rows
        self._held_bytes += table.nbytes
        if self._held_rows >= ROW_GROUP_ROWS or self._held_bytes >= ROW_GROUP_BYTES:
            self._write_held()

    def finish(self) -> bytes:
        """The whole file; the writer cannot be used after."""
        self._write_held()
        self._writer.add_key_value_metadata({SOURCES_KEY: json.dumps(self.sources, separators=(",", ":"))})
        self._writer.close()
        return self._sink.getvalue()

    def abandon(self) -> None:
        """Drop what was appended (a part vanished: another compactor is at work on it)."""
        self._held.clear()
        self._writer.close()

    def _write_held(self) -> None:
        if not self._held:
            return
        table = pa.concat_tables(self._held)
        # Whole row groups only while rows keep coming: the rest waits for the next parts.
        whole = self._held_rows // ROW_GROUP_ROWS * ROW_GROUP_ROWS
        if whole == 0 or self._held_bytes >= ROW_GROUP_BYTES:
            whole = self._held_rows
        self._writer.write_table(table.slice(0, whole), row_group_size=ROW_GROUP_ROWS)
        rest = table.slice(whole)
        self._held = [rest] if rest.num_rows else []
        self._held_rows = rest.num_rows
        self._held_bytes = rest.nbytes if rest.num_rows else 0
