"""The auth file of `ray-history serve --auth-file FILE`: who may sign in and which namespaces each may see.

    [[users]]                        # a bearer token (or the browser's login with it)
    name = "alice"
    token_sha256 = "9f86d081..."     # hex SHA-256 of the token: `printf %s "$TOKEN" | sha256sum`
    namespaces = ["team-a", "team-a-*"]

    [[users]]
    name = "laptop"
    token = "a plain token, at least 16 characters"   # accepted for local use; prefer token_sha256
    namespaces = ["*"]

    [proxy]                          # identity from an authenticating proxy (oauth2-proxy)
    trusted = ["10.0.0.0/8"]         # the proxy's addresses: its headers are ignored from any other
    user_header = "X-Forwarded-User"         # the defaults
    groups_header = "X-Forwarded-Groups"
    groups_separator = ","

    [[groups]]                       # a proxy user sees the namespaces of each of their groups
    name = "team-b"
    namespaces = ["team-b*"]

    [login]
    hours = 12                       # how long a browser's login lasts

A proxy user also sees the namespaces of a `[[users]]` entry of the same name (one with no token is only
reachable through the proxy). Namespace patterns are shell globs (`*`, `?`, `[...]`), matched with case.
Every mistake is an AuthFileError naming the file, the line and the key; a token is never repeated in one.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_USER_HEADER = "X-Forwarded-User"
DEFAULT_GROUPS_HEADER = "X-Forwarded-Groups"
DEFAULT_LOGIN_HOURS = 12.0
# A plain token shorter than this is refused: it could be guessed. A digest's token cannot be checked.
MIN_TOKEN_CHARS = 16

_TOP_KEYS = ("users", "groups", "proxy", "login")
_USER_KEYS = ("name", "token", "token_sha256", "namespaces")
_GROUP_KEYS = ("name", "namespaces")
_PROXY_KEYS = ("trusted", "user_header", "groups_header", "groups_separator")
_LOGIN_KEYS = ("hours",)
_HEX_DIGEST = re.compile(r"^[0-9a-fA-F]{64}$")
# What a namespace name can hold (archive.layout) plus the glob characters.
_PATTERN = re.compile(r"^[A-Za-z0-9._:*?\[\]!-]+$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]+$")


class AuthFileError(ValueError):
    """An auth file that cannot be used: the message says where (file, line, key) and what is expected."""


@dataclass(frozen=True)
class User:
    name: str
    digest: bytes | None  # SHA-256 of the token; None: reachable only through the proxy
    namespaces: tuple[str, ...]


@dataclass(frozen=True)
class Group:
    name: str
    namespaces: tuple[str, ...]


@dataclass(frozen=True)
class ProxySettings:
    trusted: tuple[IPNetwork, ...]
    user_header: str = DEFAULT_USER_HEADER
    groups_header: str = DEFAULT_GROUPS_HEADER
    groups_separator: str = ","

    def trusts(self, address: str | None) -> bool:
        """Whether a connection from `address` (the peer, as the socket has it) is the proxy."""
        try:
            peer = ipaddress.ip_address(address or "")
        except ValueError:  # no address, or a name (an in-process test client)
            return False
        if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped is not None:
            peer = peer.ipv4_mapped  # ::ffff:10.0.0.5 on a dual-stack socket is 10.0.0.5
        return any(peer in network for network in self.trusted)


@dataclass(frozen=True)
class AuthConfig:
    users: tuple[User, ...] = ()
    groups: tuple[Group, ...] = ()
    proxy: ProxySettings | None = None
    login_hours: float = DEFAULT_LOGIN_HOURS
    source: str = "auth settings"
    # Signs the login records replicas share through the archive (historyserver.identity): derived from the whole
    # file, which only the servers have, so a login record nobody signed with it is refused, and a new file ends
    # every login.
    secret: bytes = b""
    by_name: dict[str, User] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.by_name.update({user.name: user for user in self.users})

    @property
    def has_tokens(self) -> bool:
        return any(user.digest is not None for user in self.users)


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def load_auth_file(path: Path | str) -> AuthConfig:
    """The auth file's settings; AuthFileError says what is wrong and where."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise AuthFileError(f"cannot read the auth file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise AuthFileError(f"{path}: not UTF-8 text: {exc}") from exc
    return parse_auth(text, str(path))


