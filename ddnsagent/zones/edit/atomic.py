"""Replace a file so that readers and crashes only ever see the old or the new content.

A name server may reload the zone at any moment and the machine may lose power at any moment;
writing the zone file in place would let either catch a half-written file.  So the new content is
written to a temporary file beside the target and renamed over it: rename(2) within one file
system swaps the name atomically, and the fsync calls make the swap durable in the right order.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
import tempfile

_DEFAULT_MODE = 0o644  # a new zone file must be readable by the name server's user


def atomic_write(
    path: str | os.PathLike[str],
    data: bytes,
    mode: int | None = None,
    keep_backup: bool = True,
) -> None:
    """Atomically replace ``path`` with ``data``.

    ``mode`` defaults to the existing file's permission bits (0o644 for a new file).  When
    running as root the existing file's owner and group are kept; otherwise the group is kept
    when the caller may set it.  With ``keep_backup``, the previous content stays available as
    ``path + ".bak"`` (one generation).  A symbolic link at ``path`` is followed, so the link stays
    and its target is replaced.
    """
    target = os.path.realpath(os.fspath(path))
    directory, base = os.path.split(target)
    try:
        old = os.stat(target)
    except FileNotFoundError:
        old = None
    if mode is None:
        mode = stat.S_IMODE(old.st_mode) if old is not None else _DEFAULT_MODE

    # Same directory as the target: rename(2) is only atomic within one file system, and
    # the name server's directory may be a different mount from /tmp.  mkstemp opens with
    # O_EXCL and a random name, so concurrent writers never share a temporary file.
    fd, temp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            # Owner before mode: chown(2) clears set-user-ID and set-group-ID bits.
            if old is not None:
                _copy_owner(file.fileno(), old)
            os.fchmod(file.fileno(), mode)
            # The data must be on disk before the rename is: otherwise a crash soon after the
            # rename can leave the new name pointing at an empty or partial file.
            os.fsync(file.fileno())
        if keep_backup and old is not None:
            _backup(target, directory, base)
        # The atomic step: readers see either the old inode or the complete new one.
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    # The rename (and the backup link) live in the directory; fsync it so they survive a crash.
    _fsync_directory(directory)


def _copy_owner(fd: int, old: os.stat_result) -> None:
    if os.geteuid() == 0:
        os.fchown(fd, old.st_uid, old.st_gid)
    elif old.st_gid != os.getegid():
        # An unprivileged owner may still give the file a group it belongs to.
        with contextlib.suppress(PermissionError):
            os.fchown(fd, -1, old.st_gid)


def _backup(target: str, directory: str, base: str) -> None:
    """Make ``target + ".bak"`` the current content of ``target``, replacing older backups.

    A hard link costs no copying and is the very inode being replaced, which nobody writes to
    again since replacement goes by rename.  The link is made under a temporary name and renamed
    over the old backup, so a crash never leaves the backup missing or half-copied.  File systems
    without hard links get a copy instead.
    """
    backup = target + ".bak"
    temp = ""
    try:
        for _ in range(100):
            temp = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.bak.tmp")
            try:
                os.link(target, temp)
            except FileExistsError:
                continue
            except OSError:
                # No hard links here (some FUSE and FAT file systems): copy, exclusively.
                with open(target, "rb") as source, open(temp, "xb") as copy:
                    shutil.copyfileobj(source, copy)
                    copy.flush()
                    os.fsync(copy.fileno())
                shutil.copystat(target, temp)
            break
        else:  # pragma: no cover - 100 collisions of 48 random bits
            raise FileExistsError(f"no free temporary name for the backup of {target}")
        os.replace(temp, backup)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def _fsync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
