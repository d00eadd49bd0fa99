"""The one place that starts other programs.

Every command comes from the configuration as an argv list and runs without a shell, in its own
process group, with stdin closed (or fed a given text), its output captured up to a cap, and a
hard time limit: at the limit the whole group is killed (pppd helpers like `pon`, or a hung
`rndc`, leave children behind), so no caller waits longer than it asked. `Outcome` says what
ran and how it ended in one line, for messages and logs.

`run` blocks (zone commands run in a worker thread, the doctor from the command line);
`run_async` is for the event loop (reconnect, flush, detection, unbound-control); `follow`
starts a long-running reader (journalctl) whose group `stop` ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

OUTPUT_CAP = 64 * 1024  # bytes of output kept; the rest is read and dropped
QUOTED = 400  # characters of output quoted in a message
KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL for an async command past its limit
LINE_LIMIT = 1 << 20  # bytes of one line `on_line` sees; a longer line is skipped, not a stall


@dataclass(frozen=True)
class Outcome:
    """What one command did. `returncode` is None when it did not start or did not finish."""

    argv: tuple[str, ...]
    returncode: int | None
    output: str  # stdout (with stderr interleaved unless asked for apart), stripped
    problem: str = ""  # why it did not run or finish
    errors: str = ""  # stderr, when asked for apart
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def started(self) -> bool:
        return not self.problem or self.timed_out

    def describe(self) -> str:
        """One line: the command, how it ended, and the end of its output."""
        shown = " ".join(self.argv)
        if self.problem:
            result = self.problem
        elif self.returncode is not None and self.returncode < 0:
            result = f"was killed by signal {-self.returncode}"
        else:
            result = f"exited {self.returncode}"
        text = " ".join((self.output or self.errors).split())
        if len(text) > QUOTED:
            text = "…" + text[-QUOTED:]
        return f"`{shown}` {result}" + (f": {text}" if text else "")


def expand(argv: Sequence[str], values: Mapping[str, str]) -> tuple[str, ...]:
    """Replace `{key}` placeholders (only the given keys; other braces stay as written)."""
    out = []
    for arg in argv:
        for key, value in values.items():
            arg = arg.replace("{" + key + "}", value)
        out.append(arg)
    return tuple(out)


def _not_started(args: tuple[str, ...], exc: OSError) -> Outcome:
    return Outcome(args, None, "", f"could not be started: {exc.strerror or exc}")


def _text(data: bytes | None) -> str:
    return (data or b"")[:OUTPUT_CAP].decode("utf-8", "replace").strip()


def run(
    argv: Sequence[str],
    timeout: float,
    *,
    stdin: str | None = None,
    cwd: str | None = None,
    separate_stderr: bool = False,
) -> Outcome:
    """Run `argv` and wait at most `timeout` seconds (blocking)."""
    args = tuple(argv)
    if not args:
        return Outcome(args, None, "", "is empty")
    try:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if separate_stderr else subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
        )
    except OSError as exc:
        return _not_started(args, exc)
    data = stdin.encode() if stdin is not None else None
    try:
        out, err = proc.communicate(data, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return Outcome(
            args,
            None,
            _text(out),
            f"did not finish within {timeout:g}s and was killed",
            _text(err),
            timed_out=True,
        )
    except BaseException:
        _kill_group(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    return Outcome(args, proc.returncode, _text(out), "", _text(err))


async def run_async(
    argv: Sequence[str],
    timeout: float,
    *,
    stdin: str | None = None,
    separate_stderr: bool = False,
    on_line: Callable[[str], None] | None = None,
) -> Outcome:
    """Run `argv` from the event loop and wait at most `timeout` seconds; `on_line` sees each
    line of output as it comes (a reconnect script's progress goes to the log)."""
    args = tuple(argv)
    if not args:
        return Outcome(args, None, "", "is empty")
    try:
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE if separate_stderr else asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        return _not_started(args, exc)
    streams = [proc.stdout, proc.stderr] if separate_stderr else [proc.stdout]
    kept: list[bytearray] = [bytearray() for _ in streams]

    async def drain(index: int) -> None:
        """Keep up to OUTPUT_CAP bytes; hand `on_line` each stdout line, skipping (never
        stalling on) a line longer than LINE_LIMIT."""
        stream = streams[index]
        assert stream is not None
        pending = bytearray()
        dropping = False  # inside a line that was too long: skip to its end
        while chunk := await stream.read(1 << 16):
            if len(kept[index]) < OUTPUT_CAP:
                kept[index] += chunk[: OUTPUT_CAP - len(kept[index])]
            if on_line is None or index != 0:
                continue
            pending += chunk
            while (end := pending.find(b"\n")) >= 0:
                line = bytes(pending[:end])
                del pending[: end + 1]
                if not dropping:
                    on_line(line.decode("utf-8", "replace").rstrip())
                dropping = False
            if len(pending) > LINE_LIMIT:
                pending.clear()
                dropping = True
        if pending and not dropping and on_line is not None:
            on_line(pending.decode("utf-8", "replace").rstrip())

    async def feed() -> None:
        if stdin is not None and proc.stdin is not None:
            with contextlib.suppress(ConnectionError):
                proc.stdin.write(stdin.encode())
                await proc.stdin.drain()
            proc.stdin.close()

    readers = [asyncio.create_task(drain(i)) for i in range(len(streams))]
    readers.append(asyncio.create_task(feed()))
    timed_out = False
    try:
        await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        timed_out = True
        await stop(proc)
    except BaseException:
        _kill_group(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            await asyncio.shield(proc.wait())
        raise
    finally:
        # The group is gone or the program closed its output: what is left to read is short.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*readers, return_exceptions=True), 1.0)
        for reader in readers:
            reader.cancel()
    out = _text(bytes(kept[0]))
    err = _text(bytes(kept[1])) if separate_stderr else ""
    if timed_out:
        problem = f"did not finish within {timeout:g}s; its process group was killed"
        return Outcome(args, None, out, problem, err, timed_out=True)
    return Outcome(args, proc.returncode, out, "", err)


async def follow(argv: Sequence[str]) -> asyncio.subprocess.Process:
    """Start a long-running reader (stdout piped, stderr dropped) in its own process group;
    OSError when it cannot start. End it with `stop`."""
    return await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )


async def stop(proc: asyncio.subprocess.Process, grace: float = KILL_GRACE) -> None:
    """SIGTERM to the process group, SIGKILL after `grace` seconds; waits for the end."""
    if proc.returncode is not None:
        return
    _kill_group(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except TimeoutError:
        _kill_group(proc.pid, signal.SIGKILL)
        await proc.wait()


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
