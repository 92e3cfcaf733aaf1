"""What a request can get wrong, each answered with its own status and a message saying what to do."""

from __future__ import annotations


class NotFound(LookupError):
    """An unknown session, task, actor, file...: answered 404 with this message."""


class BadRequest(ValueError):
    """A parameter that cannot be used: answered 400 with this message."""
