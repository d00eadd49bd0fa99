"""What the agent remembers between runs, kept so that a crash or kill at any moment loses nothing.

The state is one versioned JSON file, replaced atomically (temp file, fsync, rename, fsync of the
directory): a reader sees the old or the new file, never a torn one. A file that still fails to
parse (disk trouble, a hand edit) is moved aside and the agent starts over as on a first run —
the worst case is one extra update, never a dead agent. Syncs from different processes (the
daemon, `notify-now`, hook scripts) take an exclusive lock beside it, so they queue instead of
racing.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from ddnsagent.errors import DdnsagentError, StateLockTimeout

log = logging.getLogger(__name__)

VERSION = 1
FILENAME = "state.json"


def _empty() -> dict[str, Any]:
    return {"version": VERSION, "salt": os.urandom(16).hex(), "detected": {}, "targets": {}}


class State:
    """A dict with load/save; targets[name] holds what was last sent and any stop or back-off."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / FILENAME
        self.data: dict[str, Any] = _empty()

    def ensure_dir(self) -> None:
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise DdnsagentError(
                f"cannot create the state directory {self.directory}: {exc.strerror} — "
                "set [agent] state_dir to a writable directory"
            ) from None

    def load(self) -> State:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            self.data = _empty()
            return self
        except OSError as exc:
            raise DdnsagentError(f"cannot read {self.path}: {exc.strerror}") from None
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("version") != VERSION:
                raise ValueError(f"unknown version {data.get('version')!r}")
            for key in ("detected", "targets"):
                if not isinstance(data.get(key), dict):
                    raise ValueError(f"{key!r} is not an object")
            if not isinstance(data.get("salt"), str):
                data["salt"] = os.urandom(16).hex()
        except ValueError as exc:
            aside = self.path.with_name(f"{FILENAME}.corrupt-{int(time.time())}")
            with contextlib.suppress(OSError):
                os.replace(self.path, aside)
            log.warning(
                "state file %s was unreadable (%s); moved aside to %s and starting fresh",
                self.path,
                str(exc)[:100],
                aside,
            )
            data = _empty()
        self.data = data
        return self

    def save(self) -> None:
        self.ensure_dir()
        payload = json.dumps(self.data, indent=1, sort_keys=True).encode() + b"\n"
        tmp = self.path.with_name(f".{FILENAME}.tmp")  # saves happen under the state lock
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def target(self, name: str) -> dict[str, Any]:
        targets: dict[str, Any] = self.data["targets"]
        return targets.setdefault(name, {})


class StateLock:
    """The exclusive lock beside the state; waits up to `timeout` for another process."""

    def __init__(self, directory: Path, timeout: float) -> None:
        self.directory = directory
        self.timeout = timeout
        self._fd: int | None = None

    def acquire(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._fd = fd
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise StateLockTimeout(
                        f"another ddnsagent held {self.directory / 'lock'} "
                        f"for over {self.timeout:g}s"
                    ) from None
                time.sleep(0.05)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
