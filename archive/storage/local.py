"""An archive in a local directory (or a mounted volume): the embedded default."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path

from .base import InvalidKey, ObjectInfo, ObjectNotFound, StorageError, check_key, check_prefix

_TMP_PREFIX = "."
_TMP_SUFFIX = ".tmp"


def _is_temp_name(name: str) -> bool:
    return name.startswith(_TMP_PREFIX) and name.endswith(_TMP_SUFFIX)


def _fsync_dir(path: Path) -> None:
    # A rename or a new entry is durable only once its directory is flushed too.
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStorage:
    """Objects are files under `root`; a key's '/' are directories."""

    supports_tags = False

    def __init__(self, root: Path) -> None:
        # Resolved once so that the containment check below compares like with like even when
        # the root itself is reached through a symlink (e.g. /tmp -> /private/tmp).
        self.root = Path(root).absolute().resolve()
        self.uri = "file://" + str(self.root)

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        check_key(key)
        path = self.root / key
        # check_key rules out '..', but a symlink inside the archive could still point elsewhere.
        if not path.resolve().is_relative_to(self.root):
            raise InvalidKey(f"archive key {key!r} resolves outside the archive root {self.root}")
        return path

    def local_path(self, key: str) -> Path:
        """Where the object lives on this machine: readers may open it in place instead of copying it."""
        return self._path(key)

    def _os_error(self, action: str, key: str, exc: OSError) -> StorageError:
        if exc.errno == errno.ENOSPC:
            return StorageError(
                f"no space left on device while {action} {key!r} under {self.root}: "
                "free some space or point the archive at a larger volume"
            )
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return StorageError(
                f"permission denied while {action} {key!r} under {self.root} ({exc.strerror}): "
                "check that the directory is writable by this user and not mounted read-only"
            )
        return StorageError(f"{action} {key!r} under {self.root} failed: {exc}")

    def _makedirs(self, directory: Path) -> None:
        missing: list[Path] = []
        d = directory
        while not d.is_dir():
            missing.append(d)
            if d == d.parent:
                break
            d = d.parent
        for d in reversed(missing):
            try:
                d.mkdir()
            except FileExistsError:
                if not d.is_dir():
                    raise
                continue
            # The new directory's entry lives in its parent, which must reach the disk as well.
            _fsync_dir(d.parent)

    def put(self, key: str, data: bytes, tags: Mapping[str, str] | None = None) -> None:
        path = self._path(key)
        if _is_temp_name(path.name):
            # list() hides such names, so an object stored under one would silently vanish.
            raise InvalidKey(f"archive key {key!r} looks like a temporary file ('.*.tmp')")
        tmp = path.with_name(f"{_TMP_PREFIX}{path.name}.{secrets.token_hex(6)}{_TMP_SUFFIX}")
        try:
            # A concurrent delete() may prune the freshly created parent before the temp file
            # exists; creating the directories again and retrying once or twice wins that race.
            for attempt in range(3):
                self._makedirs(path.parent)
                try:
                    # O_EXCL with a random name: two writers of the same key never share a temp file.
                    # Mode 0o666 (less umask) rather than mkstemp's 0o600, so a server running as
                    # another user of the same group can read what the collector wrote.
                    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
                    break
                except FileNotFoundError:
                    if attempt == 2:
                        raise
            try:
                with open(fd, "wb", closefd=True) as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                # Whatever failed (full disk, interrupt), readers keep the old object and no
                # half-written file is left behind to fill the disk further.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
            _fsync_dir(path.parent)
        except OSError as exc:
            raise self._os_error("writing", key, exc) from exc

    def get(self, key: str) -> bytes:
        path = self._path(key)
        if _is_temp_name(path.name):
            raise ObjectNotFound(f"no object {key!r} in {self.uri}")
        try:
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            # A directory is a key prefix, not an object.
            raise ObjectNotFound(f"no object {key!r} in {self.uri}") from exc
        except OSError as exc:
            raise self._os_error("reading", key, exc) from exc

    def get_tags(self, key: str) -> dict[str, str]:
        self._path(key)
        return {}

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return
        except OSError as exc:
            raise self._os_error("deleting", key, exc) from exc
        # Retention deletes whole sessions; without pruning, millions of empty directories
        # would pile up and slow every listing.
        parent = path.parent
        while parent != self.root and parent.is_relative_to(self.root):
            try:
                parent.rmdir()
            except OSError:
                # Not empty (or already gone, or a concurrent put just used it): stop here.
                break
            parent = parent.parent

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
        check_prefix(prefix)
        # Only the directory holding the prefix's last segment needs walking.
        head, _, _ = prefix.rpartition("/")
        start = self.root / head if head else self.root
        try:
            if not start.resolve().is_relative_to(self.root):
                raise InvalidKey(f"archive prefix {prefix!r} resolves outside the archive root {self.root}")
        except OSError as exc:
            raise self._os_error("listing", prefix, exc) from exc
        yield from self._walk(start, head + "/" if head else "", prefix, start_after or "")

    def _walk(self, directory: Path, key_prefix: str, prefix: str, after: str) -> Iterator[ObjectInfo]:
        # Depth first with a stack of its own, not generators nested as deep as the tree: each key went up
        # through every level, and listing 100,000 sessions' documents took most of a new replica's start.
        stack = [iter(self._entries(str(directory), key_prefix))]
        while stack:
            for key, entry, is_dir in stack[-1]:
                if is_dir:
                    # Descend only where keys can still match the prefix, and can still come after `after`: every
                    # key below "d/" is after it if "d/" is, and before it if "d/" is before and no prefix of it.
                    if (key.startswith(prefix) or prefix.startswith(key)) and (key > after or after.startswith(key)):
                        stack.append(iter(self._entries(entry.path, key)))
                        break
                    continue
                if _is_temp_name(entry.name) or not key.startswith(prefix) or key <= after:
                    continue
                try:
                    st = entry.stat()
                except FileNotFoundError:
                    # Deleted between the scan and the stat.
                    continue
                yield ObjectInfo(key=key, size=st.st_size, mtime_ns=st.st_mtime_ns)
            else:
                stack.pop()

    def _entries(self, directory: str, key_prefix: str) -> list[tuple[str, os.DirEntry[str], bool]]:
        """A directory's entries as (key, entry, is a directory), in key order."""
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise self._os_error("listing", key_prefix or "/", exc) from exc
        # Symlinked directories are not followed: a link to an ancestor would loop forever, and
        # nothing in the archive layout needs them.
        named: list[tuple[str, os.DirEntry[str], bool]] = []
        for entry in entries:
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
                if entry.is_symlink():
                    if entry.is_dir():
                        continue
                    if not Path(entry.path).resolve().is_relative_to(self.root):
                        continue
            except OSError:
                continue
            # Appending '/' to subdirectory names makes a per-directory sort yield the whole tree
            # in plain key order, lazily: every key below "a" starts with "a/", so "a-b" < "a/x".
            named.append((key_prefix + entry.name + "/" if is_dir else key_prefix + entry.name, entry, is_dir))
        named.sort(key=lambda item: item[0])
        return named
