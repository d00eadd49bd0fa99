"""Secrets: where they come from, and the promise that they never reach output.

A `Secret` is read when it is needed (so `check-config` on the example works without an account),
and every value read is registered with the log redactor before anyone can print it.

The mask replaces what could only be a secret, never our own words: a value shorter than the
shortest password a supported service accepts is not masked (`MIN_MASKED`), nor is a word or
phrase that ddnsagent's own source uses ("wrong", "password", "dry-run") — masking those would
mangle our messages, and the "***" would tell an onlooker what the password is.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import stat
import threading
from pathlib import Path

from ddnsagent.errors import ConfigError, SecretUnavailable

log = logging.getLogger(__name__)

# Dynu, a dyndns2 preset, accepts passwords of 4 to 20 characters, the shortest minimum among
# the services ddnsagent names (http://downloads.dynu.com/en-us/knowledgebase/accountpassword:
# "Your password must be 4-20 characters long"). Shorter values are not masked.
MIN_MASKED = 4
# Bounds for reading our own source as the vocabulary the mask must not touch.
_VOCABULARY_FILES = 500
_VOCABULARY_BYTES = 8 * 1024 * 1024

_lock = threading.Lock()
_known: set[str] = set()
_ours: dict[str, bool] = {}  # value → whether it is a word/phrase of our own source
_vocabulary: tuple[frozenset[str], str] | None = None  # (lowercase words, lowercase text)


class SecretSourceError(SecretUnavailable):
    """A secret's source cannot be read; `fix` says how to set it up (env var, file,
    credential), so the message never ends in a circular "fix the secret's source"."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.fix = fix


def register(value: str) -> None:
    """Remember a secret and the encodings it travels in, so logs can mask all of them."""
    if len(value) < MIN_MASKED:
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
    """`text` with every registered secret replaced by "***" — except values that are words
    or phrases of our own (see the module's docstring), which are left alone."""
    with _lock:
        known = sorted(_known, key=len, reverse=True)
    for value in known:
        if value in text and not is_our_word(value):
            text = text.replace(value, "***")
    return text


def is_our_word(value: str) -> bool:
    """Whether `value` is a word or phrase of ddnsagent's own source (case-insensitive, on word
    boundaries). Read from the source files once, only when a registered value shows up in a
    text or an alphabetic secret is read; a process that never meets one never pays for it."""
    with _lock:
        known = _ours.get(value)
    if known is not None:
        return known
    words, text = _load_vocabulary()
    lowered = value.lower()
    one_word = re.fullmatch(r"\w+", lowered) is not None
    found = lowered in words if one_word else _phrase_in(lowered, text)
    with _lock:
        _ours[value] = found
    return found


def _phrase_in(phrase: str, text: str) -> bool:
    """`phrase` occurs in `text` with no word character touching it on either side."""
    start = text.find(phrase)
    for _ in range(10_000):  # bounded: a phrase that common is ours anyway
        if start < 0:
            return False
        before, after = text[start - 1 : start], text[start + len(phrase) : start + len(phrase) + 1]
        head_free = not (_wordish(phrase[0]) and _wordish(before))
        tail_free = not (_wordish(phrase[-1]) and _wordish(after))
        if head_free and tail_free:
            return True
        start = text.find(phrase, start + 1)
    return True


def _wordish(char: str) -> bool:
    return char.isalnum() or char == "_"


