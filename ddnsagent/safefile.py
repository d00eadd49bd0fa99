"""Files in directories that another user may write, opened as if the directory were hostile.

Parts of ddnsagent run as root (pppd's hook, `reconnect`, `notify-now` by an admin, zone edits)
and touch files in directories that other users own or may write: the service user's state
directory, `bind`'s zone directory. Such a user can plant a symbolic link, a FIFO or a hard link
where we expect our file. So, as Postfix's safe_open() does:

- the directory is opened once (`Directory`), and every file in it is named relative to that
  descriptor, by a plain name — never a path that is resolved again later;
- a file is opened with O_NOFOLLOW and O_NONBLOCK, then checked with fstat() before a byte is
  read or written: a regular file, one hard link, the owner the caller allows;
- reads are capped; a file over the cap is refused, not truncated;
- a replacement is written to a new temporary file created with O_EXCL in the same opened
  directory and renamed there, so the name is swapped atomically and nothing is written through
  a name someone else chose; temporary files that a kill left behind are removed by name
  pattern, only when they are regular files.

Every refusal is an `UnsafeFile` naming the path and what was found, never quoting content.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterable
from pathlib import Path

from ddnsagent.errors import FileTooLarge, UnsafeFile

TEMP_SUFFIX = ".tmp"
MAX_LINKS = 40  # as the kernel's limit on symbolic links in one lookup
MAX_STEPS = 4096  # path components looked up, links included


def _describe(st: os.stat_result) -> str:
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _user(uid: int) -> str:
    try:
        import pwd  # lazy: only to word a refusal

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (KeyError, ImportError):
        return f"uid {uid}"


# Directories on the way are opened only to look names up in them (no read permission needed).
_PATH_FLAGS = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_CLOEXEC


def _who_else_may_write(st: os.stat_result, writers: frozenset[int]) -> str | None:
    """Why someone outside `writers` could change the entries of the directory `st`, or None.
    A sticky directory counts as safe here; its entries are checked one by one."""
    if st.st_uid not in writers:
        return f"belongs to {_user(st.st_uid)}"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
        return f"is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


class Directory:
    """An opened directory; files in it are opened by plain name, without following links.

    `owners`: the uids the directory itself may belong to (None: anyone). `create`: make the
    directory (mode `mode`) when it is missing; its parent is trusted as given.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        owners: Iterable[int] | None = None,
        create: bool = False,
        mode: int = 0o700,
    ) -> None:
        self.path = Path(path)
        if create:
            with contextlib.suppress(FileExistsError):
                os.mkdir(self.path, mode)
        try:
            self.fd = os.open(
                self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
            )
        except OSError as exc:
            if os.path.islink(self.path):
                raise UnsafeFile(
                    f"{self.path} is a symbolic link; give the real directory instead"
                ) from None
            raise UnsafeFile(f"cannot open the directory {self.path}: {exc.strerror}") from None
        st = os.fstat(self.fd)
        self.uid, self.gid = st.st_uid, st.st_gid
        if owners is not None and st.st_uid not in set(owners):
            os.close(self.fd)
            raise UnsafeFile(
                f"{self.path} belongs to {_user(st.st_uid)}, which is not trusted here"
            )

    @classmethod
    def on_trusted_path(
        cls,
        path: Path | str,
        *,
        writers: Iterable[int],
        owners: Iterable[int] | None = None,
        create: bool = False,
        mode: int = 0o700,
    ) -> Directory:
        """Open the directory `path` by walking it from "/", one component at a time, so that
        nobody outside `writers` can have steered where it leads (OpenSSH's safe_path() and
        Postfix's trusted-path checks make the same demand).

        Every directory a name is looked up in must belong to one of `writers` and be writable
        by nobody else; in a sticky directory (/tmp) the entry itself must belong to one of
        `writers`. A symbolic link on the way is followed only under that same rule (so only a
        writer can have made it); the last component must not be a link at all. `owners`: the
        uids the directory itself may belong to (None: anyone — its place was chosen by a
        writer). `create`: make missing components with `mode`. FileNotFoundError when a
        component is missing and `create` is False; UnsafeFile for everything refused.
        """
        writers = frozenset(writers)
        where = Path(path).absolute()
        todo = list(reversed(where.parts[1:]))  # a stack: the next component last
        at = Path("/")
        cur = os.open("/", _PATH_FLAGS)
        try:
            links = steps = 0
            while todo:
                steps += 1
                if steps > MAX_STEPS:
                    raise UnsafeFile(f"{where}: too many path components; refused")
                name = todo.pop()
                if name in ("", "."):
                    continue
                holder = os.fstat(cur)
                why = _who_else_may_write(holder, writers)
                if why:
                    raise UnsafeFile(
                        f"{at} {why}, so someone else could redirect {where}; refused — use "
                        "a directory whose parents only root can change"
                    )
                sticky = bool(holder.st_mode & stat.S_ISVTX)
                try:
                    fd = os.open(name, _PATH_FLAGS | os.O_NOFOLLOW, dir_fd=cur)
                except FileNotFoundError:
                    if not create:
                        raise
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(name, mode, dir_fd=cur)
                    fd = os.open(name, _PATH_FLAGS | os.O_NOFOLLOW, dir_fd=cur)
                except OSError:  # a link (ELOOP), or not a directory (ENOTDIR)
                    st = os.stat(name, dir_fd=cur, follow_symlinks=False)
                    if not stat.S_ISLNK(st.st_mode):
                        raise UnsafeFile(f"{at / name} is {_describe(st)}; refused") from None
                    if not todo:
                        raise UnsafeFile(
                            f"{at / name} is a symbolic link; give the real directory instead"
                        ) from None
                    if sticky and st.st_uid not in writers:
                        raise UnsafeFile(
                            f"{at / name} is a symbolic link of {_user(st.st_uid)} in the "
                            f"shared directory {at}; refused"
                        ) from None
                    links += 1
                    if links > MAX_LINKS:
                        raise UnsafeFile(f"{where}: too many symbolic links; refused") from None
                    target = os.readlink(name, dir_fd=cur)
                    if target.startswith("/"):
                        os.close(cur)
                        cur = -1
                        cur, at = os.open("/", _PATH_FLAGS), Path("/")
                    todo.extend(reversed(Path(target).parts[1 if target.startswith("/") else 0 :]))
                    continue
                st = os.fstat(fd)
                if sticky and st.st_uid not in writers:
                    os.close(fd)
                    raise UnsafeFile(
                        f"{at / name} belongs to {_user(st.st_uid)} in the shared directory "
                        f"{at}; refused"
                    )
                os.close(cur)
                cur, at = fd, (at.parent if name == ".." else at / name)
            final = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=cur)
        finally:
            if cur >= 0:
                os.close(cur)
        self = cls.__new__(cls)
        self.path, self.fd = where, final
        st = os.fstat(final)
        self.uid, self.gid = st.st_uid, st.st_gid
        if owners is not None and st.st_uid not in set(owners):
            self.close()
            raise UnsafeFile(f"{where} belongs to {_user(st.st_uid)}, which is not trusted here")
        return self

    def __enter__(self) -> Directory:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def where(self, name: str) -> Path:
        return self.path / name

    def _check_name(self, name: str) -> None:
        if not name or "/" in name or name in (".", ".."):
            raise UnsafeFile(f"{name!r} is not a plain file name in {self.path}")

    def open(
        self,
        name: str,
        flags: int = os.O_RDONLY,
        mode: int = 0o600,
        *,
        owners: Iterable[int] | None = None,
    ) -> int:
        """A descriptor of the regular file `name` (created with `mode` when `flags` has
        O_CREAT); refuses a link, a FIFO, a device, a file with other hard links, and a file
        owned by a uid not in `owners`."""
        self._check_name(name)
        flags |= os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(name, flags, mode, dir_fd=self.fd)
        except OSError:
            with contextlib.suppress(OSError):
                st = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
                if not stat.S_ISREG(st.st_mode):
                    raise UnsafeFile(f"{self.where(name)} is {_describe(st)}; refused") from None
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise UnsafeFile(f"{self.where(name)} is {_describe(st)}; refused")
            if st.st_nlink != 1:
                raise UnsafeFile(
                    f"{self.where(name)} has {st.st_nlink} hard links (another name points at "
                    "the same file); refused"
                )
            if owners is not None and st.st_uid not in set(owners):
                raise UnsafeFile(
                    f"{self.where(name)} belongs to {_user(st.st_uid)}, which is not trusted here"
                )
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def read(self, name: str, limit: int, *, owners: Iterable[int] | None = None) -> bytes:
        """The whole file, refused (FileTooLarge, an UnsafeFile) when it is larger than `limit`
        bytes, before reading when fstat() says so. FileNotFoundError when it does not exist."""
        fd = self.open(name, owners=owners)
        try:
            if os.fstat(fd).st_size > limit:
                raise self._too_large(name, limit)
            chunks: list[bytes] = []
            size = 0
            while chunk := os.read(fd, min(1 << 16, limit + 1 - size)):
                chunks.append(chunk)
                size += len(chunk)
                if size > limit:  # it grew while we read
                    raise self._too_large(name, limit)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def _too_large(self, name: str, limit: int) -> FileTooLarge:
        return FileTooLarge(f"{self.where(name)} is larger than {limit} bytes; refused", limit)

    def exists(self, name: str) -> bool:
        self._check_name(name)
        try:
            os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return True

    def replace(
        self,
        name: str,
        data: bytes,
        mode: int = 0o600,
        *,
        owner: tuple[int, int] | None = None,
    ) -> None:
        """Atomically make `name` hold `data`: a new temporary file in this directory (O_EXCL,
        O_NOFOLLOW), written, owned (`owner` as (uid, gid), when root), fsynced, renamed over
        `name`, and the directory fsynced. On any error (ENOSPC included) the temporary file is
        removed and `name` is left as it was."""
        self._check_name(name)
        temp = self.temp_name(name)
        fd = os.open(
            temp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            mode,
            dir_fd=self.fd,
        )
        try:
            try:
                if owner is not None and os.geteuid() == 0:
                    os.fchown(fd, *owner)  # before the mode: chown clears set-id bits
                os.fchmod(fd, mode)
                view = memoryview(data)
                while view:  # os.write may write less than asked
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=self.fd)
            raise
        os.fsync(self.fd)

    @staticmethod
    def temp_name(name: str) -> str:
        return f".{name}.{secrets.token_hex(6)}{TEMP_SUFFIX}"

    def remove_stale_temps(self, name: str) -> list[str]:
        """Remove the temporary files of `name` that a kill left behind (regular files only;
        anything else with such a name is left alone). Returns the names removed."""
        self._check_name(name)
        prefix = f".{name}."
        removed = []
        for entry in os.listdir(self.fd):
            if not (entry.startswith(prefix) and entry.endswith(TEMP_SUFFIX)):
                continue
            with contextlib.suppress(OSError):
                st = os.stat(entry, dir_fd=self.fd, follow_symlinks=False)
                if stat.S_ISREG(st.st_mode):
                    os.unlink(entry, dir_fd=self.fd)
                    removed.append(entry)
        return removed
