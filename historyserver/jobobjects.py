"""The job index's objects in the archive (archive.job_index, `jobindex/{namespace}.parquet`): what a replica with an
empty job index starts from, and what every replica keeps written as its ended sessions change.

Any replica may write them: an object's content depends only on which sessions are indexed from which snapshots,
so two replicas that indexed the same sessions write the same bytes. A namespace is written at most once per
interval, and only when its sessions' sources changed since this process last read or wrote its object (a digest
kept in the job index's file, so a restart does not write them all again).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable

from archive import job_index, layout
from archive.storage import ObjectNotFound, Storage, StorageError

from .jobindex import Indexed, JobIndex, source_hash

log = logging.getLogger(__name__)

# What publish() remembers of a namespace whose object could not be read: no sessions have this digest, so it is
# written again.
_UNREADABLE = (-1, 0)


class JobIndexObjects:
    def __init__(self, storage: Storage, jobs: JobIndex) -> None:
        self.storage = storage
        self.jobs = jobs
        self._lock = threading.Lock()
        # Per namespace, (sessions, digest) of its object as last read or written (taken from the job index's file
        # on first use: it is read in the background), and when this process wrote it.
        self._published_known: dict[str, tuple[int, int]] | None = None
        self._first_use = threading.Lock()
        self._published_at: dict[str, float] = {}

    @property
    def _published(self) -> dict[str, tuple[int, int]]:
        with self._first_use:
            if self._published_known is None:
                self._published_known = self.jobs.published()
            return self._published_known

    def read(self) -> dict[str, job_index.IndexedSession]:
        """Every session the archive's job index objects hold, by path. An object that cannot be read is skipped
        (its sessions are then indexed one by one, and publish writes it again); StorageError if the objects
        cannot be listed, to try again later."""
        found: dict[str, job_index.IndexedSession] = {}
        keys = [info.key for info in self.storage.list(layout.JOB_INDEX_PREFIX)]
        read_at = time.monotonic()
        for key in keys:
            namespace = layout.parse_job_index_key(key)
            if namespace is None:
                continue
            try:
                sessions = job_index.decode_index(namespace, self.storage.get(key))
            except ObjectNotFound:
                continue
            except StorageError as exc:
                log.warning("could not read job index %s; indexing its sessions one by one: %s", key, exc)
                continue
            except job_index.InvalidIndex as exc:
                log.warning("ignoring job index %s (it will be written again): %s", key, exc)
                with self._lock:
                    self._published[namespace] = _UNREADABLE
                continue
            found.update(sessions)
            with self._lock:
                # What the archive holds now: a namespace indexed alike is not written again.
                self._published[namespace] = _digest(sessions.values())
                self._published_at[namespace] = read_at
        if found:
            log.info("job index: %s sessions from %d index objects", f"{len(found):,}", len(keys))
        with self._lock:
            self._remember()
        return found

    def publish(self, min_interval_s: float = 300.0) -> list[str]:
        """Write the object of every namespace whose ended sessions changed since this process last read or wrote
        it, at most once per `min_interval_s` per namespace, and delete the object of a namespace it knew that has
        no ended session indexed any more. The keys written or deleted; a failure is logged and tried again after
        the interval."""
        now = time.monotonic()
        changed: list[str] = []
        with self._lock:
            current = self.jobs.ended_digests()
            due = [namespace for namespace in current.keys() | self._published.keys()
                   if now - self._published_at.get(namespace, -math.inf) >= min_interval_s]  # fmt: skip
            for namespace in sorted(due):
                if current.get(namespace) == self._published.get(namespace):
                    continue
                key = layout.job_index_key(namespace)
                try:
                    if namespace in current:
                        sessions = self.jobs.export(namespace)
                        data = job_index.encode_index(namespace, sessions)
                        self.storage.put(key, data, {"kind": "jobindex", "namespace": namespace})
                        # What was written, which a put since the digests were taken may have changed.
                        self._published[namespace] = _digest(sessions)
                    else:
                        self.storage.delete(key)
                        self._published.pop(namespace, None)
                except StorageError as exc:
                    log.warning("could not write job index %s (trying again in %.0f s): %s", key, min_interval_s,
                                exc)  # fmt: skip
                    self._published_at[namespace] = now
                    continue
                self._published_at[namespace] = now
                changed.append(key)
            if changed:
                self._remember()
        return changed

    def _remember(self) -> None:
        """Keep what the archive's objects hold in the job index's file: a restart does not write them again."""
        self.jobs.set_published({ns: known for ns, known in self._published.items() if known != _UNREADABLE})


def _digest(sessions: Iterable[job_index.IndexedSession]) -> tuple[int, int]:
    """(count, digest) of sessions as the job index computes it (JobIndex.ended_digests)."""
    count, digest = 0, 0
    for session in sessions:
        if session.closed:
            count += 1
            digest ^= source_hash(session.path, Indexed(session.parts, session.closed, session.end_ns))
    return count, digest
