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
import threading
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
            data = _validated(json.loads(raw))
        except (ValueError, RecursionError) as exc:
            aside = self._aside_path()
            with contextlib.suppress(OSError):
                os.replace(self.path, aside)
            log.warning(
                "state file %s was unreadable (%s); moved aside to %s and starting fresh",
                self.path,
                str(exc)[:100] or type(exc).__name__,
                aside,
            )
            data = _empty()
        self.data = data
        return self

    def _aside_path(self) -> Path:
        """A name no earlier corrupt file has, so a second one in a second keeps the first."""
        base = f"{FILENAME}.corrupt-{int(time.time())}"
        for n in range(1000):
            aside = self.path.with_name(base if n == 0 else f"{base}.{n}")
            if not aside.exists():
                return aside
        return self.path.with_name(f"{base}.{os.getpid()}")

    def save(self) -> None:
        self.ensure_dir()
        payload = json.dumps(self.data, indent=1, sort_keys=True).encode() + b"\n"
        tmp = self.path.with_name(f".{FILENAME}.tmp")  # saves happen under the state lock
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            give_to_directory_owner(fd, self.directory)
            view = memoryview(payload)
            while view:  # os.write may write less than asked
                view = view[os.write(fd, view) :]
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


def _validated(data: Any) -> dict[str, Any]:
    """`data` if it has the shape the agent relies on; ValueError naming the first flaw."""
    if not isinstance(data, dict):
        raise ValueError(f"not a JSON object but {type(data).__name__}")
    if data.get("version") != VERSION:
        raise ValueError(f"unknown version {data.get('version')!r}")
    for key in ("detected", "targets"):
        section = data.get(key)
        if not isinstance(section, dict):
            raise ValueError(f"{key!r} is not an object")
        for name, entry in section.items():
            if not isinstance(entry, dict):
                raise ValueError(f"{key}.{name} is not an object")
    salt = data.get("salt")
    try:
        if not isinstance(salt, str) or len(bytes.fromhex(salt)) < 16:
            raise ValueError
    except ValueError:
        # Only the fingerprints depend on the salt: renew it and forget them, so that the new
        # salt is not mistaken for a configuration change (which would lift stops).
        data["salt"] = os.urandom(16).hex()
        for entry in data["targets"].values():
            entry.pop("config_fp", None)
            entry.pop("secret_fp", None)
    return data


def give_to_directory_owner(fd: int, directory: Path) -> None:
    """Root (a hook, `notify-now` by hand) writing into the service's own state directory must
    leave files the service can still read: they take the directory's owner."""
    if os.geteuid() != 0:
        return
    with contextlib.suppress(OSError):
        st = os.stat(directory)
        if st.st_uid != 0:
            os.fchown(fd, st.st_uid, st.st_gid)


class StateLock:
    """The exclusive lock beside the state; waits up to `timeout` for another process."""

    # Set while this process shuts down, so that a thread waiting for the lock lets it exit now
    # instead of holding the exit back for up to `timeout` (the daemon on SIGTERM).
    _give_up = threading.Event()

    def __init__(self, directory: Path, timeout: float) -> None:
        self.directory = directory
        self.timeout = timeout
        self._fd: int | None = None

    @classmethod
    def give_up_waiting(cls, give_up: bool = True) -> None:
        """End every wait for the lock in this process now (and refuse new ones); False re-arms."""
        if give_up:
            cls._give_up.set()
        else:
            cls._give_up.clear()

    def acquire(self) -> None:
        path = self.directory / "lock"
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            give_to_directory_owner(fd, self.directory)
        except OSError as exc:
            raise DdnsagentError(
                f"cannot open the state lock {path}: {exc.strerror} — "
                "set [agent] state_dir to a writable directory"
            ) from None
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._fd = fd
                return
            except BlockingIOError:
                if self._give_up.is_set():
                    os.close(fd)
                    raise StateLockTimeout(f"stopped waiting for {path}: shutting down") from None
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise StateLockTimeout(
                        f"another ddnsagent process (the daemon, or a notify-now) held {path} "
                        f"for over {self.timeout:g}s; try again later, or raise "
                        "[agent] lock_timeout if its syncs are that slow"
                    ) from None
                time.sleep(0.05)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
