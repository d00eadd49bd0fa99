"""LogFollower against real files: rotation, truncation, restarts, partial and long lines."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ddnsagent.relay.sources import FollowPosition, LogFollower


def write(path: Path, text: str) -> None:
    with path.open("ab") as f:
        f.write(text.encode())


def numbered(start: int, stop: int) -> str:
    return "".join(f"line {n:06d}\n" for n in range(start, stop))


def expected(start: int, stop: int) -> list[str]:
    return [f"line {n:06d}" for n in range(start, stop)]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "maillog"


# --- basics -----------------------------------------------------------------------------------


def test_first_run_starts_at_the_end(log: Path) -> None:
    write(log, numbered(0, 10))
    follower = LogFollower(log)
    assert follower.poll() == []
    write(log, numbered(10, 12))
    assert follower.poll() == expected(10, 12)
    assert follower.poll() == []


def test_first_run_in_the_middle_of_a_line_skips_that_line(log: Path) -> None:
    write(log, numbered(0, 3) + "line 000003 half")
    follower = LogFollower(log)
    write(log, " done\n" + numbered(4, 6))
    assert follower.poll() == expected(4, 6)
    # The saved position is still before the skipped line: a restart skips it again.
    again = LogFollower(log, follower.position)
    assert again.poll() == []


def test_partial_last_line_is_held_until_complete(log: Path) -> None:
    log.touch()
    follower = LogFollower(log)
    write(log, "Dec 24 04:28:53 myhost post")
    assert follower.poll() == []
    pos = follower.position
    assert pos is not None and pos.offset == 0
    write(log, "fix/qmgr[2240]: x")
    assert follower.poll() == []
    write(log, "\nnext\n")
    assert follower.poll() == ["Dec 24 04:28:53 myhost postfix/qmgr[2240]: x", "next"]
    pos = follower.position
    assert pos is not None and pos.offset == log.stat().st_size


def test_non_utf8_bytes_are_replaced(log: Path) -> None:
    log.touch()
    follower = LogFollower(log)
    with log.open("ab") as f:
        f.write(b"caf\xe9 \xff\r\n")
    assert follower.poll() == ["caf\ufffd \ufffd\r"]


def test_over_long_lines_are_dropped_and_counted(log: Path) -> None:
    log.touch()
    follower = LogFollower(log, max_line=20)
    write(log, "short\n" + "x" * 21 + "\n" + "y" * 20 + "\n")
    assert follower.poll() == ["short", "y" * 20]
    assert follower.stats.long_lines == 1
    # A long line arriving in pieces is dropped without being kept in memory.
    for _ in range(50):
        write(log, "z" * 1000)
        assert follower.poll() == []
    write(log, "zz\nafter\n")
    assert follower.poll() == ["after"]
    assert follower.stats.long_lines == 2


def test_long_line_across_a_restart_is_dropped_again_not_split(log: Path) -> None:
    log.touch()
    follower = LogFollower(log, max_line=10)
    write(log, "ok\n" + "x" * 50)
    assert follower.poll() == ["ok"]
    position = follower.position
    assert position is not None and position.offset == 3
    write(log, "xxxx\nafter\n")
    assert LogFollower(log, position, max_line=10).poll() == ["after"]


def test_position_names_the_file_and_the_offset(log: Path) -> None:
    write(log, "a\n")
    position = LogFollower(log).position
    st = log.stat()
    assert position == FollowPosition(st.st_dev, st.st_ino, 2)


def test_bad_arguments(log: Path) -> None:
    with pytest.raises(ValueError):
        LogFollower(log, max_line=0)
    with pytest.raises(ValueError):
        LogFollower(log, max_catchup=-1)


# --- a missing file -------------------------------------------------------------------------


def test_a_file_that_appears_late_is_read_from_its_start(
    log: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ddnsagent.relay.sources")
    follower = LogFollower(log)
    assert follower.waiting and follower.position is None
    for _ in range(3):
        assert follower.poll() == []
    assert sum("does not exist" in r.getMessage() for r in caplog.records) == 1
    write(log, numbered(0, 3))
    assert follower.poll() == expected(0, 3)
    assert not follower.waiting
    assert any("following mail log" in r.getMessage() for r in caplog.records)


def test_a_directory_or_fifo_is_waited_on(log: Path) -> None:
    log.mkdir()
    follower = LogFollower(log)
    assert follower.poll() == [] and follower.waiting
    log.rmdir()
    os.mkfifo(log)
    assert follower.poll() == [] and follower.waiting


def _unreadable_scenario(log: Path) -> None:
    write(log, "a\n")
    log.chmod(0)
    follower = LogFollower(log)
    assert follower.poll() == [] and follower.waiting
    log.chmod(0o600)
    write(log, "b\n")
    assert follower.poll() == ["a", "b"]


def test_an_unreadable_file_is_waited_on(log: Path) -> None:
    if os.geteuid() != 0:
        _unreadable_scenario(log)
        return
    # Root reads everything: play the scenario in a forked child that became `nobody`, in a
    # directory it owns.
    import tempfile

    nobody = 65534
    with tempfile.TemporaryDirectory() as d:
        os.chown(d, nobody, nobody)
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 1
            try:
                os.setgroups([])
                os.setgid(nobody)
                os.setuid(nobody)
                _unreadable_scenario(Path(d) / "mail.log")
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_read_errors_are_survived_without_loss_or_repeats(
    log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log.touch()
    follower = LogFollower(log)
    write(log, numbered(0, 3))
    assert follower.poll() == expected(0, 3)
    write(log, numbered(3, 6))

    def broken(fd: int, n: int, offset: int) -> bytes:
        raise OSError(errno.EIO, "I/O error")

    with monkeypatch.context() as patch:
        patch.setattr("ddnsagent.relay.sources.os.pread", broken)
        assert follower.poll() == []
        assert follower.poll() == []
    assert follower.poll() == expected(3, 6)


def test_a_deleted_log_is_read_until_a_new_one_appears(log: Path) -> None:
    log.touch()
    follower = LogFollower(log)
    with log.open("ab", buffering=0) as old:
        log.unlink()
        old.write(numbered(0, 2).encode())
        assert follower.poll() == expected(0, 2)
        write(log, numbered(2, 4))
        assert follower.poll() == expected(2, 4)
    assert follower.stats.rotations == 1


def test_close_and_context_manager(log: Path) -> None:
    write(log, "a\n")
    with LogFollower(log) as follower:
        write(log, "b\n")
        assert follower.poll() == ["b"]
    assert follower.waiting
    position = follower.position
    assert position is not None and position.offset == 4
    write(log, "c\n")
    assert follower.poll() == ["c"]  # polling again reopens where it stopped


# --- restarts -------------------------------------------------------------------------------


def test_restart_resumes_where_it_stopped(log: Path) -> None:
    write(log, numbered(0, 5))
    first = LogFollower(log)
    write(log, numbered(5, 10))
    assert first.poll() == expected(5, 10)
    write(log, numbered(10, 12) + "line 000012 par")
    assert first.poll() == expected(10, 12)
    saved = first.position
    first.close()
    write(log, "tial\n" + numbered(13, 20))
    second = LogFollower(log, saved)
    assert second.poll() == ["line 000012 partial", *expected(13, 20)]


def test_restart_far_behind_skips_to_recent_lines(
    log: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(log, numbered(0, 10))
    first = LogFollower(log)
    position = first.position
    write(log, numbered(10, 1010))  # 12 bytes a line
    second = LogFollower(log, position, max_catchup=1000)
    lines = second.poll()
    assert lines == expected(1010 - len(lines), 1010)
    assert 1000 // 12 - 1 <= len(lines) <= 1000 // 12
    skipped = second.stats.skipped_bytes
    assert skipped == (1000 - len(lines)) * 12
    assert any("skipped" in r.getMessage() for r in caplog.records)


def test_restart_after_truncation_while_stopped(log: Path) -> None:
    write(log, numbered(0, 10))
    position = LogFollower(log).position
    with log.open("r+b") as f:
        f.truncate(0)
    write(log, numbered(10, 12))
    assert LogFollower(log, position).poll() == expected(10, 12)


def test_restart_after_rename_while_stopped_finishes_the_old_file(log: Path) -> None:
    write(log, numbered(0, 5))
    position = LogFollower(log).position
    write(log, numbered(5, 8))
    log.rename(log.with_name("maillog.1"))
    log.with_name("maillog.2.gz").write_bytes(b"\x1f\x8b whatever")
    write(log, numbered(8, 10))
    follower = LogFollower(log, position)
    assert follower.poll() == expected(5, 10)


def test_restart_after_rename_with_the_old_file_gone(log: Path) -> None:
    write(log, numbered(0, 5))
    position = LogFollower(log).position
    log.unlink()
    write(log, numbered(5, 7))
    follower = LogFollower(log, position)
    assert follower.poll() == expected(5, 7)
    assert follower.stats.lost_files == 1


def test_restart_with_the_file_missing_resumes_when_it_is_back(log: Path) -> None:
    write(log, numbered(0, 5))
    position = LogFollower(log).position
    moved = log.with_name("elsewhere")
    log.rename(moved)
    follower = LogFollower(log, position)
    assert follower.poll() == [] and follower.position == position
    write(moved, numbered(5, 6))
    moved.rename(log)
    assert follower.poll() == expected(5, 6)


# --- rotation, step by step ---------------------------------------------------------------------


def test_rename_rotation_with_late_writes_to_the_old_file(log: Path) -> None:
    """logrotate renames and creates the new file; syslog writes to the old one until HUP."""
    clock = FakeClock()
    log.touch()
    follower = LogFollower(log, rotate_grace=5.0, clock=clock)
    old = log.open("ab", buffering=0)
    old.write(numbered(0, 3).encode() + b"line 000003 ha")
    assert follower.poll() == expected(0, 3)
    log.rename(log.with_name("maillog.1"))
    log.touch()
    assert follower.poll() == []
    old.write(b"lf\n" + numbered(4, 6).encode())
    clock.now += 1
    assert follower.poll() == ["line 000003 half", *expected(4, 6)]
    old.close()
    write(log, numbered(6, 8))
    assert follower.poll() == expected(6, 8)
    assert follower.stats.rotations == 1
    clock.now += 10
    assert follower.poll() == []
    assert follower._retired == []  # the old file was let go after the grace period


def test_rotated_file_ending_inside_a_line(log: Path) -> None:
    clock = FakeClock()
    log.touch()
    follower = LogFollower(log, rotate_grace=1.0, clock=clock)
    write(log, "a\nb")
    log.rename(log.with_name("maillog.1"))
    write(log, "c\n")
    assert follower.poll() == ["a", "c"]
    clock.now += 2
    assert follower.poll() == []
    assert follower.stats.partial_lines == 1


def test_copytruncate_finishes_from_the_copy(log: Path) -> None:
    log.touch()
    follower = LogFollower(log)
    writer = log.open("ab", buffering=0)
    writer.write(numbered(0, 5).encode())
    assert follower.poll() == expected(0, 5)
    writer.write(numbered(5, 9).encode() + b"line 000009 ")  # not yet seen when the copy is made
    shutil.copyfile(log, log.with_name("maillog.1"))
    os.truncate(log, 0)
    writer.write(b"x\n" + numbered(10, 12).encode())
    # The copy holds "line 000009 " without an end; the new file starts with the rest of it.
    assert follower.poll() == [*expected(5, 9), "x", *expected(10, 12)]
    assert follower.stats.truncations == 1
    assert follower.stats.partial_lines == 1
    writer.close()


def test_copytruncate_refilled_past_the_old_offset(log: Path) -> None:
    log.touch()
    follower = LogFollower(log)
    write(log, numbered(0, 2))
    assert follower.poll() == expected(0, 2)
    os.truncate(log, 0)
    write(log, numbered(2, 20))  # longer than before: only the content says it was truncated
    assert follower.poll() == expected(2, 20)
    assert follower.stats.truncations == 1
    assert follower.stats.lost_files == 1  # no copy of it was kept


def test_poll_budget_keeps_order(log: Path) -> None:
    clock = FakeClock()
    log.touch()
    follower = LogFollower(log, max_poll_bytes=100, clock=clock)
    write(log, numbered(0, 30))
    log.rename(log.with_name("maillog.1"))
    write(log, numbered(30, 40))
    seen: list[str] = []
    for _ in range(20):
        seen += follower.poll()
    assert seen == expected(0, 40)


# --- rotation while a writer is writing -------------------------------------------------------


class Writer(threading.Thread):
    """Writes numbered lines, some in two pieces, and rotates the file every `every` lines.

    "rename" does what logrotate with "create" and a syslog daemon do: rename, create the new
    file, a few more lines into the old one (until the daemon's HUP), then reopen. Before
    rotating again the writer waits until the follower has noticed the last rotation, as a
    daily logrotate leaves plenty of polls between two rotations.
    """

    LATE_LINES = 3

    def __init__(
        self, path: Path, total: int, every: int, mode: str, noticed: Callable[[int], bool]
    ) -> None:
        super().__init__(daemon=True)
        self.path, self.total, self.every, self.mode = path, total, every, mode
        self.noticed = noticed
        self.rotations = 0
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            self._write_all()
        except BaseException as exc:  # reported by the test
            self.error = exc

    def _write_all(self) -> None:
        out = self.path.open("ab", buffering=0)
        reopen_at = -1
        try:
            for n in range(self.total):
                if self.stop.is_set():
                    return
                if n == reopen_at:
                    out.close()
                    out = self.path.open("ab", buffering=0)
                if n and n % self.every == 0:
                    self._wait_until_noticed()
                    self._rotate()
                    if self.mode == "rename":
                        reopen_at = n + self.LATE_LINES
                text = f"line {n:06d}\n".encode()
                if n % 3 == 0:
                    out.write(text[:5])
                    time.sleep(0)
                    out.write(text[5:])
                else:
                    out.write(text)
                if n % 50 == 0:
                    time.sleep(0.001)
        finally:
            out.close()

    def _wait_until_noticed(self) -> None:
        deadline = time.monotonic() + 10
        while not self.noticed(self.rotations) and time.monotonic() < deadline:
            time.sleep(0.001)

    def _rotate(self) -> None:
        for n in range(8, 0, -1):
            older = self.path.with_name(f"maillog.{n}")
            if older.exists():
                older.rename(self.path.with_name(f"maillog.{n + 1}"))
        if self.mode == "rename":
            self.path.rename(self.path.with_name("maillog.1"))
            self.path.touch()
        else:
            shutil.copyfile(self.path, self.path.with_name("maillog.1"))
            os.truncate(self.path, 0)
        self.rotations += 1


@pytest.mark.parametrize("mode", ["rename", "copytruncate"])
def test_rotation_while_writing(log: Path, mode: str) -> None:
    total, every = 3000, 400
    log.touch()
    follower = LogFollower(log)

    def noticed(rotations: int) -> bool:
        return follower.stats.rotations + follower.stats.truncations >= rotations

    writer = Writer(log, total, every, mode, noticed)
    seen: list[str] = []
    deadline = time.monotonic() + 60
    writer.start()
    try:
        while len(seen) < total and time.monotonic() < deadline:
            seen += follower.poll()
            time.sleep(0.0005)
    finally:
        writer.stop.set()
        writer.join(10)
    assert writer.error is None
    assert seen == expected(0, total)  # every line once, in order
    assert writer.rotations == (total - 1) // every
    assert follower.stats.long_lines == follower.stats.partial_lines == 0
    assert follower.stats.lost_files == 0
    time.sleep(0.01)
    assert follower.poll() == []


# --- any sequence of events -------------------------------------------------------------------


class Scenario:
    """A writer, logrotate and the agent taking turns, for the property below."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.clock = FakeClock()
        log.touch()
        self.follower = LogFollower(log, clock=self.clock, max_catchup=10_000)
        self.out = log.open("ab", buffering=0)
        self.stale = False  # the writer still has the renamed file open
        self.rest = b""  # the second half of a line begun
        self.n = 0
        self.seen: list[str] = []

    def line(self, half: bool) -> None:
        self.finish_line()
        text = f"line {self.n:06d}\n".encode()
        self.n += 1
        if half:
            self.out.write(text[:5])
            self.rest = text[5:]
        else:
            self.out.write(text)

    def finish_line(self) -> None:
        self.out.write(self.rest)
        self.rest = b""

    def reopen(self) -> None:
        self.finish_line()
        if self.stale:
            self.out.close()
            self.out = self.log.open("ab", buffering=0)
            self.stale = False

    def shift(self) -> None:
        for n in range(5, 0, -1):
            older = self.log.with_name(f"maillog.{n}")
            if older.exists():
                older.rename(self.log.with_name(f"maillog.{n + 1}"))

    def rename(self) -> None:
        self.reopen()
        self.shift()
        self.log.rename(self.log.with_name("maillog.1"))
        self.log.touch()
        self.stale = True

    def copytruncate(self) -> None:
        self.reopen()
        self.shift()
        shutil.copyfile(self.log, self.log.with_name("maillog.1"))
        os.truncate(self.log, 0)

    def poll(self) -> None:
        self.seen += self.follower.poll()

    def failing_poll(self) -> None:
        def broken(fd: int, n: int, offset: int) -> bytes:
            raise OSError(errno.EIO, "I/O error")

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("ddnsagent.relay.sources.os.pread", broken)
            self.poll()

    def restart(self) -> None:
        position = self.follower.position
        self.follower.close()
        self.follower = LogFollower(self.log, position, clock=self.clock, max_catchup=10_000)

    def tick(self) -> None:
        self.clock.now += 10


STEPS = ["line", "half", "poll", "poll", "rename", "reopen", "copytruncate", "tick", "restart",
         "failing_poll"]  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(st.sampled_from(STEPS), max_size=40))
def test_no_line_is_ever_read_twice_or_out_of_order(steps: list[str]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        scenario = Scenario(Path(directory) / "maillog")
        for step in steps:
            if step in ("line", "half"):
                scenario.line(half=step == "half")
            else:
                getattr(scenario, step)()
        scenario.reopen()
        scenario.poll()
        scenario.out.close()
        scenario.follower.close()
    numbers = [int(line.removeprefix("line ")) for line in scenario.seen]
    assert numbers == sorted(set(numbers))
    assert all(line == f"line {n:06d}" for line, n in zip(scenario.seen, numbers, strict=True))
    if not {"rename", "copytruncate", "restart", "failing_poll"} & set(steps):
        assert numbers == list(range(scenario.n))
