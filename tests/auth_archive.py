"""Two teams in one archive, and the auth file that says who sees what: what the authentication tests share.

Three small sessions made by bench.archive_synth (events, logs and metrics as collectors leave them): team A's
training cluster, team A's dev notebook (in `team-a-dev`, reached through a glob), and team B's ETL cluster.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from fastapi.testclient import TestClient

from archive import layout
from archive.storage import open_storage
from bench.archive_synth import write_session
from historyserver.access import unknown_session
from historyserver.authfile import load_auth_file
from historyserver.login import AccessSettings

A = layout.SessionRef("team-a", "train", "session_2026-11-20_08-00-00_000000_1")
A_DEV = layout.SessionRef("team-a-dev", "notebook", "session_2026-11-20_09-00-00_000000_2")
B = layout.SessionRef("team-b", "etl", "session_2026-11-20_10-00-00_000000_3")
SESSIONS = (A, A_DEV, B)

ALICE = "alice-0f4c2d9a7b31e6c8d5f0a9b2"  # kept as its SHA-256 in the file
BOB = "bob-plain-token-7d1e9c3a"  # a plain token, as for local use
ADMIN = "admin-5e8b1c7d2f9a4e6b3c0d"
EVE = "eve-sees-nothing-91b3c5d7"  # a user with no namespace at all
TOKENS = {"alice": ALICE, "bob": BOB, "admin": ADMIN, "eve": EVE}
# What each identity may see.
SEES = {
    "alice": {A, A_DEV},  # team-a and team-a-*
    "bob": {B},
    "admin": set(SESSIONS),
    "eve": set(),
    "carol": {B},  # proxy user in group b-readers
    "dave": {A, A_DEV},  # proxy user: group a-readers (team-a) and the user entry of his name (team-a-dev)
}
PROXY_GROUPS = {"carol": "b-readers,unknown-group", "dave": "a-readers"}
TRUSTED_PROXY = "127.0.0.1"


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


AUTH_FILE = f"""
[[users]]
name = "alice"
token_sha256 = "{sha(ALICE)}"
namespaces = ["team-a", "team-a-*"]

[[users]]
name = "bob"
token = "{BOB}"
namespaces = ["team-b"]

[[users]]
name = "admin"
token_sha256 = "{sha(ADMIN)}"
namespaces = ["*"]

[[users]]
name = "eve"
token = "{EVE}"
namespaces = []

[[users]]
name = "dave"                # no token: reachable through the proxy only
namespaces = ["team-a-dev"]

[proxy]
trusted = ["{TRUSTED_PROXY}/32", "::1/128"]

[[groups]]
name = "a-readers"
namespaces = ["team-a"]

[[groups]]
name = "b-readers"
namespaces = ["team-b"]
"""


def build_archive(root: Path) -> Path:
    storage = open_storage(str(root / "archive"))
    for seed, ref in enumerate(SESSIONS, start=1):
        write_session(storage, ref, 300, seed=seed, nodes=2, start_ms=1_795_600_000_000 + seed * 3_600_000,
                      duration_s=60, logs=True, metrics=True)  # fmt: skip
    return root / "archive"


def access_settings(root: Path, metrics_public: bool = True) -> AccessSettings:
    path = root / "auth.toml"
    path.write_text(AUTH_FILE)
    return AccessSettings(load_auth_file(path), metrics_public)


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name]}"}


def proxied(name: str) -> dict[str, str]:
    return {"X-Forwarded-User": name, "X-Forwarded-Groups": PROXY_GROUPS.get(name, "")}


def not_found(ref: layout.SessionRef) -> dict[str, str]:
    """What every per-session URL answers for a session not there, or not there for the viewer."""
    return {"error": unknown_session(ref.namespace, ref.cluster, ref.session)}


def wait_indexed(client: TestClient, headers: dict[str, str], sessions: int, timeout_s: float = 120) -> None:
    """Until the background job index has read every session (so the job search and SQL see all of them)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        answer = client.get("/api/v1/jobs", headers=headers).json()
        if answer["sessions_indexed"] >= sessions and answer["sessions_pending"] == 0:
            return
        time.sleep(0.2)
    raise AssertionError(f"the job index did not read {sessions} sessions in {timeout_s} s: {answer}")
