"""Where the watchdog's evidence comes from: the mail log's lines, from a log file followed as
it grows (`LogFollower`) or from journald (`JournalReader`); and, before a reconnect, Postfix's
queue (`read_queue`, `postqueue -j`) and a connection attempt of our own (`probe`).

The file follower reads each complete line once, across rotation, truncation and
restarts of the agent.

Log rotation happens in two ways. *Rename* (logrotate's default, ``create``): the old file moves
aside and the writer reopens the path a moment later, so the old file is kept open and drained for
a grace period after the path changes. *Copytruncate*: the file is copied aside and emptied in
place, so whatever arrived since the last poll is only in the copy; the copy is recognised by the
bytes we last read (they sit at the same offset in it) and drained before the emptied file.

Only what the agent acts on now matters, so the backlog it will read is bounded (``max_catchup``):
on the first run it starts at the end, and after a long stop it skips to the recent tail. Polling
costs one ``stat`` and one ``fstat`` when nothing changed; inotify can later decide *when* to poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import stat
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from ddnsagent import process
from ddnsagent.relay.logparse import DEFAULT_RATE_PATTERNS, QueuedFailure, parse_queue_json

log = logging.getLogger(__name__)

DEFAULT_MAX_CATCHUP = 1 << 20
"""Bytes of backlog read after a restart or on a newly found file; older lines are skipped."""

_CHUNK = 1 << 16
_FINGERPRINT = 64  # bytes compared to tell our file (or its copy) from a rewritten one
_MAX_SIBLINGS = 64  # rotated files examined when looking for a copy or a renamed file


@dataclass(frozen=True, slots=True)
class FollowPosition:
    """Where reading stopped: the start of the first line not yet returned, in one file. The
    store keeps it (with the path) as the relay's `LogPosition`."""

    device: int
    inode: int
    offset: int


@dataclass(slots=True)
class FollowStats:
    """What the follower had to give up or work around, for status reports."""

    skipped_bytes: int = 0
    """Backlog not read because of ``max_catchup``."""
    long_lines: int = 0
    """Lines dropped for being longer than ``max_line``."""
    partial_lines: int = 0
    """Unterminated lines at the end of a rotated file or a copy, dropped."""
    rotations: int = 0
    truncations: int = 0
    lost_files: int = 0
    """Rotated copies or renamed files that could not be found: lines may be missing."""


class _Source:
    """One open file and the line being assembled from it."""

    __slots__ = (
        "buf",
        "device",
        "discarding",
        "fd",
        "head",
        "inode",
        "last_data",
        "line_start",
        "read_offset",
        "static",
        "tail",
    )

    def __init__(self, fd: int, st: os.stat_result) -> None:
        self.fd = fd
        self.device = st.st_dev
        self.inode = st.st_ino
        self.read_offset = 0  # next byte to read
        self.line_start = 0  # first byte of the line being assembled (or discarded)
        self.buf = bytearray()
        self.discarding = False  # inside a line we do not return (too long, or joined midway)
        self.head = b""  # the file's first bytes, as read
        self.tail = b""  # the bytes just before read_offset
        self.static = False  # a copy nobody writes to: close it at its end
        self.last_data = 0.0

    @property
    def position(self) -> FollowPosition:
        return FollowPosition(self.device, self.inode, self.line_start)

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def seek(self, offset: int) -> None:
        """Start reading at ``offset``; if that is inside a line, skip to the next one."""
        self.read_offset = self.line_start = offset
        self.buf.clear()
        self.discarding = offset > 0 and os.pread(self.fd, 1, offset - 1) != b"\n"
        self.head = os.pread(self.fd, min(_FINGERPRINT, offset), 0)
        keep = min(_FINGERPRINT, offset)
        self.tail = os.pread(self.fd, keep, offset - keep)

    def take_over(self, other: _Source) -> None:
        """Continue where ``other`` stopped: this file holds the same bytes up to that point."""
        self.read_offset = other.read_offset
        self.line_start = other.line_start
        self.buf = other.buf
        other.buf = bytearray()
        self.discarding = other.discarding
        self.head = other.head
        self.tail = other.tail

    def holds_what_we_read(self, reference: _Source) -> bool:
        """Whether this file still has, where we read them, the bytes ``reference`` last saw."""
        start = reference.read_offset - len(reference.tail)
        return (
            os.pread(self.fd, len(reference.head), 0) == reference.head
            and os.pread(self.fd, len(reference.tail), start) == reference.tail
        )

    def feed(self, chunk: bytes, max_line: int, stats: FollowStats) -> list[str]:
        lines: list[str] = []
        base = self.read_offset
        pos = 0
        while True:
            newline = chunk.find(b"\n", pos)
            end = len(chunk) if newline == -1 else newline
            if not self.discarding:
                if len(self.buf) + (end - pos) > max_line:
                    self.buf.clear()
                    self.discarding = True
                    stats.long_lines += 1
                    log.debug(
                        "mail log line at offset %d longer than %d bytes: dropped",
                        self.line_start,
                        max_line,
                    )
                else:
                    self.buf += chunk[pos:end]
            if newline == -1:
                break
            if self.discarding:
                self.discarding = False
            else:
                lines.append(self.buf.decode("utf-8", errors="replace"))
                self.buf.clear()
            pos = newline + 1
            self.line_start = base + pos
        self.read_offset = base + len(chunk)
        if len(self.head) < _FINGERPRINT and len(self.head) == base:
            self.head += chunk[: _FINGERPRINT - base]
        self.tail = (self.tail + chunk[-_FINGERPRINT:])[-_FINGERPRINT:]
        return lines

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


