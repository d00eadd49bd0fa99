"""`command:PATH ARGS…`: a program of the user's that prints the address (e.g. asks the router)."""

from __future__ import annotations

import shlex

from ddnsagent import process
from ddnsagent.address import IPAddress, parse_single
from ddnsagent.errors import DetectError

MAX_OUTPUT = 1024


async def lookup(command: str, family: int, timeout: float) -> IPAddress:
    argv = shlex.split(command)
    done = await process.run_async(argv, timeout, separate_stderr=True)
    if done.timed_out:
        raise DetectError(f"no answer within {timeout:g}s, killed")
    if not done.started:
        why = done.problem.removeprefix("could not be started: ")
        raise DetectError(f"cannot run {argv[0] if argv else command!r}: {why}")
    if not done.ok:
        detail = done.errors.splitlines()[-1:] or [""]
        raise DetectError(f"exited with status {done.returncode} {detail[0][:120]}".rstrip())
    try:
        return parse_single(done.output[:MAX_OUTPUT], family)
    except ValueError as exc:
        raise DetectError(f"printed {exc}") from None
