"""Who may see what: a `Viewer` is the identity of a request and the namespaces it may see, as glob patterns.

One rule everywhere: what a viewer may not see does not exist for them. The web layer (historyserver.login)
works out the viewer of each request once and keeps it on the request; the read layer takes it as an argument
(`HistoryServer.session_row` and `open`, the catalog's and the job index's `namespaces` filter, the SQL views),
and answers a session of a namespace the viewer may not see exactly as it answers a session that is not in the
archive. Trusted local callers (the `ray-history sql` command, the background job index, benchmarks) use
`EVERYONE`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from fastapi import Request

# How the identity was established: no authentication configured, a bearer token, the browser's login
# (a cookie naming a server-side login), or an authenticating proxy's headers.
Via = Literal["open", "token", "login", "proxy"]


@dataclass(frozen=True)
class Viewer:
    name: str
    patterns: tuple[str, ...]  # fnmatch globs over namespace names, matched case-sensitively
    via: Via = "token"
    groups: tuple[str, ...] = ()  # the proxy's groups, for the page header and the log

    def allows(self, namespace: str) -> bool:
        return any(fnmatch.fnmatchcase(namespace, pattern) for pattern in self.patterns)

    @property
    def sees_all(self) -> bool:
        """Whether nothing needs filtering (a '*' pattern matches every name a namespace can have)."""
        return "*" in self.patterns

    def visible(self, namespaces: Iterable[str]) -> frozenset[str]:
        """Those of `namespaces` this viewer may see."""
        return frozenset(namespace for namespace in namespaces if self.allows(namespace))


# No authentication configured (the server as it always was), and the trusted local callers.
EVERYONE = Viewer("", ("*",), "open")
# What a request without a viewer gets: nothing. Only a route the authentication middleware never saw can
# lack one, and that must fail closed.
NOBODY = Viewer("", (), "open")


def viewer_of(request: Request) -> Viewer:
    """The viewer the authentication middleware put on this request."""
    viewer = getattr(request.state, "viewer", None)
    return viewer if isinstance(viewer, Viewer) else NOBODY


def unknown_session(namespace: str, cluster: str, session: str) -> str:
    """The one message for a session that is not there, or not there for this viewer: no hint which."""
    return f"no session {namespace}/{cluster}/{session} in the archive"
