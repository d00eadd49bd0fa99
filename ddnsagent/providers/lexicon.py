"""Any DNS provider that dns-lexicon supports: set the A/AAAA records of some names in a zone.

dns-lexicon is an optional extra (`pip install 'ddnsagent[lexicon]'`); it is imported when a
configuration uses this type, so the error names the fix at load time, not at the first sync.
Lexicon is synchronous and uses `requests` without timeouts, so each update runs in a daemon
thread under a deadline, one at a time per provider. Lexicon is configured only from this table
(never from LEXICON_* variables or YAML files in the working directory), and the zone is the one
the user named: lexicon's guess from the Public Suffix List is overridden, so that list is never
downloaded.

Provider options are split by what they are: `options` (endpoints, flags: shown and compared
freely) and `credentials` (tokens, passwords: masked in every log line). Credentials may come
from the file (mode 0600), from environment variables (`credentials_env`) or from files
(`credentials_file`, systemd's `cred:NAME` included), so the main file can hold none.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ddnsagent.address import IPAddress
from ddnsagent.durations import format_duration
from ddnsagent.errors import FatalAnswer, TransientError
from ddnsagent.providers.base import Common, Provider, http_verdict, read_common
from ddnsagent.secrets import Secret, check_private_file, redact
from ddnsagent.table import Table

if TYPE_CHECKING:  # httpx (~50 ms) loads only when a request is made; see ddnsagent.http
    import asyncio

    import httpx

TYPE = "lexicon"
KEYS = (
    "provider, domain, records, options, credentials, credentials_env, credentials_file, "
    "ttl, timeout"
)
INSTALL_HINT = "pip install 'ddnsagent[lexicon]'"
DEFAULT_TIMEOUT = 120.0
WAIT_429 = 60.0  # when a 429 comes without Retry-After
# The zone is given, so lexicon's Public Suffix List lookup decides nothing: do not fetch it.
_PSL_URLS_ENV = "TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"


@dataclass(frozen=True)
class Settings(Common):
    provider: str
    domain: str
    records: tuple[str, ...]  # fully qualified, without the final dot
    options: tuple[tuple[str, str], ...]
    credentials: tuple[tuple[str, Secret], ...]
    ttl: int | None
    timeout: float

    def secrets(self) -> list[Secret]:
        return [secret for _, secret in self.credentials]


def _require_lexicon(t: Table) -> None:
    try:
        import lexicon.client  # noqa: F401
    except ImportError:
        raise t.error(
            "type", '"lexicon" needs dns-lexicon, which is not installed', f"run: {INSTALL_HINT}"
        ) from None


def _available_providers() -> dict[str, bool] | None:
    """Lexicon's providers and whether their extra dependencies are present, if it says."""
    try:
        from lexicon._private.discovery import find_providers

        return dict(find_providers())
    except Exception:  # a private helper: if it moves, the check is skipped, not the type
        return None


def _check_provider(t: Table, name: str) -> None:
    available = _available_providers()
    if available is None:
        return
    if name not in available:
        import difflib

        close = difflib.get_close_matches(name, list(available), n=1)
        raise t.error(
            "provider",
            f"lexicon has no provider {name!r}",
            f"did you mean {close[0]!r}?" if close else "see `lexicon --help` for the list",
        )
    if not available[name]:
        raise t.error(
            "provider",
            f"lexicon's {name} provider needs extra packages",
            f"run: pip install 'dns-lexicon[{name}]'",
        )


def _is_domain(name: str) -> bool:
    labels = name.split(".")
    return len(name) <= 253 and all(
        0 < len(x) <= 63 and all(c.isalnum() or c in "-_" for c in x) for x in labels
    )


def _qualify(t: Table, name: str, domain: str) -> str:
    """A record name as lexicon takes it: relative names and "@" are made absolute."""
    name = name.strip().rstrip(".").lower()
    if name in ("@", ""):
        return domain
    if name == domain or name.endswith("." + domain):
        return name
    full = f"{name}.{domain}"
    if not _is_domain(full.removeprefix("*.")):
        raise t.error("records", f"{name!r} is not a record name")
    return full


def _string_table(t: Table, key: str) -> Table:
    sub = t.table(key)
    for name, value in sub.data.items():
        if not isinstance(value, str) or not value:
            # The inline table holds secrets: say what kind of value it is, never the value.
            found = "an empty string" if value == "" else f"a value of type {type(value).__name__}"
            raise sub.error(name, f"found {found}, expected a non-empty string")
    return sub


