"""Log files in the archive: rebuilding a file's exact bytes from its line rows (schema.LOGS)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc


def rebuild_file(rows: pa.Table) -> bytes:
    """The bytes of one file (the rows of one file_id), in offset order; left-out ranges stay out."""
    rows = rows.filter(pc.is_null(rows["omitted_bytes"])).sort_by("offset")
    texts = rows["text"].to_pylist()
    raws = rows["raw"].to_pylist()
    newlines = rows["newline"].to_pylist()
    pieces: list[bytes] = []
    for text, raw, newline in zip(texts, raws, newlines, strict=True):
        pieces.append(raw if raw is not None else text.encode())
        if newline:
            pieces.append(b"\n")
    return b"".join(pieces)


def file_ids_by_name(rows: pa.Table) -> dict[str, str]:
    """Each file name's file id as the node has it now: a rotated file is known by its latest name,
    and where a name was truncated or re-created, its newest generation wins."""
    latest: dict[str, tuple[tuple[int, int], str]] = {}  # file_id -> ((read_at, offset), name)
    first_seen: dict[str, int] = {}
    columns = rows.select(["file_id", "file", "offset"]).to_pydict()
    read_ats = rows["read_at"].cast(pa.int64()).to_pylist()
    for file_id, name, read_at, offset in zip(
        columns["file_id"], columns["file"], read_ats, columns["offset"], strict=True
    ):
        stamp = (read_at, offset)
        if file_id not in latest or stamp > latest[file_id][0]:
            latest[file_id] = (stamp, name)
        first_seen[file_id] = min(first_seen.get(file_id, stamp[0]), stamp[0])
    by_name: dict[str, str] = {}
    for file_id, (_, name) in latest.items():
        if name not in by_name or first_seen[file_id] > first_seen[by_name[name]]:
            by_name[name] = file_id
    return by_name
