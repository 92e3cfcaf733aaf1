"""The auth file (historyserver.authfile) and the identities made from it (historyserver.identity): every
mistake named with its line and key and never the token, globs, the proxy's addresses, logins that expire."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import click
import pytest

from historyserver.access import EVERYONE, NOBODY, Viewer
from historyserver.authfile import AuthFileError, load_auth_file, parse_auth
from historyserver.identity import MAX_LOGINS, Authenticator, Logins, Presented
from ray_history.access_options import collector_token, is_loopback, server_access

TOKEN = "t" * 16 + "-plain"
GOOD = f"""
[[users]]
name = "alice"
token_sha256 = "{hashlib.sha256(b"alice-secret-0123456789").hexdigest()}"
namespaces = ["team-a", "team-a-*"]

[[users]]
name = "bob"
token = "{TOKEN}"
namespaces = ["team-[bc]", "?x"]

[proxy]
trusted = ["10.0.0.0/8", "fd00::/8", "192.0.2.7"]
user_header = "X-Auth-Request-User"
groups_header = "X-Auth-Request-Groups"
groups_separator = "|"

[[groups]]
name = "ml"
namespaces = ["ml-*"]

[login]
hours = 0.5
"""


def test_a_good_file_reads_as_written(tmp_path: Path) -> None:
    path = tmp_path / "auth.toml"
    path.write_text(GOOD)
    auth = load_auth_file(path)
    assert [user.name for user in auth.users] == ["alice", "bob"]
    assert auth.users[1].digest == hashlib.sha256(TOKEN.encode()).digest()
    assert auth.proxy is not None and auth.proxy.user_header == "X-Auth-Request-User"
    assert auth.proxy.groups_separator == "|" and auth.login_hours == 0.5 and auth.source == str(path)
    for address, trusted in (("10.1.2.3", True), ("::ffff:10.1.2.3", True), ("fd00::1", True),
                             ("192.0.2.7", True), ("192.0.2.8", False), ("127.0.0.1", False), (None, False),
                             ("testclient", False)):  # fmt: skip
        assert auth.proxy.trusts(address) is trusted, address


def test_namespace_patterns_are_globs_matched_with_case() -> None:
    viewer = Viewer("bob", ("team-[bc]", "?x", "ml-*"))
    assert [name for name in ("team-b", "team-c", "team-d", "ax", "xx", "abx", "ml-", "ml-prod", "ML-prod", "team-B")
            if viewer.allows(name)] == ["team-b", "team-c", "ax", "xx", "ml-", "ml-prod"]  # fmt: skip
    assert not viewer.sees_all and EVERYONE.sees_all and not NOBODY.allows("default")
    assert viewer.visible(["team-b", "team-d", "xx"]) == {"team-b", "xx"}


BAD: list[tuple[str, str]] = [
    ("[[users]\nname = 1", "not valid TOML"),
    ("", "no [[users]] and no [proxy]: nobody could sign in"),
    (
        '[[users]]\nname = "a"\ntoken = "0123456789abcdef"\nnamespace = ["x"]',
        "line 4: user 1 namespace: unknown key; use name, token, token_sha256, namespaces",
    ),
    ('[[users]]\nname = "a"\ntoken = "0123456789abcdef"', "line 1: user 1 namespaces: missing"),
    (
        '[[users]]\nname = "a"\ntoken = "short-secret"\nnamespaces = []',
        "line 3: user 1 token: must be a string of at least 16 characters",
    ),
    (
        '[[users]]\nname = "a"\ntoken_sha256 = "0123456789abcdef-not-hex"\nnamespaces = []',
        "line 3: user 1 token_sha256: must be 64 hex digits",
    ),
    (
        '[[users]]\nname = "a"\ntoken = "0123456789abcdef"\ntoken_sha256 = "00"\nnamespaces = []',
        "user 1 token: give token or token_sha256, not both",
    ),
    ('[[users]]\nname = "a"\nnamespaces = []', "user 1: 'a' has neither token nor token_sha256"),
    (
        '[[users]]\nname = "a"\ntoken = "0123456789abcdef"\nnamespaces = ["team a"]',
        "line 4: user 1 namespaces: 'team a' is not a namespace pattern",
    ),
    (
        '[[users]]\nname = "a"\ntoken = "0123456789abcdef"\nnamespaces = "team-a"',
        "user 1 namespaces: must be a list of strings",
    ),
    (
        '[[users]]\nname = "a"\ntoken = "0123456789abcdef"\nnamespaces = []\n\n[[users]]\nname = "a"\n'
        'token = "0123456789abcdeX"\nnamespaces = []',
        "line 7: user 2 name: the same name as entry 1",
    ),
    (
        '[[users]]\nname = "a"\ntoken = "0123456789abcdef"\nnamespaces = []\n\n[[users]]\nname = "b"\n'
        'token = "0123456789abcdef"\nnamespaces = []',
        "line 8: user 2 token: the same token as entry 1",
    ),
    (
        '[[users]]\nname = "a"\ntoken = "0123456789abcdef"\nnamespaces = []\n[[groups]]\nname = "g"\nnamespaces = []',
        "groups come from the proxy's header: add a [proxy] section",
    ),
    ('[proxy]\ntrusted = ["10.0.0.300/8"]', "line 2: [proxy] trusted: '10.0.0.300/8' is not an address or CIDR"),
    ("[proxy]\ntrusted = []", "[proxy] trusted: the proxy's addresses are needed"),
    ('[proxy]\ntrusted = ["10.0.0.0/8"]\nuser_header = "X User"', "line 3: [proxy] user_header: must be an HTTP"),
    ('[proxy]\ntrusted = ["10.0.0.0/8"]\n[login]\nhours = 0', "line 4: [login] hours: must be a number of hours"),
    ('[proxy]\ntrusted = ["10.0.0.0/8"]\nsecret = 1', "line 3: [proxy] secret: unknown key"),
    ('users = "alice"', "top level users: must be tables: write each entry as [[users]]"),
    ("[ldap]\nurl = 1", "top level ldap: unknown key; use users, groups, proxy, login"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_every_mistake_says_where_and_what(text: str, message: str) -> None:
    with pytest.raises(AuthFileError) as raised:
        parse_auth(text, "auth.toml")
    assert str(raised.value).startswith("auth.toml")
    assert message in str(raised.value)
    for secret in ("0123456789abcdef", "short-secret", "0123456789abcdef-not-hex"):
        assert f"{secret}'" not in str(raised.value) and f'"{secret}"' not in str(raised.value)


def test_an_unreadable_file_is_said_so(tmp_path: Path) -> None:
    with pytest.raises(AuthFileError, match=r"cannot read the auth file .*missing\.toml"):
        load_auth_file(tmp_path / "missing.toml")


def headers_of(values: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    lowered = {name.lower(): found for name, found in values.items()}
    return lambda name: lowered.get(name.lower(), [])


def test_identities_from_the_proxy_a_token_and_a_login() -> None:
    auth = parse_auth(GOOD + '\n[[users]]\nname = "carol"\nnamespaces = ["solo"]\n')
    now = [1000.0]
    authenticator = Authenticator(auth, clock=lambda: now[0])
    proxied = headers_of({"X-Auth-Request-User": ["carol"], "X-Auth-Request-Groups": ["ml| other |"]})
    found = authenticator.identify(Presented("10.9.9.9", proxied))
    assert found.viewer == Viewer("carol", ("ml-*", "solo"), "proxy", ("ml", "other"))
    # The same headers from elsewhere are nobody's, and said so.
    found = authenticator.identify(Presented("192.0.2.99", proxied))
    assert found.viewer is None and found.problem == "no_credentials" and found.ignored_proxy_headers
    found = authenticator.identify(Presented("192.0.2.99", proxied, bearer=TOKEN))
    assert found.viewer == Viewer("bob", ("team-[bc]", "?x"), "token") and found.ignored_proxy_headers
    assert authenticator.identify(Presented(None, headers_of({}), bearer="nope")).problem == "bad_token"
    # The user entry without a token is the proxy's only: no token and no login reaches it.
    assert authenticator.sign_in("") is None and authenticator.sign_in("carol") is None
    reference, user = authenticator.sign_in("alice-secret-0123456789") or ("", None)
    assert user is not None and user.name == "alice"
    found = authenticator.identify(Presented(None, headers_of({}), login=reference))
    assert found.viewer == Viewer("alice", ("team-a", "team-a-*"), "login")
    now[0] += 0.5 * 3600  # the file's [login] hours = 0.5
    found = authenticator.identify(Presented(None, headers_of({}), login=reference))
    assert found.viewer is None and found.problem == "ended_login" and len(authenticator.logins) == 0


def test_logins_are_bounded_and_kept_by_digest() -> None:
    logins = Logins(3600, clock=lambda: 0.0)
    first = logins.start("a")
    references = [logins.start("b") for _ in range(MAX_LOGINS)]
    assert len(logins) == MAX_LOGINS and logins.user_of(first) is None and logins.user_of(references[-1]) == "b"
    assert all(reference not in key for key in logins._known for reference in references[-3:])
    logins.end(references[-1])
    assert logins.user_of(references[-1]) is None


LOOPBACK = ("127.0.0.1", "127.8.0.1", "::1", "[::1]", "localhost")
REACHABLE = ("0.0.0.0", "", "::", "10.0.0.1", "history.example")


def test_the_command_line_warns_for_a_server_or_collector_anyone_can_use(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert all(is_loopback(host) for host in LOOPBACK) and not any(is_loopback(host) for host in REACHABLE)
    with caplog.at_level(logging.WARNING, logger="ray_history"):
        assert server_access(None, True, "127.0.0.1").auth is None
        assert collector_token(None, None, "127.0.0.1") is None
        assert not caplog.records
        server_access(None, True, "0.0.0.0")
        collector_token(None, None, "0.0.0.0")
    assert [record.getMessage()[:40] for record in caplog.records] == [
        "NO AUTHENTICATION: the history server li",
        "the collector listens on 0.0.0.0, beyond",
    ]
    path = tmp_path / "auth.toml"
    path.write_text(GOOD)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ray_history"):
        assert server_access(path, False, "0.0.0.0").auth is not None
        assert collector_token(None, TOKEN, "0.0.0.0") == hashlib.sha256(TOKEN.encode()).digest()
    assert not caplog.records
    path.write_text("[[users]]\n")
    with pytest.raises(click.ClickException, match=r"auth\.toml: line 1: user 1 name: a non-empty string is needed"):
        server_access(path, True, "127.0.0.1")


def test_a_login_the_archive_cannot_take_still_holds_on_its_replica(tmp_path: Path) -> None:
    from archive.storage import open_storage

    (tmp_path / "archive").mkdir()
    (tmp_path / "archive" / "logins").write_text("a file where the folder of login records would be")
    store = open_storage(str(tmp_path / "archive"))
    here, elsewhere = Logins(3600, store=store, secret=b"k"), Logins(3600, store=store, secret=b"k")
    reference = here.start("alice")
    assert here.user_of(reference) == "alice"
    assert elsewhere.user_of(reference) is None
