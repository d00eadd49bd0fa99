"""Reading one TOML table: every mistake names the file, the key path, what was found and the
fix; keys nobody read are refused, because a typo must never silently disable something.

This is the bottom floor of configuration: it knows no section. Each section's owner reads its
own keys through a `Table`; `config.py` only assembles the sections.
"""

from __future__ import annotations

import datetime
import difflib
import importlib
import re
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

from ddnsagent.address import check_url
from ddnsagent.durations import parse_duration
from ddnsagent.errors import ConfigError
from ddnsagent.secrets import Secret, check_private_file

MISSING: Any = object()

# A key holds a secret when `Table.secret` reads it inline, or when a word of its name says so
# (`token`, `api_key`, a `credentials` table, `[notify] urls`): its value is never shown in a
# message, whatever its type — a mistyped password must not reach the journal through
# `check-config` (which systemd's ExecReload runs). `…_file` and `…_env` say where a secret
# is, not what it is, and are shown.
SECRET_WORDS = frozenset(
    {
        *("password", "passwd", "pass", "pin", "token", "secret", "secrets", "key", "apikey"),
        *("credential", "credentials", "auth", "urls"),
    }
)
_WORD = re.compile(r"[^a-z0-9]+")
# The authority of a URL ("user:password@host"), scheme and "//" optional.
_AUTHORITY = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*:)?(?://)?([^/?#]*)")


def _kind(value: Any) -> str:
    """What a TOML value is, without showing it."""
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime.date | datetime.time):
        return "a date or time"
    return type(value).__name__


