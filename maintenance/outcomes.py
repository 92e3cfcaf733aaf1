"""Whether a session had a failed job: what `failed_max_age` keeps longer.

The cheap source is the session's snapshot: the history server writes a closed session's `jobs` table
back to the archive (`snapshots/{path}/jobs.parquet`, a few rows), whether someone opened the session
or the server's job index pass derived it. One GET of that small file answers, and it is asked only
for a session whose fate depends on it (an age would fire without failed_max_age and not with it).

When there is no such table, or it was built before the session's end as the listing tells it (the
snapshot of a session that went on), the outcome is unknown and the session is kept as if a job had
failed: a deletion cannot be undone, a longer stay can. An incomplete session never has a written
snapshot, so it is always unknown; a rule for `statuses = ["incomplete"]` without failed_max_age is
how to age those out sooner.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from archive.storage import ObjectNotFound, Storage, StorageError

from .inventory import JOBS_TABLE, SNAPSHOT_MANIFEST, SessionObjects

log = logging.getLogger(__name__)


class JobOutcomes(Protocol):
    def failed(self, session: SessionObjects) -> bool | None:
        """True if a job of the session failed, False if none did, None if nobody can tell."""
        ...


class SnapshotJobs:
    """Reads the `jobs` table of the session's written snapshot (Ray's internal drivers left out)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.reads = 0
        self._lock = threading.Lock()  # the planner asks from several threads
        # A written jobs table changes only when a server writes the snapshot again (a new size or time): a
        # caller that plans again and again (the server's maintenance loop) keeps this object and reads each once.
        self._known: dict[tuple[str, int, int], bool] = {}

    def failed(self, session: SessionObjects) -> bool | None:
        jobs = session.snapshot_object(JOBS_TABLE)
        manifest = session.snapshot_object(SNAPSHOT_MANIFEST)
        end_ms = session.end_ms()
        if jobs is None or manifest is None or end_ms is None or manifest.mtime_ns // 1_000_000 < end_ms:
            return None
        version = (jobs.key, jobs.size, jobs.mtime_ns)
        known = self._known.get(version)
        if known is not None:
            return known
        with self._lock:
            self.reads += 1
        try:
            table = pq.read_table(pa.BufferReader(self.storage.get(jobs.key)), columns=["status", "is_hidden"])
        except ObjectNotFound:
            return None
        except (StorageError, pa.ArrowInvalid, KeyError) as exc:
            log.warning("cannot read %s (%s): the session's jobs are taken as unknown", jobs.key, exc)
            return None
        failed = bool(pc.any(pc.and_(pc.equal(table["status"], "FAILED"), pc.invert(table["is_hidden"]))).as_py())
        self._known[version] = failed
        return failed
