"""What every provider is: settings parsed from one [[provider]] table, and one `update` call.

A provider turns the answer of its service into one of three things: success (it returns a
message), a transient failure (`TransientError`: retry later, perhaps not before `min_wait`), or
a fatal answer (`FatalAnswer`: the service told us to stop until the user fixes something).
Retries, back-off, stop persistence and reporting belong to the agent, not to the provider.

What an HTTP status class means is the same for every service, so `http_verdict` decides it
once; each provider's `judge` asks it first and reads the rest (2xx bodies, other 4xx) itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from ddnsagent.address import IPAddress
from ddnsagent.errors import FatalAnswer, SecretUnavailable, TransientError
from ddnsagent.secrets import Secret
from ddnsagent.table import Table

if TYPE_CHECKING:  # httpx costs ~50 ms to import; reading the configuration needs none of it
    import httpx


@dataclass(frozen=True)
class Common:
    """Keys every provider has."""

    name: str
    type: str
    ipv4: bool
    ipv6: bool
    keepalive: float  # seconds; 0 = never resend an unchanged address
    insecure_http: bool
    user_agent: str | None  # None: [agent] user_agent

    # Keys added after a release, with the value that leaves them out of the fingerprint: an
    # upgrade alone must neither lift a stop nor resend every address.
    LATER_KEYS: ClassVar[dict[str, object]] = {"user_agent": None}

    def families(self) -> list[int]:
        return [f for f, on in ((4, self.ipv4), (6, self.ipv6)) if on]

    def fingerprint_data(self) -> str:
        """The settings that, when changed, lift a stop (secrets count by origin only)."""
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in self.LATER_KEYS and value == self.LATER_KEYS[f.name]:
                continue
            if isinstance(value, Secret):
                value = value.origin
            parts.append(f"{f.name}={value!r}")
        return ";".join(parts)

    def secrets(self) -> list[Secret]:
        return [v for f in fields(self) if isinstance(v := getattr(self, f.name), Secret)]


def read_common(
    t: Table, ipv4: bool = True, ipv6: bool = False, keepalive: float = 0.0
) -> dict[str, Any]:
    name = t.string("name")
    if not name or not all(c.isalnum() or c in "-_." for c in name):
        raise t.error("name", f"found {name!r}", "use letters, digits, '-', '_' or '.'")
    return {
        "name": name,
        "type": t.string("type"),
        "ipv4": t.boolean("ipv4", ipv4),
        "ipv6": t.boolean("ipv6", ipv6),
        "keepalive": t.duration("keepalive", keepalive),
        "insecure_http": t.boolean("insecure_http", False),
        "user_agent": read_user_agent(t, None),
    }


USER_AGENT_MAX = 200


def read_user_agent(t: Table, default: str | None) -> str | None:
    """The `user_agent` key: what the HTTP requests call themselves. Services read it to tell
    clients apart, and No-IP asks for a contact in it (`Company Program/Version contact@…`),
    so that they write to a maintainer before they throttle or block a misbehaving client.
    It is sent in clear and kept in the services' logs: printable ASCII, one line, no secret."""
    value = t.string("user_agent", default)
    if value is None or not t.has("user_agent"):
        return value
    text = str(value)
    if not text.strip() or text != text.strip():
        raise t.error("user_agent", f"found {text!r}", 'write e.g. "ddnsagent/1.0 you@example.net"')
    if len(text) > USER_AGENT_MAX or not all(" " <= c <= "~" for c in text):
        raise t.error(
            "user_agent",
            f"must be one line of at most {USER_AGENT_MAX} printable ASCII characters",
            'write e.g. "ddnsagent/1.0 you@example.net"',
        )
    return text