class LogFollower:
    """Returns the complete lines added to ``path`` since the last poll.

    ``position`` is where an earlier run stopped (see :attr:`position`); without one, reading
    starts at the current end of the file. Lines longer than ``max_line`` bytes are dropped and
    counted in :attr:`stats`; ``max_catchup`` bounds the backlog read at start-up or when a new
    file is found. Not thread-safe: poll from one thread.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        position: FollowPosition | None = None,
        max_line: int = 8192,
        max_catchup: int = DEFAULT_MAX_CATCHUP,
        *,
        rotate_grace: float = 5.0,
        max_poll_bytes: int = 8 << 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_line < 1 or max_catchup < 0 or max_poll_bytes < 1 or rotate_grace < 0:
            raise ValueError("max_line and max_poll_bytes must be positive, the rest >= 0")
        self.path = os.fspath(path)
        self.max_line = max_line
        self.max_catchup = max_catchup
        self.rotate_grace = rotate_grace
        self.max_poll_bytes = max_poll_bytes
        self.stats = FollowStats()
        self._clock = clock
        self._cur: _Source | None = None
        self._retired: list[_Source] = []  # earlier files still being drained, oldest first
        self._resume = position
        self._complaint: str | None = None
        # Look now, so that on a first run "the end" is the end at start-up; a file that only
        # appears later is new and is read from its start.
        self._check_path(at_end=position is None)

    @property
    def position(self) -> FollowPosition | None:
        """Where to resume after a restart; store its ``to_dict()`` in the agent's state.

        It names the current file only: what a rotated file still gets during its grace period
        after this is saved is not read after a restart.
        """
        return self._cur.position if self._cur is not None else self._resume

    @property
    def waiting(self) -> bool:
        """True while the log file cannot be opened (missing, unreadable)."""
        return self._cur is None

    def poll(self) -> list[str]:
        """The complete lines written since the last call, oldest first; never raises OSError."""
        self._check_path(at_end=False)
        lines: list[str] = []
        budget = self.max_poll_bytes
        for src in list(self._retired):
            budget = self._read(src, lines, budget)
            if budget <= 0:
                return lines
            if src in self._retired and (
                src.static or self._clock() - src.last_data >= self.rotate_grace
            ):
                self._retire_done(src)
        if self._cur is not None:
            self._read(self._cur, lines, budget)
        return lines

    def close(self) -> None:
        for src in [*self._retired, self._cur]:
            if src is not None:
                src.close()
        if self._cur is not None:
            self._resume = self._cur.position
        self._retired.clear()
        self._cur = None

    def __enter__(self) -> LogFollower:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- finding the file ---------------------------------------------------------------------

    def _complain(self, key: str, message: str, *args: object) -> None:
        """Log each distinct problem once, not on every poll."""
        if key != self._complaint:
            self._complaint = key
            log.warning(message, *args)

    def _open(self) -> _Source | None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
        except FileNotFoundError:
            self._complain("missing", "mail log %s does not exist yet; waiting for it", self.path)
            return None
        except OSError as exc:
            self._complain(f"open:{exc.errno}", "cannot open mail log %s: %s", self.path, exc)
            return None
        try:
            st = os.fstat(fd)
        except OSError:
            os.close(fd)
            raise
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            self._complain("type", "mail log %s is not a regular file", self.path)
            return None
        return _Source(fd, st)

    def _check_path(self, *, at_end: bool) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self._cur is None:
                self._complain("missing", "mail log %s does not exist yet; waiting", self.path)
            return  # an open file stays readable; the writer may not have recreated it yet
        except OSError as exc:
            self._complain(f"stat:{exc.errno}", "cannot stat mail log %s: %s", self.path, exc)
            return
        try:
            if self._cur is None:
                self._attach(at_end=at_end)
            elif (st.st_dev, st.st_ino) != (self._cur.device, self._cur.inode):
                self._rotated()
            else:
                self._check_truncated(self._cur)
        except OSError as exc:
            self._complain(f"io:{exc.errno}", "reading mail log %s failed: %s", self.path, exc)
            self._drop_current()

    def _attach(self, *, at_end: bool) -> None:
        src = self._open()
        if src is None:
            return
        resume = self._resume
        old: _Source | None = None
        try:
            size = src.size()
            if at_end:
                src.seek(size)
            elif resume is None:
                self._seek_bounded(src, 0)  # the file appeared after we started: all of it is new
            elif (resume.device, resume.inode) == (src.device, src.inode):
                # Shorter than where we stopped: truncated while we were away.
                self._seek_bounded(src, resume.offset if resume.offset <= size else 0)
            else:
                old = self._resume_rotated(resume)
                self._seek_bounded(src, 0)
        except OSError:
            for opened in (src, old):
                if opened is not None:
                    opened.close()
            raise  # self._resume is kept: the next poll tries again from the same place
        if old is not None:
            self._retired.append(old)
        if self._complaint is not None:
            log.info("following mail log %s", self.path)
            self._complaint = None
        self._resume = None
        self._cur = src

    def _resume_rotated(self, resume: FollowPosition) -> _Source | None:
        """The file we were reading was rotated while we were stopped: find it to finish it."""

        def same_file(src: _Source) -> bool:
            return (src.device, src.inode) == (resume.device, resume.inode)

        old = self._find_sibling(resume.offset, same_file)
        if old is None:
            self.stats.lost_files += 1
            log.warning(
                "mail log %s was rotated while stopped and the old file is gone; "
                "lines after offset %d of it are not read",
                self.path,
                resume.offset,
            )
            return None
        try:
            self._seek_bounded(old, resume.offset)
        except OSError:
            old.close()
            raise
        old.last_data = self._clock()
        return old

    def _rotated(self) -> None:
        """The path names a new file (rename rotation): drain the old one, read the new one."""
        assert self._cur is not None
        new = self._open()
        if new is None:
            return
        try:
            self._seek_bounded(new, 0)
        except OSError:
            new.close()
            raise
        old, self._cur = self._cur, new
        old.last_data = self._clock()
        self._retired.append(old)
        self.stats.rotations += 1
        log.info("mail log %s was rotated; reading the new file", self.path)

    def _check_truncated(self, cur: _Source) -> None:
        """Copytruncate: the file shrank, or no longer holds what we read where we read it."""
        size = cur.size()
        if size == cur.read_offset or (size > cur.read_offset and cur.holds_what_we_read(cur)):
            return
        self.stats.truncations += 1
        copy = self._find_sibling(cur.read_offset, lambda src: src.holds_what_we_read(cur))
        if copy is not None:
            copy.take_over(cur)
            copy.static = True
            self._retired.append(copy)
            log.info("mail log %s was truncated; finishing its copy first", self.path)
        else:
            self.stats.lost_files += 1
            log.warning(
                "mail log %s was truncated and no copy of it was found; lines written "
                "just before may be missing",
                self.path,
            )
        self._seek_bounded(cur, 0)

    def _find_sibling(self, min_size: int, accept: Callable[[_Source], bool]) -> _Source | None:
        """A rotated file beside ours (``maillog.1``, ``maillog-20240101``) that ``accept``s."""
        directory, base = os.path.split(self.path)
        found: list[tuple[int, str]] = []
        try:
            with os.scandir(directory or ".") as entries:
                for entry in entries:
                    if entry.name == base or not entry.name.startswith(base):
                        continue
                    try:
                        st = entry.stat()
                    except OSError:
                        continue
                    if stat.S_ISREG(st.st_mode) and st.st_size >= min_size:
                        found.append((st.st_mtime_ns, entry.path))
        except OSError:
            return None
        found.sort(reverse=True)  # the newest rotation is the likeliest
        for _, candidate in found[:_MAX_SIBLINGS]:
            try:
                fd = os.open(candidate, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
            except OSError:
                continue
            try:
                src = _Source(fd, os.fstat(fd))
                if accept(src):
                    return src
            except OSError:
                pass
            os.close(fd)
        return None

    def _seek_bounded(self, src: _Source, offset: int) -> None:
        """Seek to ``offset``, or to the first line of the last ``max_catchup`` bytes."""
        size = src.size()
        if size - offset > self.max_catchup:
            target = size - self.max_catchup
            if target > 0 and os.pread(src.fd, 1, target - 1) != b"\n":
                window = os.pread(src.fd, min(self.max_line + 1, size - target), target)
                newline = window.find(b"\n")
                if newline != -1:
                    target += newline + 1
            self.stats.skipped_bytes += target - offset
            log.warning(
                "mail log %s: %d bytes behind; skipped %d bytes to read the last %d",
                self.path,
                size - offset,
                target - offset,
                size - target,
            )
            offset = target
        src.seek(offset)

    # --- reading ------------------------------------------------------------------------------

    def _read(self, src: _Source, lines: list[str], budget: int) -> int:
        """Append ``src``'s new complete lines to ``lines``; returns the budget left."""
        try:
            while budget > 0:
                chunk = os.pread(src.fd, min(_CHUNK, budget), src.read_offset)
                if not chunk:
                    break
                budget -= len(chunk)
                src.last_data = self._clock()
                lines.extend(src.feed(chunk, self.max_line, self.stats))
        except OSError as exc:
            self._complain(f"io:{exc.errno}", "reading mail log %s failed: %s", self.path, exc)
            if src is self._cur:
                self._drop_current()
            else:
                self._retired.remove(src)
                src.close()
        return budget

    def _retire_done(self, src: _Source) -> None:
        if src.buf:
            self.stats.partial_lines += 1
            log.warning("mail log %s: rotated file ended inside a line; dropped it", self.path)
        self._retired.remove(src)
        src.close()

    def _drop_current(self) -> None:
        """Forget the open file after an I/O error; the next poll reopens and resumes."""
        if self._cur is not None:
            self._resume = self._cur.position
            self._cur.close()
            self._cur = None