def _read_credentials(t: Table) -> tuple[tuple[str, Secret], ...]:
    found: dict[str, Secret] = {}
    inline = _string_table(t, "credentials")
    if inline.data:
        check_private_file(t.file, f"{inline.path} holds secrets inline")
    for name, value in inline.data.items():
        inline.raw(name)
        found[name] = Secret.inline(value, inline.key(name))
    for key in ("credentials_env", "credentials_file"):
        sub = _string_table(t, key)
        for name, value in sub.data.items():
            sub.raw(name)
            if name in found:
                raise sub.error(name, f"conflicts with {found[name].key}", "keep only one")
            if key == "credentials_env":
                found[name] = Secret.from_env(value, sub.key(name))
            elif value.startswith("cred:"):
                found[name] = Secret.from_credential(value.removeprefix("cred:"), sub.key(name))
            else:
                path = Path(value)
                found[name] = Secret.from_file(
                    path if path.is_absolute() else t.file.parent / path, sub.key(name)
                )
    return tuple(found.items())


def from_table(t: Table) -> Settings:
    common = read_common(t, ipv4=True, ipv6=False)
    _require_lexicon(t)
    provider = t.string("provider")
    _check_provider(t, provider)
    domain = t.string("domain").strip().rstrip(".").lower()
    if "." not in domain or not _is_domain(domain):
        raise t.error("domain", f"{domain!r} is not a zone name", 'e.g. domain = "example.net"')
    names = t.str_list("records")
    if not names:
        raise t.error("records", "is empty", 'list at least one, e.g. ["home"] or ["@"]')
    records = tuple(dict.fromkeys(_qualify(t, n, domain) for n in names))
    options_table = _string_table(t, "options")
    options = tuple((k, options_table.raw(k)) for k in options_table.data)
    credentials = _read_credentials(t)
    for name, _ in options:
        if any(name == c for c, _ in credentials):
            raise options_table.error(name, "is also given as a credential", "keep only one")
    ttl = t.duration("ttl", None)
    timeout = t.duration("timeout", DEFAULT_TIMEOUT)
    if timeout <= 0:
        raise t.error("timeout", "must be positive", 'e.g. timeout = "2m"')
    return Settings(
        **common,
        provider=provider,
        domain=domain,
        records=records,
        options=options,
        credentials=credentials,
        ttl=int(ttl) if ttl else None,
        timeout=timeout,
    )


# -- lexicon's answers ---------------------------------------------------------------------------


def _same_address(a: object, b: str) -> bool:
    try:
        return ipaddress.ip_address(str(a)) == ipaddress.ip_address(b)
    except ValueError:
        return str(a) == b


def judge_exception(exc: BaseException, provider: str) -> FatalAnswer | TransientError:
    """What an exception out of lexicon means: stop (the user must act) or try again later."""
    from lexicon.exceptions import AuthenticationError, ProviderNotAvailableError

    label = f"lexicon {provider}"
    if isinstance(exc, AuthenticationError):
        return FatalAnswer(
            f"{label}: authentication failed: {redact(str(exc))}", "check the credentials"
        )
    if isinstance(exc, ProviderNotAvailableError):
        return FatalAnswer(f"{label}: {exc}", f"run: pip install 'dns-lexicon[{provider}]'")
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(status, int):
        detail = redact(" ".join(str(getattr(response, "text", "")).split()))[:120]
        said = f"{label}: HTTP {status}" + (f": {detail}" if detail else "")
        headers = getattr(response, "headers", None) or {}
        try:
            http_verdict(
                status,
                label,
                "check the credentials",
                refused=said,
                detail=detail,
                retry_after_header=headers.get("Retry-After"),
                location=headers.get("Location"),
                throttle_wait=WAIT_429,
            )
        except (FatalAnswer, TransientError) as verdict:
            return verdict
        if status == 404:
            return FatalAnswer(said, "check domain (the zone) and the provider's options")
        return FatalAnswer(said, "check records, ttl and the provider's options")
    return TransientError(f"{label}: {type(exc).__name__}: {redact(str(exc))[:200]}")


# Provider name → held while a lexicon session for it runs (it may outlive its deadline).
_sessions: dict[str, threading.Lock] = {}