def parse_auth(text: str, source: str = "auth file") -> AuthConfig:
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AuthFileError(f"{source}: not valid TOML: {exc}") from exc
    return _Reader(source, text).config(table)


class _Reader:
    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self.text = text
        self.lines = _Lines(text)

    def fail(self, where: tuple[str, int], key: str | None, message: str) -> AuthFileError:
        section, index = where
        line = self.lines.find(section, index, key)
        place = {"users": f"user {index + 1}", "groups": f"group {index + 1}"}.get(section, f"[{section}]")
        if not section:
            place = "top level"
        return AuthFileError(f"{self.source}" + (f": line {line}" if line else "") + f": {place}"
                             + (f" {key}" if key else "") + f": {message}")  # fmt: skip

    def config(self, table: dict[str, Any]) -> AuthConfig:
        self.keys(table, ("", 0), _TOP_KEYS)
        users = tuple(self.user(index, raw) for index, raw in enumerate(self.entries(table, "users")))
        groups = tuple(self.group(index, raw) for index, raw in enumerate(self.entries(table, "groups")))
        proxy = self.proxy(table["proxy"]) if "proxy" in table else None
        hours = self.login(table.get("login", {}))
        self.unique(users, "users", "name", lambda user: user.name)
        self.unique(groups, "groups", "name", lambda group: group.name)
        self.unique(users, "users", "token", lambda user: user.digest)
        if not users and proxy is None:
            raise self.fail(("", 0), None, "no [[users]] and no [proxy]: nobody could sign in")
        if groups and proxy is None:
            raise self.fail(("groups", 0), None, "groups come from the proxy's header: add a [proxy] section")
        for index, user in enumerate(users):
            if user.digest is None and proxy is None:
                raise self.fail(("users", index), None, f"{user.name!r} has neither token nor token_sha256 "
                                "(without a [proxy], a user signs in with a token)")  # fmt: skip
        secret = hashlib.sha256(b"ray-history login records\0" + self.text.encode()).digest()
        return AuthConfig(users, groups, proxy, hours, self.source, secret)

    def entries(self, table: dict[str, Any], name: str) -> list[dict[str, Any]]:
        raw = table.get(name, [])
        if not isinstance(raw, list) or not all(isinstance(entry, dict) for entry in raw):
            raise self.fail(("", 0), name, f"must be tables: write each entry as [[{name}]]")
        return raw

    def keys(self, table: dict[str, Any], where: tuple[str, int], allowed: tuple[str, ...]) -> None:
        for key in table:
            if key not in allowed:
                raise self.fail(where, key, f"unknown key; use {', '.join(allowed)}")

    def user(self, index: int, raw: dict[str, Any]) -> User:
        where = ("users", index)
        self.keys(raw, where, _USER_KEYS)
        name = self.name(raw, where)
        if "token" in raw and "token_sha256" in raw:
            raise self.fail(where, "token", "give token or token_sha256, not both")
        digest = None
        if "token_sha256" in raw:
            value = raw["token_sha256"]
            if not isinstance(value, str) or not _HEX_DIGEST.match(value):
                # The value is not repeated: it might be a token pasted in the wrong key.
                raise self.fail(where, "token_sha256", "must be 64 hex digits, the SHA-256 of the token "
                                "(printf %s \"$TOKEN\" | sha256sum)")  # fmt: skip
            digest = bytes.fromhex(value)
        elif "token" in raw:
            token = raw["token"]
            if not isinstance(token, str) or len(token.strip()) < MIN_TOKEN_CHARS or token != token.strip():
                raise self.fail(where, "token", f"must be a string of at least {MIN_TOKEN_CHARS} characters, "
                                "without spaces at either end (e.g. openssl rand -hex 32)")  # fmt: skip
            digest = token_digest(token)
        return User(name, digest, self.patterns(raw, where))

    def group(self, index: int, raw: dict[str, Any]) -> Group:
        where = ("groups", index)
        self.keys(raw, where, _GROUP_KEYS)
        return Group(self.name(raw, where), self.patterns(raw, where))

    def name(self, raw: dict[str, Any], where: tuple[str, int]) -> str:
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip():
            raise self.fail(where, "name", "a non-empty string is needed")
        return name

    def patterns(self, raw: dict[str, Any], where: tuple[str, int]) -> tuple[str, ...]:
        if "namespaces" not in raw:
            raise self.fail(where, "namespaces", 'missing: a list of namespace patterns, e.g. ["team-a*"]')
        value = raw["namespaces"]
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self.fail(where, "namespaces", 'must be a list of strings, e.g. ["team-a", "team-a-*"]')
        for pattern in value:
            if not _PATTERN.match(pattern):
                raise self.fail(where, "namespaces", f"{pattern!r} is not a namespace pattern: letters, digits, "
                                "'.', '_', ':', '-' and the globs *, ?, [...]")  # fmt: skip
        return tuple(value)

    def proxy(self, raw: Any) -> ProxySettings:
        where = ("proxy", 0)
        if not isinstance(raw, dict):
            raise self.fail(("", 0), "proxy", "must be a table: [proxy]")
        self.keys(raw, where, _PROXY_KEYS)
        trusted = raw.get("trusted")
        if not isinstance(trusted, list) or not trusted or not all(isinstance(item, str) for item in trusted):
            raise self.fail(where, "trusted", 'the proxy\'s addresses are needed, as CIDRs: ["10.0.0.0/8"]')
        networks = []
        for item in trusted:
            try:
                networks.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError as exc:
                raise self.fail(where, "trusted", f"{item!r} is not an address or CIDR: {exc}") from None
        headers = {}
        for key, default in (("user_header", DEFAULT_USER_HEADER), ("groups_header", DEFAULT_GROUPS_HEADER)):
            header = raw.get(key, default)
            if not isinstance(header, str) or not _HEADER_NAME.match(header):
                raise self.fail(where, key, "must be an HTTP header name such as " + default)
            headers[key] = header
        separator = raw.get("groups_separator", ",")
        if not isinstance(separator, str) or not separator:
            raise self.fail(where, "groups_separator", 'must be a non-empty string, e.g. "," or "|"')
        return ProxySettings(tuple(networks), headers["user_header"], headers["groups_header"], separator)

    def login(self, raw: Any) -> float:
        where = ("login", 0)
        if not isinstance(raw, dict):
            raise self.fail(("", 0), "login", "must be a table: [login]")
        self.keys(raw, where, _LOGIN_KEYS)
        hours = raw.get("hours", DEFAULT_LOGIN_HOURS)
        if isinstance(hours, bool) or not isinstance(hours, int | float) or not 0 < hours <= 24 * 90:
            raise self.fail(where, "hours", "must be a number of hours, more than 0 and at most 2160 (90 days)")
        return float(hours)

    def unique(self, items: Any, section: str, key: str, value_of: Any) -> None:
        seen: dict[Any, int] = {}
        for index, item in enumerate(items):
            value = value_of(item)
            if value is None:  # a user without a token shares nothing
                continue
            if value in seen:
                what = "the same token as" if key == "token" else "the same name as"
                raise self.fail((section, index), key, f"{what} entry {seen[value] + 1}")
            seen[value] = index


class _Lines:
    """Where each entry and key was written (tomllib gives no positions), for the error messages."""

    _HEADER = re.compile(r"^\s*\[(\[)?\s*([A-Za-z0-9_.-]+)\s*\]\]?\s*(#.*)?$")
    _KEY = re.compile(r"^\s*\"?([A-Za-z0-9_-]+)\"?\s*=")

    def __init__(self, text: str) -> None:
        self.lines: dict[tuple[str, int, str | None], int] = {}
        section, counts = "", {"users": -1, "groups": -1}
        index = 0
        for number, line in enumerate(text.splitlines(), start=1):
            header = self._HEADER.match(line)
            if header:
                section = header[2]
                if header[1] and section in counts:
                    counts[section] += 1
                index = counts.get(section, 0)
                self.lines.setdefault((section, index, None), number)
                continue
            key = self._KEY.match(line)
            if key:
                self.lines.setdefault((section, index, key[1]), number)

    def find(self, section: str, index: int, key: str | None) -> int | None:
        return self.lines.get((section, index, key)) or self.lines.get((section, index, None))
