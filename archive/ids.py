"""Ray ids: base64 of raw bytes on the wire, lowercase hex everywhere in the archive."""

from __future__ import annotations

import base64
import binascii


class BadId(ValueError):
    """A value that should be a base64-encoded id and is not."""


def b64_to_hex(value: str) -> str:
    """'AgAAAA==' -> '02000000'."""
    try:
        return binascii.a2b_base64(value, strict_mode=True).hex()
    except (binascii.Error, ValueError) as exc:
        raise BadId(f"not a base64 id: {value!r}") from exc


def hex_to_b64(value: str) -> str:
    """The inverse of b64_to_hex, to rebuild an event exactly as Ray sent it."""
    return base64.b64encode(bytes.fromhex(value)).decode("ascii")


def is_nil(hex_id: str | None) -> bool:
    """Ray writes an absent id as empty or all 0xff bytes."""
    return not hex_id or set(hex_id) == {"f"}