class JournalReader:
    """Postfix's records from journald: `journalctl --follow --output=json` limited to the
    configured syslog identifiers, one JSON object per line, each cut at `MAX_RECORD` bytes.
    journalctl runs in its own process group (ddnsagent.process), ended when reading stops."""

    MAX_RECORD = 1_000_000

    def __init__(self, identifiers: tuple[str, ...]) -> None:
        self.argv = ["journalctl", "--follow", "--output=json", "--lines=0"]
        for ident in identifiers:
            self.argv += ["-t", ident]

    async def records(self) -> AsyncIterator[str]:
        """Each record as text; OSError when journalctl cannot be started."""
        proc = await process.follow(self.argv)
        assert proc.stdout is not None
        try:
            async for raw in proc.stdout:
                yield raw[: self.MAX_RECORD].decode(errors="replace")
        finally:
            await process.stop(proc, grace=0)


QUEUE_TIMEOUT = 30.0
"""Seconds `postqueue -j` may take; its process group is killed after that."""
MAX_QUEUE_LINES = 100_000
"""Queue files looked at (one JSON line each); a queue this long is itself a problem."""
MAX_QUEUE_FAILURES = 1000
"""Failures kept from one reading: enough to confirm, bounded whatever the queue holds."""


@dataclass
class QueueReading:
    """What `postqueue -j` said: the recipients it holds because of the relay, or why it could
    not be asked (`problem`: the command, how it ended, the end of what it wrote to stderr)."""

    failures: list[QueuedFailure] = field(default_factory=list)
    files: int = 0
    problem: str | None = None


