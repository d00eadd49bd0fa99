"""Secrets: where they come from, and the promise that they never reach output.

A `Secret` is read when it is needed (so `check-config` on the example works without an account),
and every value read is registered with the log redactor before anyone can print it.
"""

from __future__ import annotations

import base64
import os
import stat
import threading
from pathlib import Path

from ddnsagent.errors import ConfigError, SecretUnavailable

_lock = threading.Lock()
_known: set[str] = set()


def register(value: str) -> None:
    """Remember a secret and the encodings it travels in, so logs can mask all of them."""
    if len(value) < 3:
        return
    forms = {value, base64.b64encode(value.encode()).decode()}
    with _lock:
        _known.update(forms)


def register_basic_auth(user: str, password: str) -> None:
    register(password)
    register(f"{user}:{password}")


def register_query_value(value: str) -> None:
    """Mask `value` also as it appears in a URL once it is percent-encoded (tokens that
    travel in a query string: DuckDNS, dynv6)."""
    from urllib.parse import quote_plus

    register(value)
    encoded = quote_plus(value)
    if encoded != value:
        register(encoded)


def redact(text: str) -> str:
    with _lock:
        known = sorted(_known, key=len, reverse=True)
    for value in known:
        if value in text:
            text = text.replace(value, "***")
    return text


def check_private_file(path: Path, why: str) -> None:
    """Refuse a secret-bearing file that group or others can read."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            path,
            "",
            f"{why} but the file is readable by others (mode {stat.S_IMODE(mode):04o})",
            f"run: chmod 600 {path}",
        )


class Secret:
    """A password or token, read lazily from one place."""

    def __init__(self, origin: str, key: str, loader: object) -> None:
        self.origin = origin  # e.g. "file /etc/ddnsagent/mydns.secret" — safe to print
        self.key = key
        self._loader = loader
        self._value: str | None = None

    @classmethod
    def inline(cls, value: str, key: str) -> Secret:
        register(value)
        s = cls("the configuration file", key, None)
        s._value = value
        return s

    @classmethod
    def from_env(cls, var: str, key: str) -> Secret:
        def load() -> str:
            value = os.environ.get(var)
            if not value:
                raise SecretUnavailable(f"{key}: environment variable {var} is not set")
            return value

        return cls(f"environment variable {var}", key, load)

    @classmethod
    def from_file(cls, path: Path, key: str) -> Secret:
        def load() -> str:
            try:
                check_private_file(path, f"{path} holds a secret ({key})")
                text = path.read_text(encoding="utf-8")
            except ConfigError as exc:
                raise SecretUnavailable(str(exc)) from None
            except OSError as exc:
                raise SecretUnavailable(f"{key}: cannot read {path}: {exc.strerror}") from None
            value = text.strip()
            if not value:
                raise SecretUnavailable(f"{key}: {path} is empty")
            return value

        return cls(f"file {path}", key, load)

    @classmethod
    def from_credential(cls, name: str, key: str) -> Secret:
        """systemd's LoadCredential=: the file lives in $CREDENTIALS_DIRECTORY."""

        def load() -> str:
            base = os.environ.get("CREDENTIALS_DIRECTORY")
            if not base:
                raise SecretUnavailable(
                    f"{key}: cred:{name} needs $CREDENTIALS_DIRECTORY "
                    "(set by systemd's LoadCredential=)"
                )
            path = Path(base) / name
            try:
                value = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise SecretUnavailable(f"{key}: cannot read {path}: {exc.strerror}") from None
            if not value:
                raise SecretUnavailable(f"{key}: {path} is empty")
            return value

        return cls(f"credential {name}", key, load)

    def reveal(self) -> str:
        """The value; raises SecretUnavailable with a message that names the key and the fix."""
        if self._value is None:
            assert callable(self._loader)
            value = self._loader()
            register(value)
            self._value = value
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self.origin})"

    __str__ = __repr__
