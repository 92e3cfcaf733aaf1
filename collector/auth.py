"""The receiver's token (`ray-history collect --token-file FILE`, or RAY_HISTORY_COLLECTOR_TOKEN): a POST of
events must carry it, for a collector listening beyond loopback where other pods can reach it.

Ray's aggregator agent sends no header of its own choosing, but its HTTP client (aiohttp) turns credentials in
the address into `Authorization: Basic`: with
`RAY_DASHBOARD_AGGREGATOR_AGENT_EVENTS_EXPORT_ADDR=http://ray:TOKEN@127.0.0.1:8084/v1/events` Ray sends the
token as the password. So both are accepted: `Authorization: Bearer TOKEN` and Basic with the token as the
password (the user name is not checked). Only the token's SHA-256 is kept, and it is compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from pathlib import Path


class TokenError(ValueError):
    """A token that cannot be used: the message says why (never the token)."""


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def read_token_file(path: Path) -> str:
    """The token in a file (a mounted Secret), without the line end an editor or `echo` leaves."""
    try:
        token = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenError(f"cannot read the token file {path}: {exc}") from exc
    return checked(token, f"the token file {path}")


def checked(token: str, source: str) -> str:
    if not token:
        raise TokenError(f"{source} is empty")
    if any(char.isspace() or not char.isprintable() for char in token):
        raise TokenError(f"{source} holds white space or control characters inside the token")
    return token


def presented_token(header: str | None) -> str | None:
    """The token an Authorization header carries: Bearer's, or Basic's password; None if neither."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        _, sep, password = decoded.partition(":")
        return password if sep else None
    return None


def authorized(header: str | None, digest: bytes) -> bool:
    token = presented_token(header)
    return token is not None and hmac.compare_digest(token_digest(token), digest)
