"""Who a request comes from, under an auth file (historyserver.authfile): an authenticating proxy's headers
(from a trusted address only), a bearer token, or a browser's login. The web layer (historyserver.login) asks;
nothing here knows HTTP beyond header values.

Tokens are never kept: a user's token is known by its SHA-256, and a presented token is hashed and compared
with every user's digest in constant time. A browser's login is a random reference (the cookie's only content)
to a record kept by the server (`Logins`: in memory, and in the archive for every replica), under the
reference's digest; it expires, and signing out ends it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from archive import layout
from archive.storage import ObjectNotFound, Storage, StorageError

from .access import Viewer
from .authfile import AuthConfig, User, token_digest

log = logging.getLogger(__name__)

# Why a request has no viewer: nothing presented, a token no user has, or a login that ended or expired.
Problem = Literal["no_credentials", "bad_token", "ended_login"]
# Logins kept in memory at most; past it the oldest goes (every login needs a valid token, so this bounds memory
# against a script signing in in a loop, not against strangers). Older ones are read from the archive again.
MAX_LOGINS = 10_000
# How long a replica believes a login it read from the archive (signing out elsewhere takes this long to reach
# it), and that a reference is no login (a cookie left from an older login is not looked up on every request).
REVALIDATE_S = 30.0
ABSENT_S = 10.0
# How often (at most) a replica that signs someone in deletes the archive's records of logins long expired.
PRUNE_EVERY_S = 3600.0


@dataclass(frozen=True)
class Presented:
    """What a request carries that can identify it."""

    peer: str | None  # the connection's address
    headers: Callable[[str], list[str]]  # every value of a header (case-insensitive name)
    bearer: str | None = None
    login: str | None = None  # the login cookie's reference


@dataclass(frozen=True)
class Identified:
    viewer: Viewer | None
    problem: Problem | None = None
    ignored_proxy_headers: bool = False  # proxy headers came from an address not trusted: ignored


class Authenticator:
    def __init__(
        self, config: AuthConfig, store: Storage | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self.logins = Logins(config.login_hours * 3600, clock, store, config.secret)
        self._digests = [(user.digest, user) for user in config.users if user.digest is not None]

    def identify(self, presented: Presented) -> Identified:
        """The viewer: the proxy's user (from a trusted peer), else the bearer token's, else the login's."""
        ignored = False
        proxy = self.config.proxy
        if proxy is not None:
            names = [value.strip() for value in presented.headers(proxy.user_header)]
            # One user, from the proxy's own connection: anyone can send these headers, and a proxy sets the
            # header rather than adding to one a client sent, so two of them are not the proxy's doing.
            if len(names) == 1 and names[0] and proxy.trusts(presented.peer):
                groups = _values(presented.headers(proxy.groups_header), proxy.groups_separator)
                return Identified(self.proxy_viewer(names[0], groups))
            ignored = bool(names or presented.headers(proxy.groups_header))
        if presented.bearer is not None:
            user = self.user_of_token(presented.bearer)
            if user is None:
                return Identified(None, "bad_token", ignored)
            return Identified(_viewer(user, "token"), None, ignored)
        if presented.login is not None:
            name = self.logins.user_of(presented.login)
            user = self.config.by_name.get(name) if name is not None else None
            if user is None or user.digest is None:
                return Identified(None, "ended_login", ignored)
            return Identified(_viewer(user, "login"), None, ignored)
        return Identified(None, "no_credentials", ignored)

    def user_of_token(self, token: str) -> User | None:
        """The user whose token this is. Every digest is compared, whichever matches, in constant time each."""
        digest = token_digest(token)
        found = None
        for known, user in self._digests:
            if hmac.compare_digest(known, digest):
                found = user
        return found

    def proxy_viewer(self, name: str, groups: Iterable[str]) -> Viewer:
        """A proxy user sees the namespaces of each of their groups, and of the user entry of their name."""
        member_of = tuple(dict.fromkeys(groups))
        patterns = [pattern for group in self.config.groups if group.name in member_of for pattern in group.namespaces]
        user = self.config.by_name.get(name)
        if user is not None:
            patterns += user.namespaces
        return Viewer(name, tuple(dict.fromkeys(patterns)), "proxy", member_of)

    def sign_in(self, token: str) -> tuple[str, User] | None:
        """A new login for the token's user: (the cookie's reference, the user); None for a token no user has."""
        user = self.user_of_token(token)
        if user is None:
            return None
        return self.logins.start(user.name), user


def _viewer(user: User, via: Literal["token", "login"]) -> Viewer:
    return Viewer(user.name, user.namespaces, via)


def _values(headers: list[str], separator: str) -> list[str]:
    """A header's values, split and stripped, empty ones left out (a header given twice counts as both)."""
    return [part.strip() for value in headers for part in value.split(separator) if part.strip()]


