"""The command line's side of who may reach what: `serve --auth-file`, `--metrics-private`, `collect --token-file`,
and the warnings for a server or a collector that anyone who reaches it may use."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:  # imported when used: `collect` needs none of the server
    from historyserver.login import AccessSettings

log = logging.getLogger("ray_history")

OPEN_SERVER = (
    "NO AUTHENTICATION: the history server listens on %s, beyond loopback, and every one who can reach it reads "
    "every namespace's sessions, logs, metrics and SQL. Give it --auth-file (RAY_HISTORY_AUTH_FILE; docs/auth.md), "
    "or listen on 127.0.0.1 behind something that authenticates."
)
OPEN_COLLECTOR = (
    "the collector listens on %s, beyond loopback, with no token: anything that reaches it can add events to the "
    "archive (--token-file or RAY_HISTORY_COLLECTOR_TOKEN; docs/auth.md)"
)


def is_loopback(host: str) -> bool:
    """Whether only this machine can connect to `host`; a name other than localhost counts as reachable."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def server_access(auth_file: Path | None, metrics_public: bool, host: str) -> AccessSettings:
    """The server's AccessSettings from its flags (a bad auth file is a ClickException naming what is wrong);
    warns loudly when nothing authenticates and the server is reachable from other machines."""
    from historyserver.authfile import AuthFileError, load_auth_file
    from historyserver.login import AccessSettings

    if auth_file is None:
        if not metrics_public:
            raise click.UsageError("--metrics-private needs --auth-file: without it no request has an identity")
        if not is_loopback(host):
            log.warning(OPEN_SERVER, host)
        return AccessSettings(None, metrics_public)
    try:
        auth = load_auth_file(auth_file)
    except AuthFileError as exc:
        raise click.ClickException(str(exc)) from exc
    proxy = f", proxy trusted from {', '.join(map(str, auth.proxy.trusted))}" if auth.proxy else ""
    log.info("authentication from %s: %d users, %d groups%s; /metrics %s", auth.source, len(auth.users),
             len(auth.groups), proxy, "public" if metrics_public else "private")  # fmt: skip
    return AccessSettings(auth, metrics_public)


def collector_token(token_file: Path | None, from_env: str | None, host: str) -> bytes | None:
    """The SHA-256 of the collector's token (its file, or RAY_HISTORY_COLLECTOR_TOKEN), None for no token;
    warns when there is none and the receiver is reachable from other machines."""
    from collector.auth import TokenError, checked, read_token_file, token_digest

    if token_file is not None and from_env:
        raise click.UsageError("give the collector's token in --token-file or RAY_HISTORY_COLLECTOR_TOKEN, not both")
    try:
        token = read_token_file(token_file) if token_file is not None else None
        if token is None and from_env:
            token = checked(from_env.strip(), "RAY_HISTORY_COLLECTOR_TOKEN")
    except TokenError as exc:
        raise click.ClickException(str(exc)) from exc
    if token is None and not is_loopback(host):
        log.warning(OPEN_COLLECTOR, host)
    return token_digest(token) if token is not None else None