async def read_queue(
    argv: Sequence[str],
    relay_host: str,
    patterns: Sequence[re.Pattern[str]] = DEFAULT_RATE_PATTERNS,
    timeout: float = QUEUE_TIMEOUT,
) -> QueueReading:
    """Run the queue listing (through ddnsagent.process: no shell, own process group, hard time
    limit) and classify each queued recipient's delay_reason as it streams in, so the output cap
    on what process.py keeps never hides a queue file; never raises for a failing command."""
    reading = QueueReading()
    objects = 0

    def on_line(line: str) -> None:
        nonlocal objects
        reading.files += 1
        objects += line.startswith("{")
        if reading.files > MAX_QUEUE_LINES or len(reading.failures) >= MAX_QUEUE_FAILURES:
            return
        reading.failures.extend(parse_queue_json(line, relay_host, patterns))

    result = await process.run_async(argv, timeout, separate_stderr=True, on_line=on_line)
    if not result.ok:
        said = result.errors.splitlines()[-1:] if result.errors else []
        reading.problem = f"`{' '.join(result.argv)}` " + (
            result.problem
            or (
                f"was killed by signal {-result.returncode}"
                if result.returncode is not None and result.returncode < 0
                else f"exited {result.returncode}"
            )
        )
        if said:
            reading.problem += f": {said[0][: process.QUOTED]}"
    elif reading.files and not objects:
        reading.problem = f"`{' '.join(result.argv)}` printed no JSON (is -j missing?)"
    return reading


async def probe(host: str, port: int, timeout: float) -> str | None:
    """Open a TCP connection to ``host``:``port`` and close it at once (nothing is sent);
    ``None`` when it connected, else why not. Bounded by ``timeout`` seconds in all."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except TimeoutError:
        return f"no answer within {timeout:g}s"
    except OSError as exc:
        # asyncio puts "Connect call failed (…)" in strerror; the errno says what happened.
        return os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), 1.0)
    return None
