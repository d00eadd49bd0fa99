"""Run the operator's check, reload, freeze and thaw commands.

Each command is an argv list from the configuration, run without a shell, with a timeout and
its output captured, so a message can say exactly what ran and what it answered.  A timed-out
command is killed with its whole process group: a hung ``rndc`` must not keep a sync waiting.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

_OUTPUT_LIMIT = 400  # characters of output quoted in a message


@dataclass(frozen=True)
class Outcome:
    """What one command did. `returncode` is None when it did not run or did not finish."""

    argv: tuple[str, ...]
    returncode: int | None
    output: str  # stdout and stderr, interleaved, stripped
    problem: str = ""  # why it did not run or finish

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def describe(self) -> str:
        """One line: the command, how it ended, and the end of its output."""
        shown = " ".join(self.argv)
        if self.problem:
            result = self.problem
        elif self.returncode is not None and self.returncode < 0:
            result = f"was killed by signal {-self.returncode}"
        else:
            result = f"exited {self.returncode}"
        text = " ".join(self.output.split())
        if len(text) > _OUTPUT_LIMIT:
            text = "…" + text[-_OUTPUT_LIMIT:]
        return f"`{shown}` {result}" + (f": {text}" if text else "")


def expand(argv: Sequence[str], values: Mapping[str, str]) -> tuple[str, ...]:
    """Replace `{key}` placeholders (only the given keys; other braces stay as written)."""
    out = []
    for arg in argv:
        for key, value in values.items():
            arg = arg.replace("{" + key + "}", value)
        out.append(arg)
    return tuple(out)


def run(argv: Sequence[str], timeout: float, cwd: str | None = None) -> Outcome:
    """Run `argv` (no shell) and wait at most `timeout` seconds."""
    args = tuple(argv)
    if not args:
        return Outcome(args, None, "", "is empty")
    try:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,  # its own process group, so a timeout kills all of it
        )
    except OSError as exc:
        return Outcome(args, None, "", f"could not be started: {exc.strerror or exc}")
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        output, _ = proc.communicate()
        text = output.decode("utf-8", "replace").strip()
        return Outcome(args, None, text, f"did not finish within {timeout:g}s and was killed")
    except BaseException:
        _kill_group(proc)
        proc.wait()
        raise
    return Outcome(args, proc.returncode, output.decode("utf-8", "replace").strip())


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
