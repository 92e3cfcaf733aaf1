"""A local copy of some of the archive's objects, so DuckDB reads Parquet from local disk.

Objects are fetched once and again only when their size or mtime changes; an archive on a local
disk is read in place. Keys are checked by the storage layer, and the local path of a key is
checked again to stay inside the cache directory.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa

from archive.storage import ObjectInfo, Storage

log = logging.getLogger(__name__)


class Mirror:
    def __init__(self, storage: Storage, cache_dir: Path) -> None:
        self.storage = storage
        self.cache_dir = cache_dir.resolve()
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[int, int]] = {}  # key -> (size, mtime_ns) of the copy

    def paths(self, objects: Iterable[ObjectInfo]) -> list[Path]:
        """Local paths of these objects, fetching what is missing or changed."""
        in_place = getattr(self.storage, "local_path", None)
        found = []
        for info in objects:
            if in_place is not None:
                found.append(in_place(info.key))
                continue
            found.append(self._fetched(info))
        return found

    def fetch(self, key: str) -> Path:
        """The local path of one object, fetched now (a document or a snapshot table)."""
        in_place = getattr(self.storage, "local_path", None)
        if in_place is not None:
            return Path(in_place(key))
        path = self._local(key)
        data = self.storage.get(key)
        write_atomically(path, data)
        return path

    def _fetched(self, info: ObjectInfo) -> Path:
        path = self._local(info.key)
        with self._lock:
            current = self._seen.get(info.key) == (info.size, info.mtime_ns) and path.exists()
        if not current:
            write_atomically(path, self.storage.get(info.key))
            with self._lock:
                self._seen[info.key] = (info.size, info.mtime_ns)
        return path

    def _local(self, key: str) -> Path:
        path = (self.cache_dir / "objects" / key).resolve()
        if not path.is_relative_to(self.cache_dir):
            raise ValueError(f"archive key {key!r} would leave the cache directory")
        return path


def write_atomically(path: Path, data: bytes) -> None:
    """Written aside then renamed: a reader (DuckDB in another request) never sees half a file, and one
    that has the old file open keeps reading the old file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def read_parquet_sql(paths: Iterable[Path | str], **options: bool) -> str:
    """`read_parquet([...])` over these local files, for a view (a view's SQL cannot take parameters)."""
    files = ", ".join("'" + str(path).replace("'", "''") + "'" for path in paths)
    extra = "".join(f", {name} = {str(value).lower()}" for name, value in options.items())
    return f"read_parquet([{files}]{extra})"


def empty_select_sql(schema: pa.Schema) -> str:
    """A SELECT of no rows with the schema's columns, for a view over files that do not exist yet."""
    columns = ", ".join(f'NULL::{_duckdb_type(field.type)} AS "{field.name}"' for field in schema)
    return f"SELECT {columns} WHERE false"


def _duckdb_type(arrow_type: pa.DataType) -> str:
    if pa.types.is_timestamp(arrow_type):
        return "TIMESTAMPTZ"
    if pa.types.is_integer(arrow_type):
        return "BIGINT"
    if pa.types.is_floating(arrow_type):
        return "DOUBLE"
    if pa.types.is_boolean(arrow_type):
        return "BOOLEAN"
    if pa.types.is_binary(arrow_type):
        return "BLOB"
    return "VARCHAR"
