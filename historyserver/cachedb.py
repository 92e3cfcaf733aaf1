"""A DuckDB file under --cache-dir that is only a cache of the archive (the catalog's and the job index's).

Such a file can always be made again from the archive, so opening it never stops the server: one that cannot be
opened or read (corrupt, truncated) is deleted and made afresh, and one another process holds (DuckDB's file lock:
two servers given the same --cache-dir) is left to it, the caller's tables then kept in memory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pyarrow as pa

log = logging.getLogger(__name__)

Prepare = Callable[[duckdb.DuckDBPyConnection], None]


def open_cache_database(database: Path | None, prepare: Prepare, tables: Sequence[str],
                        what: str) -> duckdb.DuckDBPyConnection:  # fmt: skip
    """`database` opened (None: in memory), `prepare` having made its tables, each of `tables` read once.
    `what` names the file in log lines ("job index")."""
    if database is not None:
        try:
            database.parent.mkdir(parents=True, exist_ok=True)
            return _connect(database, prepare, tables)
        except duckdb.Error as exc:
            if "lock" in str(exc).lower():
                log.warning("%s file %s is in use by another process; keeping it in memory: %s", what, database, exc)
            else:
                log.warning("%s file %s is unreadable; rebuilding it from the archive: %s", what, database, exc)
                try:
                    for stale in (database, database.with_name(database.name + ".wal")):
                        stale.unlink(missing_ok=True)
                    return _connect(database, prepare, tables)
                except (duckdb.Error, OSError) as again:
                    log.warning("%s file %s cannot be made; keeping it in memory: %s", what, database, again)
        except OSError as exc:
            log.warning("no %s file at %s; keeping it in memory: %s", what, database, exc)
    return _connect(None, prepare, tables)


def _connect(database: Path | None, prepare: Prepare, tables: Sequence[str]) -> duckdb.DuckDBPyConnection:
    db = duckdb.connect(str(database) if database is not None else ":memory:")
    try:
        prepare(db)
        # Every table read once: a file whose header opens but whose tables do not fails here, not later.
        for table in tables:
            db.execute(f"SELECT count(*) FROM {table}").fetchone()
    except BaseException:
        db.close()
        raise
    return db


def reset_if_other(cur: duckdb.DuckDBPyConnection, meta_table: str, wanted: dict[str, str],
                   tables: Sequence[str], what: str) -> None:  # fmt: skip
    """Drop `tables` when `meta_table` says the file was made for something else than `wanted` (another version,
    another archive), so the caller's CREATE TABLE IF NOT EXISTS starts afresh; a file without it is new."""
    existing = {row[0] for row in cur.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    if meta_table not in existing:
        return
    found = dict(cur.execute(f"SELECT name, value FROM {meta_table}").fetchall())
    if found != wanted:
        log.info("%s file was made for %s; rebuilding it for %s", what, found, wanted)
        for table in tables:
            cur.execute(f"DROP TABLE IF EXISTS {table}")


@contextmanager
def transaction(cur: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """A with-block as one transaction: committed at its end, rolled back if it raises."""
    cur.begin()
    try:
        yield
    except BaseException:
        cur.rollback()
        raise
    cur.commit()


@contextmanager
def registered(cur: duckdb.DuckDBPyConnection, name: str, table: pa.Table) -> Iterator[None]:
    """An Arrow table visible to `cur` under `name` for the duration of a with-block."""
    cur.register(name, table)
    try:
        yield
    finally:
        cur.unregister(name)
