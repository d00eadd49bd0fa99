"""A file in a directory another user may write, read once and replaced so that readers and
crashes only ever see the old or the new content.

A zone file lives in the name server's directory (group `bind` may write /var/lib/bind), so
whoever can write that directory can put a symbolic link, a FIFO or a hard link where the zone
file was. Root must never read or write through such a name. So the directory is opened once
(`safefile.Directory`), the file is opened by plain name in it without following links and
checked with fstat() before a byte is read (a regular file, one link, a trusted owner), reads are
capped, and the new content goes to a temporary file created with O_EXCL in that same opened
directory and renamed there: rename(2) swaps the name atomically, and fsync makes it durable.

The one-generation backup (`NAME.bak`) is written from the bytes we read, not linked to
whatever the name holds by then, so a name swapped between our read and the backup cannot be
what the backup keeps.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass

from ddnsagent.errors import UnsafeFile
from ddnsagent.safefile import Directory

DEFAULT_MODE = 0o644  # a new zone file must be readable by the name server's user
BACKUP_SUFFIX = ".bak"


@dataclass(frozen=True)
class Read:
    """What `read` found: the content and the file's metadata (from the same descriptor)."""

    data: bytes
    info: os.stat_result


def trusted_owners(directory: Directory, extra: Iterable[int] = ()) -> frozenset[int]:
    """Who may own a file in `directory`: root, the directory's owner, and `extra`."""
    return frozenset({0, directory.uid, *extra})


def read(directory: Directory, name: str, limit: int, owners: Iterable[int]) -> Read:
    """The whole of `name` in `directory`, through one descriptor opened without following
    links (O_NONBLOCK: a FIFO never blocks) and fstat()ed before reading: refused (UnsafeFile)
    unless a regular file with one link and an owner in `owners`, or when over `limit` bytes.
    FileNotFoundError when it does not exist."""
    fd = directory.open(name, owners=owners)
    try:
        info = os.fstat(fd)
        if info.st_size > limit:
            raise UnsafeFile(f"{directory.where(name)} is larger than {limit} bytes; refused")
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, min(1 << 16, limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:  # it grew while we read
                raise UnsafeFile(f"{directory.where(name)} is larger than {limit} bytes; refused")
        return Read(b"".join(chunks), info)
    finally:
        os.close(fd)


def replace(
    directory: Directory,
    name: str,
    data: bytes,
    old: Read | None,
    *,
    keep_backup: bool,
    mode: int | None = None,
) -> None:
    """Atomically make `name` hold `data`, in the opened `directory`.

    `old` is what `read` returned for the current file (None: there was none): the new file
    gets its permission bits (unless `mode` is given; DEFAULT_MODE for a new file) and, when
    running as root, its owner and group. With `keep_backup`, `old.data` is first written to
    `NAME.bak` the same way (one generation). Temporary files a kill left behind are removed
    first. On any error the temporary file is gone and `name` is as it was.
    """
    directory.remove_stale_temps(name)
    owner = (old.info.st_uid, old.info.st_gid) if old is not None else None
    if mode is None:
        mode = stat.S_IMODE(old.info.st_mode) if old is not None else DEFAULT_MODE
    mode &= 0o7777
    if keep_backup and old is not None:
        backup = name + BACKUP_SUFFIX
        directory.remove_stale_temps(backup)
        directory.replace(backup, old.data, stat.S_IMODE(old.info.st_mode), owner=owner)
    directory.replace(name, data, mode, owner=owner)
