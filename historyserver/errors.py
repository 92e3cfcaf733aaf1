"""What a request can get wrong, each answered with its own status and a message saying what to do."""

from __future__ import annotations


class NotFound(LookupError):
    """An unknown session, task, actor, file...: answered 404 with this message."""


class BadRequest(ValueError):
    """A parameter that cannot be used: answered 400 with this message."""


class Expired(LookupError):
    """Data that retention removed from the archive (a session's logs, metrics...): answered 410 Gone with
    this message, so that it does not look like data that never existed."""


class Unavailable(Exception):
    """What the answer needs is not there yet (the catalog still loading) or cannot be reached (the object store):
    answered 503 with this message and a Retry-After of `retry_after_s`."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
