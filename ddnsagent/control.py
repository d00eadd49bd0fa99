"""The local control channel: a unix socket through which hook scripts and `ddnsagent reconnect`
ask a running daemon to act, and wait for the result.

One JSON line in, one JSON line out. The socket is created with mode 0600 in the runtime
directory, so only its owner (and root) can drive the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAX_REQUEST = 64 * 1024

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def default_socket_path() -> Path:
    """$RUNTIME_DIRECTORY (systemd), /run/ddnsagent for root, else the user runtime dir."""
    runtime = os.environ.get("RUNTIME_DIRECTORY")
    if runtime:
        return Path(runtime.split(":")[0]) / "control.sock"
    if os.geteuid() == 0:
        return Path("/run/ddnsagent/control.sock")
    import platformdirs

    return Path(platformdirs.user_runtime_dir("ddnsagent")) / "control.sock"


async def serve(path: Path, handler: Handler) -> asyncio.AbstractServer:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a socket left by a killed daemon

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            try:
                request = json.loads(line[:MAX_REQUEST])
                if not isinstance(request, dict):
                    raise ValueError("not an object")
            except ValueError as exc:
                reply: dict[str, Any] = {"ok": False, "error": f"bad request: {exc}"}
            else:
                try:
                    reply = await handler(request)
                except Exception as exc:
                    log.exception("control request failed")
                    reply = {"ok": False, "error": str(exc)}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    old_umask = os.umask(0o177)
    try:
        server = await asyncio.start_unix_server(on_client, path=str(path), limit=MAX_REQUEST)
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    return server


async def request(path: Path, payload: dict[str, Any], timeout: float) -> dict[str, Any] | None:
    """The daemon's answer; None when no daemon listens. Raises TimeoutError when it is slow."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_unix_connection(str(path), limit=4 * 1024 * 1024), timeout
        )
    except (FileNotFoundError, ConnectionRefusedError):
        return None
    try:
        writer.write(json.dumps(payload).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    if not line:
        return None
    answer: dict[str, Any] = json.loads(line)
    return answer
