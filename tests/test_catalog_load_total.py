"""The catalog's first load reports the documents it lists once, whatever else lists sessions/ meanwhile (the
usage gauges' listing once doubled the total: "of 17,492" for 8,746 documents), and the server's maintenance
waits for that load before its first listing."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from archive.storage import open_storage
from historyserver.maintenance import Maintenance, MaintenanceSettings
from historyserver.server import HistoryServer, ServerSettings
from maintenance.counting import CountingStorage

from .test_catalog import ref, write_manifest, write_marker


def test_the_first_load_counts_its_own_listing(tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path / "archive"))
    for i in range(30):
        write_manifest(storage, ref(session=f"s{i}"))
        write_marker(storage, ref(session=f"s{i}"))
    history = HistoryServer(storage, ServerSettings(cache_dir=tmp_path / "cache", index_jobs=False))

    def refresh() -> object:
        assert sum(1 for _ in history.storage.list("sessions/")) == 60  # a usage listing during the load
        return history.refresh()

    assert history.load.run(refresh)
    progress = history.load.progress()
    assert (progress.documents_read, progress.documents_listed, progress.sessions) == (60, 60, 30)
    assert "60 of 60 session documents" in progress.describe()


def test_maintenance_waits_for_the_first_load(tmp_path: Path) -> None:
    storage = CountingStorage(open_storage(str(tmp_path / "archive")))
    maintenance = Maintenance(storage, MaintenanceSettings(usage_interval_s=0.05, first_delay_s=0))
    loaded, stop = threading.Event(), threading.Event()
    thread = threading.Thread(target=maintenance.loop, args=(stop, loaded), daemon=True)
    thread.start()
    try:
        time.sleep(0.5)
        assert storage.calls["list"] == 0
        loaded.set()
        deadline = time.monotonic() + 10
        while storage.calls["list"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert storage.calls["list"] > 0
    finally:
        stop.set()
        thread.join(10)