def _in_daemon_thread(
    lock: threading.Lock, fn: Callable[..., str], *args: Any
) -> asyncio.Future[str]:
    """Start `fn` in a daemon thread that releases `lock` when it ends; its result, to await.

    Lexicon's HTTP calls have no timeout of their own, so a call can hang; a daemon thread
    lets the command line exit and the loop close without waiting for it (asyncio.to_thread's
    executor would be joined by asyncio.run).
    """
    import asyncio  # not at the top: reading the settings (status, check-config) needs none

    loop = asyncio.get_running_loop()
    future: asyncio.Future[str] = loop.create_future()

    def deliver(ok: bool, value: Any) -> None:
        if future.done():  # the deadline passed; nobody waits for this answer any more
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def run() -> None:
        try:
            outcome: tuple[bool, Any] = (True, fn(*args))
        except BaseException as exc:
            outcome = (False, exc)
        finally:
            lock.release()
        with contextlib.suppress(RuntimeError):  # the loop is closed
            loop.call_soon_threadsafe(deliver, *outcome)

    threading.Thread(target=run, name="lexicon", daemon=True).start()
    return future


class Client:
    TYPE = TYPE
    BIND_FAMILY = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def describe(self, family: int, address: IPAddress) -> str:
        s = self.settings
        rtype = "A" if family == 4 else "AAAA"
        names = ", ".join(s.records)
        return f"lexicon {s.provider}: set {rtype} of {names} (zone {s.domain}) to {address}"

    async def update(self, family: int, address: IPAddress, client: httpx.AsyncClient) -> str:
        import asyncio  # not at the top: reading the settings (status, check-config) needs none

        s = self.settings
        credentials = {name: secret.reveal() for name, secret in s.credentials}
        rtype = "A" if family == 4 else "AAAA"
        busy = _sessions.setdefault(s.name, threading.Lock())
        if not busy.acquire(blocking=False):
            # A session that outlived its deadline may still write; a second one could race it.
            raise TransientError(
                f"lexicon {s.provider}: the previous update has not finished", min_wait=s.timeout
            )
        try:
            work = _in_daemon_thread(busy, self._run, rtype, str(address), credentials)
        except BaseException:
            busy.release()
            raise
        try:
            return await asyncio.wait_for(work, s.timeout)
        except TimeoutError:
            # Not retried at once: the hung session holds the provider until it ends.
            raise TransientError(
                f"lexicon {s.provider} did not finish within {format_duration(s.timeout)}",
                min_wait=s.timeout,
            ) from None

    def _config(self, credentials: dict[str, str]) -> Any:
        from lexicon.config import ConfigResolver

        s = self.settings
        data: dict[str, Any] = {
            "provider_name": s.provider,
            "domain": s.domain,
            "delegated": s.domain,
            s.provider: {**dict(s.options), **credentials},
        }
        if s.ttl:
            data["ttl"] = s.ttl
        return ConfigResolver().with_dict(data)

    def _run(self, rtype: str, content: str, credentials: dict[str, str]) -> str:
        """In a worker thread: one lexicon session, every record of the provider."""
        from lexicon.client import Client as LexiconClient
        from lexicon.config import DictConfigSource

        os.environ.setdefault(_PSL_URLS_ENV, "")
        s = self.settings
        try:
            session = LexiconClient(self._config(credentials))
            # Lexicon derived a zone from the Public Suffix List; the user's zone wins.
            session.config.add_config_source(DictConfigSource({"domain": s.domain}), 0)
            with session as operations:
                done = [self._one(operations, rtype, name, content) for name in s.records]
        except (FatalAnswer, TransientError):
            raise
        except Exception as exc:
            raise judge_exception(exc, s.provider) from None
        return "; ".join(done)

    @staticmethod
    def _one(operations: Any, rtype: str, name: str, content: str) -> str:
        """Make `name` have exactly `content` as its `rtype` record, touching the least."""
        existing = operations.list_records(rtype, name)
        same = [r for r in existing if _same_address(r.get("content"), content)]
        others = [r for r in existing if r not in same]
        if same and not others:
            return f"{name} already {content}"
        if same:
            for record in others:
                operations.delete_record(record.get("id"), rtype, name, record.get("content"))
            return f"{name} {content} (removed {len(others)} other)"
        if others:
            first, rest = others[0], others[1:]
            operations.update_record(first.get("id"), rtype, name, content)
            for record in rest:
                operations.delete_record(record.get("id"), rtype, name, record.get("content"))
            return f"{name} {first.get('content')} → {content}"
        operations.create_record(rtype, name, content)
        return f"{name} created {content}"


_: type[Provider] = Client
