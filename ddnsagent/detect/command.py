"""`command:PATH ARGS…`: a program of the user's that prints the address (e.g. asks the router)."""

from __future__ import annotations

import asyncio
import shlex

from ddnsagent.address import IPAddress, parse_single
from ddnsagent.errors import DetectError

MAX_OUTPUT = 1024


async def lookup(command: str, family: int, timeout: float) -> IPAddress:
    argv = shlex.split(command)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=None,
        )
    except OSError as exc:
        raise DetectError(f"cannot run {argv[0]}: {exc.strerror}") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise DetectError(f"no answer within {timeout:g}s, killed") from None
    if proc.returncode != 0:
        detail = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise DetectError(f"exited with status {proc.returncode} {detail[0][:120]}".rstrip())
    try:
        return parse_single(out[:MAX_OUTPUT].decode(errors="replace"), family)
    except ValueError as exc:
        raise DetectError(f"printed {exc}") from None