def user_agent_for(settings: Common, default: str) -> str:
    """The User-Agent one provider sends: its own `user_agent`, else `default` ([agent]).
    Refused (as a configuration problem, before any request) when it holds one of the
    provider's secrets: services log the header, so a password there would leak."""
    agent = settings.user_agent or default
    for secret in settings.secrets():
        value = secret.reveal()
        if value and value in agent:
            raise SecretUnavailable(
                f"{settings.name}: user_agent contains the provider's secret ({secret.origin}); "
                "the header is sent in clear and logged by the service — remove it"
            )
    return agent


class Provider(Protocol):
    """One configured target: what the registry's `client_for` returns and the agent calls.

    Each provider module states `_: type[Provider] = Client`, so mypy checks its client here.
    """

    TYPE: str  # the `type` of its [[provider]] tables (a class attribute of the client)
    # True when the service takes the address from the connection (MyDNS): the agent then
    # hands `update` a client bound to the family. Others get an unbound client.
    BIND_FAMILY: bool

    @property
    def settings(self) -> Common: ...

    async def update(self, family: int, address: IPAddress, client: httpx.AsyncClient) -> str:
        """Send `address` for `family`; a message on success, else TransientError or
        FatalAnswer (or SecretUnavailable when a secret cannot be read)."""
        ...

    def describe(self, family: int, address: IPAddress) -> str:
        """What `update` would send, without secrets (for --dry-run)."""
        ...


MAX_WAIT = 24 * 3600.0
LATER_STATUSES = frozenset({408, 425, 429})  # with 5xx: the service asks us to come back later
REFUSED_STATUSES = frozenset({401, 403})


def retry_after(value: str | None, default: float, now: float | None = None) -> float:
    """Seconds a `Retry-After` header asks for (delta-seconds or an HTTP date), at least 1 s
    and at most a day; `default` when it is missing or unreadable."""
    if not value or not value.strip():
        return default
    text = value.strip()
    if text.isdigit():  # delta-seconds is digits only (RFC 9110): "-5" or "1.5" are not
        seconds = float(text)
    else:
        from email.utils import parsedate_to_datetime  # ~6 ms; only for a dated Retry-After

        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return default
        if when.tzinfo is None:
            return default
        seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 1.0), MAX_WAIT)


def http_verdict(
    status: int,
    service: str,
    fix: str,
    *,
    refused: str | None = None,
    detail: str = "",
    retry_after_header: str | None = None,
    location: str | None = None,
    throttle_wait: float = 0.0,
    max_wait: float = MAX_WAIT,
    now: float | None = None,
) -> None:
    """Raise what the status class of an answer means, the same for every HTTP provider.

    - 401/403: the credentials were refused; retrying cannot help: `FatalAnswer` with `fix`
      (`refused` words the message when the provider knows more, e.g. dyndns2's `badauth`).
    - 408, 425, 429 and 5xx: come back later, not before the answer's `Retry-After` (at most
      `max_wait`); a 429 without a usable one waits `throttle_wait`, what the service documents.
    - 3xx: redirects are never followed (a redirected update did not reach the service's
      update handler), so it is a passing failure that names where it pointed.

    Returns for everything else (1xx, 2xx, other 4xx): the provider's own `judge` decides.
    `detail` is what the answer said, already fit to print (redacted, short).
    """
    said = f"HTTP {status}: {detail}" if detail else f"HTTP {status}"
    if status in REFUSED_STATUSES:
        raise FatalAnswer(refused or f"{service} refused the credentials ({said})", fix)
    if status in LATER_STATUSES or 500 <= status < 600:
        default = throttle_wait if status == 429 else 0.0
        wait = min(retry_after(retry_after_header, default, now), max_wait)
        if status == 429:
            raise TransientError(
                f"{service} throttled the request: its rate limit was reached ({said})",
                min_wait=wait,
            )
        raise TransientError(f"{service} answered {said}", min_wait=wait)
    if 300 <= status < 400:
        where = f" to {location}" if location else ""
        raise TransientError(
            f"{service} redirected the request{where} ({said}); redirects are not followed, "
            "so nothing was changed"
        )
