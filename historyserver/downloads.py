"""The Content-Disposition of a download, whatever the file's name.

An archived file is named as Ray named it, and a name may hold a quote, a non-ASCII letter, even a CR or LF;
put in the header as it is, such a name breaks the header (the server refused it and dropped the connection).
RFC 6266: the exact name percent-encoded as UTF-8 in `filename*`, which browsers and curl -J use, and an ASCII
`filename` for older clients, with every character a quoted string cannot hold replaced by `_`.
"""

from __future__ import annotations

import re
from urllib.parse import quote

# RFC 5987's attr-char, besides letters and digits: what `filename*` may hold unencoded.
_ATTR_CHARS = "!#$&+-.^_`|~"
# What a quoted-string fallback must not hold: controls, quotes, backslashes and anything not ASCII.
_NOT_PLAIN = re.compile(r'[^\x20-\x7e]|["\\%;]')


def attachment(filename: str) -> str:
    """`attachment; filename="..."` for a plain name, as Ray's dashboard answers it; with `filename*=UTF-8''...`
    too for a name the quoted string cannot hold."""
    fallback = _NOT_PLAIN.sub("_", filename).strip() or "download"
    if fallback == filename:
        return f'attachment; filename="{filename}"'
    encoded = quote(filename, safe=_ATTR_CHARS, encoding="utf-8", errors="replace")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"