class Logins:
    """Browsers' logins: a random reference (the cookie's only content) → user and expiry.

    With an archive (`store`), a login is also a small record there, under the reference's digest and signed
    with the auth file's secret, so every replica of the server knows every login and a login survives a restart.
    Each replica keeps what it has read for a while (REVALIDATE_S): signing out on one replica reaches the others
    within that time. Without one, logins live in this process only.
    """

    def __init__(self, lifetime_s: float, clock: Callable[[], float] = time.time, store: Storage | None = None,
                 secret: bytes = b"") -> None:  # fmt: skip
        self.lifetime_s = lifetime_s
        self._clock = clock
        self._store = store
        self._secret = secret
        self._lock = threading.Lock()
        # digest → (user, expires at, when it was last read from the archive); oldest first
        self._known: OrderedDict[str, tuple[str, float, float]] = OrderedDict()
        self._absent: OrderedDict[str, float] = OrderedDict()  # digest → until when "not a login" is believed
        self._pruned_at = 0.0

    def start(self, user: str) -> str:
        reference = secrets.token_urlsafe(32)
        digest, now = _digest(reference), self._clock()
        expires = now + self.lifetime_s
        confirmed = now
        if self._store is not None:
            try:
                self._store.put(layout.login_key(digest), self._record(digest, user, expires))
            except StorageError as exc:
                # Signing in still works on this replica (its record is never read again): only the others
                # will not know this login.
                log.warning("a login could not be written to the archive, so only this replica knows it: %s", exc)
                confirmed = math.inf
            else:
                self._prune(now)
        with self._lock:
            self._remember(digest, user, expires, confirmed)
        return reference

    def user_of(self, reference: str) -> str | None:
        """The user of a login still running; None for one that expired, ended or never was. A StorageError when
        the archive cannot say and this replica has not seen the login lately."""
        digest, now = _digest(reference), self._clock()
        with self._lock:
            known = self._known.get(digest)
            if known is not None and known[1] <= now:
                self._known.pop(digest, None)
                return None
            if known is not None and (self._store is None or now - known[2] < REVALIDATE_S):
                return known[0]
            if self._store is None or self._absent.get(digest, 0.0) > now:
                return None
        try:
            read = self._read(digest)
        except StorageError:
            if known is not None:  # seen lately: the store's outage does not sign anyone out
                return known[0]
            raise
        with self._lock:
            if read is None or read[1] <= now:
                self._known.pop(digest, None)
                self._absent[digest] = now + ABSENT_S
                while len(self._absent) > MAX_LOGINS:
                    self._absent.popitem(last=False)
                return None
            self._remember(digest, read[0], read[1], now)
            return read[0]

    def end(self, reference: str) -> None:
        digest = _digest(reference)
        with self._lock:
            self._known.pop(digest, None)
        if self._store is not None:
            try:
                self._store.delete(layout.login_key(digest))
            except ObjectNotFound:
                pass
            except StorageError as exc:
                # The cookie is gone from the browser anyway; the record expires with the login.
                log.warning("could not delete a login record (it expires on its own): %s", exc)

    def __len__(self) -> int:
        with self._lock:
            return len(self._known)

    def _remember(self, digest: str, user: str, expires: float, confirmed: float) -> None:
        """Keep a login, read from the archive (or written) at `confirmed`: infinity for one only this replica has."""
        self._known[digest] = (user, expires, confirmed)
        self._known.move_to_end(digest)
        self._absent.pop(digest, None)
        while len(self._known) > MAX_LOGINS:
            self._known.popitem(last=False)

    def _record(self, digest: str, user: str, expires: float) -> bytes:
        expires_ms = int(expires * 1000)
        return json.dumps({"user": user, "expires_ms": expires_ms,
                           "mac": self._mac(digest, user, expires_ms)}).encode()  # fmt: skip

    def _mac(self, digest: str, user: str, expires_ms: int) -> str:
        return hmac.new(self._secret, f"{digest}\0{user}\0{expires_ms}".encode(), hashlib.sha256).hexdigest()

    def _read(self, digest: str) -> tuple[str, float] | None:
        """The archive's record of this login, if there is one and this file's secret signed it."""
        assert self._store is not None
        try:
            record = json.loads(self._store.get(layout.login_key(digest)))
            user, expires_ms, mac = record["user"], int(record["expires_ms"]), str(record["mac"])
        except ObjectNotFound:
            return None
        except (ValueError, KeyError, TypeError):
            return None  # not a record this server wrote
        if not isinstance(user, str) or not hmac.compare_digest(mac, self._mac(digest, user, expires_ms)):
            return None  # written by someone without the auth file (or under another one): not a login
        return user, expires_ms / 1000

    def _prune(self, now: float) -> None:
        """Now and then, the records of logins long expired go (a login's record is never older than its lifetime)."""
        assert self._store is not None
        if now - self._pruned_at < PRUNE_EVERY_S:
            return
        self._pruned_at = now
        try:
            for info in self._store.list(layout.LOGINS_PREFIX):
                if info.mtime_ns / 1e9 + self.lifetime_s < now:
                    self._store.delete(info.key)
        except StorageError as exc:
            log.debug("could not prune expired login records (next time): %s", exc)


def _digest(reference: str) -> str:
    return hashlib.sha256(reference.encode()).hexdigest()