class Table:
    """A view on one TOML table that remembers its key path and which keys were read."""

    def __init__(self, data: dict[str, Any], path: str, file: Path) -> None:
        self.data = data
        self.path = path
        self.file = file
        self._seen: set[str] = set()
        self._secrets: set[str] = set()  # keys `secret()` reads inline

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: str, problem: str, fix: str | None = None) -> ConfigError:
        return ConfigError(self.file, self.key(name), problem, fix)

    def holds_secret(self, name: str) -> bool:
        if name in self._secrets:
            return True
        if name.endswith(("_file", "_env")):
            return False
        return not SECRET_WORDS.isdisjoint(_WORD.split(self.key(name).lower()))

    def found(self, name: str, value: Any) -> str:
        """ "found VALUE" for a message — or only its kind when `name` holds a secret."""
        if self.holds_secret(name):
            return f"found {_kind(value)} (not shown: {self.key(name)} holds a secret)"
        return f"found {value!r}"

    def has(self, name: str) -> bool:
        return name in self.data

    def raw(self, name: str, default: Any = MISSING) -> Any:
        self._seen.add(name)
        if name not in self.data:
            if default is MISSING:
                raise self.error(name, "is required but missing", f"add `{name} = …`")
            return default
        return self.data[name]

    def _typed(self, name: str, kind: type | tuple[type, ...], label: str, default: Any) -> Any:
        value = self.raw(name, default)
        if value is default and name not in self.data:
            return value
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.error(name, f"{self.found(name, value)}, expected {label}")
        return value

    def string(
        self, name: str, default: Any = MISSING, choices: Iterable[str] | None = None
    ) -> Any:
        value = self._typed(name, str, "a string", default)
        if choices is not None and name in self.data:
            options = list(choices)
            if value not in options:
                raise self.error(
                    name,
                    f"{self.found(name, value)}; valid: {', '.join(options)}",
                    _suggest(value, options),
                )
        return value

    def boolean(self, name: str, default: Any = MISSING) -> Any:
        return self._typed(name, bool, "true or false", default)

    def integer(self, name: str, default: Any = MISSING, minimum: int | None = None) -> Any:
        value = self._typed(name, int, "an integer", default)
        if minimum is not None and name in self.data and value < minimum:
            raise self.error(name, f"{self.found(name, value)}, must be at least {minimum}")
        return value

    def duration(self, name: str, default: Any = MISSING) -> Any:
        value = self.raw(name, default)
        if name not in self.data:
            return value
        secret = self.holds_secret(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            example = "5m" if secret else f"{value}s"
            raise self.error(
                name, self.found(name, value), f'write it with a unit, e.g. "{example}"'
            )
        if not isinstance(value, str):
            raise self.error(name, f'{self.found(name, value)}, expected a duration such as "5m"')
        try:
            return parse_duration(value)
        except ValueError as exc:
            problem = 'is not a duration such as "5m"' if secret else str(exc)
            raise self.error(name, problem) from None

    def str_list(self, name: str, default: Any = MISSING) -> Any:
        value = self.raw(name, default)
        if name not in self.data:
            return value
        if isinstance(value, str):
            fix = 'write ["…"]' if self.holds_secret(name) else f'write ["{value}"]'
            raise self.error(name, f"{self.found(name, value)}, expected a list", fix)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(name, f"{self.found(name, value)}, expected a list of strings")
        return list(value)

    def url(self, name: str, default: Any = MISSING, insecure_http: bool = False) -> Any:
        value = self.string(name, default)
        if name not in self.data:
            return value
        authority = _AUTHORITY.match(value)
        if authority is not None and "@" in authority.group(1):
            raise self.error(
                name,
                "must not carry credentials in the URL (the URL is not shown for that reason)",
                "use the password/token keys",
            )
        if self.holds_secret(name):
            problem = f"is not an acceptable URL (not shown: {self.key(name)} holds a secret)"
            check_url(value, insecure_http, lambda p, f=None: self.error(name, problem, f))
        else:
            check_url(value, insecure_http, lambda p, f=None: self.error(name, p, f))
        return value

    def secret(self, prefix: str, required: bool = True) -> Secret | None:
        """Read `prefix`, `prefix_file` or `prefix_env` — exactly one of them."""
        given = [k for k in (prefix, f"{prefix}_file", f"{prefix}_env") if k in self.data]
        if len(given) > 1:
            raise self.error(given[1], f"conflicts with {self.key(given[0])}", "keep only one")
        if not given:
            if not required:
                return None
            raise self.error(
                prefix,
                "is required but missing",
                f'add {prefix}_file = "/etc/ddnsagent/NAME.secret" (mode 0600), '
                f'{prefix}_env = "VAR", or {prefix} = "…"',
            )
        key = given[0]
        if key == prefix:
            self._secrets.add(key)
            value = self.raw(key)
            if not isinstance(value, str):
                raise self.error(
                    key,
                    f"{self.found(key, value)}, expected a string",
                    f'write it in quotes: {key} = "…"',
                )
        else:
            value = self.string(key)
        if not value:
            raise self.error(key, "is empty")
        if key == prefix:
            check_private_file(self.file, f"{self.key(key)} holds a secret inline")
            return Secret.inline(value, self.key(key))
        if key.endswith("_env"):
            return Secret.from_env(value, self.key(key))
        if not value.startswith("cred:"):
            path = Path(value)
            if not path.is_absolute():
                path = self.file.parent / path
            return Secret.from_file(path, self.key(key))
        return Secret.from_credential(value.removeprefix("cred:"), self.key(key))

    def table(self, name: str) -> Table:
        value = self.raw(name, {})
        if not isinstance(value, dict):
            raise self.error(name, f"{self.found(name, value)}, expected a table")
        return Table(value, self.key(name), self.file)

    def finish(self) -> None:
        """Refuse keys nobody read: they are typos or options of another type."""
        for name in self.data:
            if name not in self._seen:
                known = sorted(self._seen)
                raise self.error(
                    name, "is not a known key here", _suggest(name, known) or _valid(known)
                )


def _suggest(value: str, options: list[str]) -> str | None:
    close = difflib.get_close_matches(value, options, n=1)
    return f"did you mean {close[0]!r}?" if close else None


def _valid(options: list[str]) -> str:
    return "valid keys: " + ", ".join(options) if options else "remove it"


class Registry:
    """Type names → modules, for `[[provider]]` and `[[zone]]`: each module has `from_table(t)`
    returning its settings and a class named `factory` built from them. Modules are imported
    only when a configuration names their type."""

    def __init__(self, types: dict[str, str], factory: str) -> None:
        self.types = types
        self.factory = factory

    def module(self, type_name: str) -> ModuleType:
        return importlib.import_module(self.types[type_name])

    def parse(self, t: Table) -> Any:
        type_name = t.string("type", choices=self.types)
        settings = self.module(type_name).from_table(t)
        t.finish()
        return settings

    def build(self, settings: Any) -> Any:
        return getattr(self.module(settings.type), self.factory)(settings)


def argv(t: Table, name: str, default: Any = MISSING, allow_empty: bool = True) -> Any:
    """A command as an argv list (never a shell string)."""
    value = t.str_list(name, default)
    if value is default:
        return value
    if not value and not allow_empty:
        raise t.error(name, "is empty", 'give the program and its arguments, e.g. ["/usr/sbin/x"]')
    return tuple(value)