def _load_vocabulary() -> tuple[frozenset[str], str]:
    global _vocabulary
    with _lock:
        if _vocabulary is not None:
            return _vocabulary
    parts: list[str] = []
    size = 0
    try:
        files = sorted(Path(__file__).resolve().parent.rglob("*.py"))[:_VOCABULARY_FILES]
    except OSError:
        files = []
    for path in files:
        try:
            part = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue  # no source here (a bytecode-only install): fewer words, more masking
        size += len(part)
        if size > _VOCABULARY_BYTES:
            break
        parts.append(part.lower())
    text = "\n".join(parts)
    loaded = (frozenset(re.findall(r"\w+", text)), text)
    with _lock:
        _vocabulary = loaded
    return loaded


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
                raise SecretSourceError(
                    f"{key}: environment variable {var} is not set",
                    f"export {var}=… where you run ddnsagent by hand; the service sees only what "
                    "its unit sets (systemctl edit ddnsagent: EnvironmentFile= a mode-0600 file "
                    f'with {var}=…), or use {_base(key)}_file = "cred:NAME" with LoadCredential= '
                    "instead (README: Secrets)",
                )
            return value

        return cls(f"environment variable {var}", key, load)

    @classmethod
    def from_file(cls, path: Path, key: str) -> Secret:
        def load() -> str:
            try:
                check_private_file(path, f"{path} holds a secret ({key})")
                text = path.read_text(encoding="utf-8")
            except ConfigError as exc:  # the message says `chmod 600` already
                raise SecretUnavailable(str(exc)) from None
            except FileNotFoundError:
                raise SecretSourceError(
                    f"{key}: {path} does not exist",
                    f"create it with the secret on one line: install -m 600 /dev/null {path}, "
                    "then write the secret into it",
                ) from None
            except PermissionError:
                raise SecretSourceError(
                    f"{key}: cannot read {path}: permission denied (running as uid {os.getuid()})",
                    f"make it readable by the user ddnsagent runs as (chown USER {path}; chmod 600 "
                    f"{path}), or hand it to the service as a credential: {_base(key)}_file = "
                    f'"cred:NAME" with LoadCredential=NAME:{path}',
                ) from None
            except OSError as exc:
                raise SecretSourceError(
                    f"{key}: cannot read {path}: {exc.strerror}",
                    f"give a regular file that holds the secret on one line as {key}",
                ) from None
            value = text.strip()
            if not value:
                raise SecretSourceError(
                    f"{key}: {path} is empty", f"write the secret into {path} (one line)"
                )
            return value

        return cls(f"file {path}", key, load)

    @classmethod
    def from_credential(cls, name: str, key: str) -> Secret:
        """systemd's LoadCredential=: the file lives in $CREDENTIALS_DIRECTORY."""
        source = f"/etc/ddnsagent/{name}.secret"

        def load() -> str:
            base = os.environ.get("CREDENTIALS_DIRECTORY")
            if not base:
                raise SecretSourceError(
                    f"{key}: cred:{name} needs $CREDENTIALS_DIRECTORY, which systemd sets only "
                    f"in a unit with LoadCredential={name}:…",
                    f"for the service: systemctl edit ddnsagent, add [Service] "
                    f"LoadCredential={name}:{source}; to try it by hand, as root: systemd-run "
                    f"-p LoadCredential={name}:{source} --pipe --wait ddnsagent notify-now "
                    "--dry-run --local",
                )
            path = Path(base) / name
            try:
                value = path.read_text(encoding="utf-8").strip()
            except FileNotFoundError:
                raise SecretSourceError(
                    f"{key}: this unit has no credential {name} ({path} does not exist)",
                    f"add LoadCredential={name}:{source} to the unit (systemctl edit ddnsagent), "
                    "then restart it",
                ) from None
            except OSError as exc:
                raise SecretSourceError(
                    f"{key}: cannot read {path}: {exc.strerror}",
                    f"check the file LoadCredential={name}:… names",
                ) from None
            if not value:
                raise SecretSourceError(
                    f"{key}: {path} is empty",
                    f"write the secret into the file LoadCredential={name}:… names "
                    f"(e.g. {source}), then restart the unit",
                )
            return value

        return cls(f"credential {name}", key, load)

    def reveal(self) -> str:
        """The value; raises SecretUnavailable with a message that names the key and the
        source, and (SecretSourceError) a fix that says how to set it."""
        if self._value is None:
            assert callable(self._loader)
            value = self._loader()
            register(value)
            self._value = value
        _warn_if_unmaskable(self.key, self.origin, self._value)
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self.origin})"

    __str__ = __repr__


def _base(key: str) -> str:
    """`password` for `provider.home.password_env`: the key a `_file` variant is named after."""
    last = key.rsplit(".", 1)[-1]
    for suffix in ("_env", "_file"):
        last = last.removesuffix(suffix)
    return last


_warned: set[str] = set()


def _warn_if_unmaskable(key: str, origin: str, value: str) -> None:
    """Say once per key that a secret is too short or too common a word to be masked (never
    the value). Only an alphabetic value can be one of our words: others skip the lookup."""
    if key in _warned:
        return
    why = None
    if len(value) < MIN_MASKED:
        why = f"it is shorter than {MIN_MASKED} characters"
    elif value.isalpha() and is_our_word(value):
        why = "it is a word ddnsagent's own messages use"
    if why:
        _warned.add(key)
        log.warning(
            "%s (%s): logs and messages cannot hide this secret, because %s; choose a longer, "
            "random one",
            key,
            origin,
            why,
        )
