"""Cloudflare DNS: point existing A/AAAA records at the address, through API v4 and a token.

Cloudflare takes the address from the request body, so one call per record and family does it:
find the zone's id by name (`GET /zones?name=`), list the record (`GET
/zones/{zone}/dns_records?type=A&name.exact=NAME`) and, only when its content differs, `PATCH`
it. The PATCH carries type, name and content and nothing else, so the record's `proxied`, `ttl`,
`comment` and tags stay as the user set them in the dashboard (a PUT would reset them).

Being conservative with someone else's zone:

- A missing record is created only with `create = true` (with `ttl` and `proxied` from the
  configuration); otherwise the target stops and says so.
- Several records of one name and type are refused, not guessed at: ddnsagent updates exactly one.
- Every record of the target is read before any is written, so a missing or doubled record stops
  the target without half of its names moved.

Zone ids are remembered for the life of the process (the agent makes a new `Client` for each
sync, so the memory is this module's), keyed by API URL and a digest of the token; an answer
saying an id no longer exists drops the memory and the next try looks the zone up again.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ddnsagent import http
from ddnsagent.address import IPAddress
from ddnsagent.errors import FatalAnswer, HTTPFailure, SecretUnavailable, TransientError
from ddnsagent.names import is_name
from ddnsagent.providers.base import Common, Provider, http_verdict, read_common, retry_after
from ddnsagent.secrets import Secret, redact, register
from ddnsagent.table import Table

if TYPE_CHECKING:  # httpx (~50 ms) loads only when a request is made; see ddnsagent.http
    import httpx

log = logging.getLogger(__name__)

TYPE = "cloudflare"
KEYS = "token|token_file|token_env, records, zone, create, ttl, proxied, api_url"

DEFAULT_API = "https://api.cloudflare.com/client/v4"
RECORD_TYPE = {4: "A", 6: "AAAA"}

# Cloudflare's rate limit blocks every call for five minutes once exceeded; its 429 answer says
# how long in Retry-After. Without a usable header we wait the documented five minutes; a huge
# value is capped so that a confused answer cannot silence the target for days.
DEFAULT_RATE_WAIT = 300.0
MAX_RATE_WAIT = 3600.0

# Error codes that mean "this token cannot do it": bad header format (6003, 6111), missing
# credentials (9106), invalid or location-restricted token (9109), authentication error (10000).
AUTH_CODES = frozenset({6003, 6111, 9106, 9109, 10000})
THROTTLE_CODES = frozenset({971})  # "Please wait and consider throttling your request speed"
# A zone or record id that does not (or no longer) exist: routing failure, record gone.
STALE_CODES = frozenset({7003, 81044})
ROUTE_CODES = frozenset({7000})  # "No route for that URI": api_url points elsewhere

TOKEN_FIX = "check the token, and that it has Zone → DNS → Edit and Zone → Zone → Read on the zone"
API_URL_FIX = (
    "check api_url (Cloudflare's ends in /client/v4); an HTML page with HTTP 403 means "
    "Cloudflare's edge refuses this host"
)
_ID = re.compile(r"^[A-Za-z0-9]{1,64}$")
_TOKEN_CHARS = re.compile(r"^[\x21-\x7e]+$")


@dataclass(frozen=True)
class Settings(Common):
    token: Secret
    records: tuple[str, ...]
    zone: str | None
    create: bool
    ttl: int
    proxied: bool
    api_url: str


def from_table(t: Table) -> Settings:
    common = read_common(t, ipv4=True, ipv6=False, keepalive=0.0)
    token = t.secret("token")
    assert token is not None
    zone = t.string("zone", None)
    if zone is not None:
        zone = _fqdn(t, "zone", zone, wildcard=False)
    records = _records(t, zone)
    create = t.boolean("create", False)
    ttl = t.integer("ttl", 1)
    if ttl != 1 and not 30 <= ttl <= 86400:
        raise t.error(
            "ttl", f"found {ttl}", "use 1 (automatic) or 60…86400 seconds (30 on Enterprise)"
        )
    proxied = t.boolean("proxied", False)
    if not create:
        for key in ("ttl", "proxied"):
            if t.has(key):
                raise t.error(
                    key,
                    "applies only to records ddnsagent creates, and create is false",
                    f"set create = true, or remove {key}: existing records keep their own",
                )
    return Settings(
        **common,
        token=token,
        records=records,
        zone=zone,
        create=create,
        ttl=ttl,
        proxied=proxied,
        api_url=t.url("api_url", DEFAULT_API, common["insecure_http"]).rstrip("/"),
    )


def _records(t: Table, zone: str | None) -> tuple[str, ...]:
    given = t.str_list("records")
    if not given:
        raise t.error("records", "is empty", 'list at least one, e.g. ["home.example.net"]')
    names: list[str] = []
    for value in given:
        name = _fqdn(t, "records", value, wildcard=True)
        if zone is not None and name != zone and not name.endswith("." + zone):
            raise t.error(
                "records", f"{value!r} is not in zone {zone!r}", "fix the name, or the zone key"
            )
        if name in names:
            raise t.error("records", f"{value!r} is listed twice", "keep it once")
        names.append(name)
    return tuple(names)


def _fqdn(t: Table, key: str, value: str, *, wildcard: bool) -> str:
    name = value.strip().rstrip(".").lower()
    if not is_name(name, underscore=True, wildcard=wildcard):
        raise t.error(
            key,
            f"{value!r} is not a fully qualified domain name",
            "write it like home.example.net (internationalised names in Punycode, xn--…)",
        )
    return name


# -- answers -----------------------------------------------------------------------------------


class StaleId(TransientError):
    """Cloudflare says a zone or record id we used does not exist (any more)."""


def rate_wait(value: str | None, now: float | None = None) -> float:
    """Seconds to keep quiet after a 429, from its Retry-After (seconds or an HTTP date)."""
    return min(retry_after(value, DEFAULT_RATE_WAIT, now), MAX_RATE_WAIT)


def _envelope(body: str) -> dict[str, Any] | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict) or "success" not in data:
        return None
    return data


def _errors(envelope: dict[str, Any] | None) -> list[tuple[int | None, str]]:
    """(code, message) of each error, the chained ones included."""
    found: list[tuple[int | None, str]] = []

    def walk(items: Any, depth: int) -> None:
        if not isinstance(items, list) or depth > 3:
            return
        for item in items[:10]:
            if not isinstance(item, dict):
                continue
            code = item.get("code")
            message = item.get("message")
            found.append(
                (
                    code if isinstance(code, int) and not isinstance(code, bool) else None,
                    message if isinstance(message, str) else "",
                )
            )
            walk(item.get("error_chain"), depth + 1)

    walk((envelope or {}).get("errors"), 0)
    return found


def _safe(text: str, limit: int) -> str:
    """Text from the service, fit to print: short, no control characters, no known secret."""
    return redact("".join(c if c.isprintable() else " " for c in text[:limit]))


def _shown(errors: list[tuple[int | None, str]]) -> str:
    parts = [f"{code} {message}" if code is not None else message for code, message in errors]
    return _safe("; ".join(p.strip() for p in parts if p.strip()), 300)


def judge(
    status: int,
    body: str,
    what: str,
    retry_after: str | None = None,
    location: str | None = None,
) -> dict[str, Any]:
    """The envelope of a successful answer, or the exception the answer means.

    Pure, so the table is tested on strings. `what` says which step it was ("listing A
    records of home.example.net"), for the message.
    """
    envelope = _envelope(body)
    errors = _errors(envelope)
    shown = _shown(errors)
    said = f": {shown}" if shown else ""
    codes = {code for code, _ in errors}
    if envelope is None:  # not the API answering: Cloudflare's edge, or another host
        refused = f"HTTP {status} without Cloudflare's JSON envelope while {what}"
        fix = API_URL_FIX
    else:
        refused = f"Cloudflare refused the token while {what} (HTTP {status}{said})"
        fix = TOKEN_FIX
    http_verdict(
        status,
        f"while {what}, Cloudflare",
        fix,
        refused=refused,
        detail=shown,
        retry_after_header=retry_after,
        location=location,
        throttle_wait=DEFAULT_RATE_WAIT,
        max_wait=MAX_RATE_WAIT,
    )
    if codes & THROTTLE_CODES:
        raise TransientError(
            f"Cloudflare's rate limit was reached while {what} (HTTP {status}{said})",
            min_wait=rate_wait(retry_after),
        )
    if codes & AUTH_CODES:
        raise FatalAnswer(
            f"Cloudflare refused the token while {what} (HTTP {status}{said})", TOKEN_FIX
        )
    if status == 409:  # a conflicting change in flight: it settles
        raise TransientError(f"Cloudflare answered HTTP {status} while {what}{said}")
    if envelope is None:
        if 200 <= status < 300:
            raise TransientError(f"Cloudflare's answer was not its JSON envelope while {what}")
        raise FatalAnswer(
            f"HTTP {status} without Cloudflare's JSON envelope while {what}", API_URL_FIX
        )
    if codes & ROUTE_CODES:
        raise FatalAnswer(f"Cloudflare has no such API route while {what}{said}", API_URL_FIX)
    if codes & STALE_CODES or (status == 404 and not codes):
        raise StaleId(f"Cloudflare no longer knows an id used while {what} (HTTP {status}{said})")
    if 200 <= status < 300:
        if envelope.get("success") is True:
            return envelope
        raise TransientError(
            f"Cloudflare answered HTTP {status} without success while {what}{said}"
        )
    raise FatalAnswer(
        f"Cloudflare refused {what} (HTTP {status}{said})",
        "do what Cloudflare's message asks, in the dashboard or in this provider's keys",
    )


# -- the client --------------------------------------------------------------------------------

# (API URL, token digest, zone name) → zone id; (API URL, token digest, record) → zone name.
_ZONE_IDS: dict[tuple[str, str, str], str] = {}
_ZONE_OF: dict[tuple[str, str, str], str] = {}


@dataclass(frozen=True)
class _Record:
    id: str
    name: str
    type: str
    content: str


class _Session:
    """The requests of one update, all with the same token and base URL."""

    def __init__(self, client: httpx.AsyncClient, api_url: str, token: str) -> None:
        self.client = client
        self.api_url = api_url
        self.headers = {"Authorization": f"Bearer {token}"}
        digest = hashlib.blake2b(token.encode(), digest_size=16).hexdigest()
        self.key = (api_url, digest)

    async def call(
        self,
        method: str,
        path: str,
        what: str,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"headers": self.headers}
        if params is not None:
            kwargs["params"] = params
        if body is not None:
            kwargs["json"] = body
        log.debug("cloudflare: %s %s (%s)", method, path, what)
        try:
            answer = await http.fetch(self.client, method, self.api_url + path, **kwargs)
        except HTTPFailure as exc:
            raise TransientError(redact(f"{exc} while {what}")) from None
        return judge(
            answer.status,
            answer.body,
            what,
            answer.headers.get("retry-after"),
            answer.headers.get("location"),
        )

    def forget(self) -> None:
        for cache in (_ZONE_IDS, _ZONE_OF):
            for key in [k for k in cache if k[:2] == self.key]:
                del cache[key]


def _result_list(envelope: dict[str, Any], what: str) -> list[dict[str, Any]]:
    result = envelope.get("result")
    if not isinstance(result, list) or not all(isinstance(x, dict) for x in result):
        raise TransientError(f"Cloudflare's answer had no list of results while {what}")
    return result


def _record(item: Any, what: str) -> _Record:
    fields = {k: item.get(k) if isinstance(item, dict) else None for k in ("id", "name", "type")}
    content = item.get("content") if isinstance(item, dict) else None
    if not all(isinstance(v, str) for v in fields.values()) or not isinstance(content, str):
        raise TransientError(f"Cloudflare's answer had a malformed record while {what}")
    if not _ID.match(str(fields["id"])):
        raise TransientError(f"Cloudflare's answer had an unusable record id while {what}")
    return _Record(str(fields["id"]), str(fields["name"]), str(fields["type"]), content)


def _same_address(content: str, address: IPAddress) -> bool:
    try:
        return ipaddress.ip_address(content) == address
    except ValueError:
        return False


class Client:
    TYPE = TYPE
    BIND_FAMILY = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def describe(self, family: int, address: IPAddress) -> str:
        s = self.settings
        where = f"zone {s.zone}" if s.zone else "zones looked up by name"
        if s.create:
            missing = f"create missing ones (ttl {s.ttl}, proxied {str(s.proxied).lower()})"
        else:
            missing = "stop if one is missing"
        return (
            f"PATCH {RECORD_TYPE[family]} {', '.join(s.records)} to {address} "
            f"via {s.api_url} ({where}; only records that differ; {missing})"
        )

    async def update(self, family: int, address: IPAddress, client: httpx.AsyncClient) -> str:
        s = self.settings
        rtype = RECORD_TYPE[family]
        if address.version != family:
            raise TransientError(f"{address} is not an IPv{family} address")
        token = s.token.reveal()
        if not _TOKEN_CHARS.match(token):
            raise SecretUnavailable(
                f"{s.token.key}: the token holds spaces or control characters; copy it again"
            )
        register(token)
        session = _Session(client, s.api_url, token)
        try:
            return await self._update(session, rtype, address)
        except StaleId:
            session.forget()
            raise

    async def _update(self, session: _Session, rtype: str, address: IPAddress) -> str:
        s = self.settings
        # Read everything first: a missing or doubled record stops the target before any write.
        found: list[tuple[str, str, list[_Record]]] = []
        for name in s.records:
            zone_id = await self._zone_id(session, name)
            records, count = await self._list(session, zone_id, rtype, name)
            if count > 1:
                raise FatalAnswer(
                    f"{name} has {count} {rtype} records; ddnsagent updates exactly one",
                    f"delete the extra {rtype} records of {name} in the Cloudflare dashboard",
                )
            if not records and not s.create:
                raise FatalAnswer(
                    f"{rtype} record {name} does not exist",
                    "create it in the Cloudflare dashboard, or set create = true",
                )
            found.append((name, zone_id, records))
        results = []
        for name, zone_id, records in found:
            if not records:
                await self._create(session, zone_id, rtype, name, address)
                results.append(f"{name}: created")
            elif _same_address(records[0].content, address):
                results.append(f"{name}: already {address}")
            else:
                await self._patch(session, zone_id, records[0], address)
                results.append(f"{name}: {_safe(records[0].content, 60)} → {address}")
        return "; ".join(results)

    async def _zone_id(self, session: _Session, name: str) -> str:
        """The id of the zone that holds `name`: the configured zone, else the closest one."""
        s = self.settings
        if s.zone is not None:
            zone_id = await self._lookup_zone(session, s.zone)
            if zone_id is None:
                raise FatalAnswer(
                    f"zone {s.zone} is not visible to this token",
                    "check zone, and that the token includes it (Zone → Zone → Read)",
                )
            return zone_id
        known = _ZONE_OF.get((*session.key, name))
        if known is not None and (*session.key, known) in _ZONE_IDS:
            return _ZONE_IDS[(*session.key, known)]
        labels = name.removeprefix("*.").split(".")
        for i in range(len(labels) - 1):
            candidate = ".".join(labels[i:])
            zone_id = await self._lookup_zone(session, candidate)
            if zone_id is not None:
                _ZONE_OF[(*session.key, name)] = candidate
                return zone_id
        raise FatalAnswer(
            f"no zone visible to this token holds {name}",
            'set zone = "…", and check that the token includes the zone (Zone → Zone → Read)',
        )

    async def _lookup_zone(self, session: _Session, zone: str) -> str | None:
        key = (*session.key, zone)
        if key in _ZONE_IDS:
            return _ZONE_IDS[key]
        what = f"looking up zone {zone}"
        envelope = await session.call("GET", "/zones", what, params={"name": zone})
        zones = [
            z
            for z in _result_list(envelope, what)
            if isinstance(z.get("name"), str) and z["name"].lower() == zone
        ]
        if len(zones) > 1:
            zones = [z for z in zones if z.get("status") == "active"] or zones
        if len(zones) > 1:
            raise FatalAnswer(
                f"{len(zones)} zones named {zone} are visible to this token",
                "restrict the token to the account that holds the zone",
            )
        if not zones:
            return None
        zone_id = zones[0].get("id")
        if not isinstance(zone_id, str) or not _ID.match(zone_id):
            raise TransientError(f"Cloudflare's answer had an unusable zone id while {what}")
        _ZONE_IDS[key] = zone_id
        log.debug("cloudflare: zone %s is %s", zone, zone_id)
        return zone_id

    async def _list(
        self, session: _Session, zone_id: str, rtype: str, name: str
    ) -> tuple[list[_Record], int]:
        """The records of `name` and `rtype`, and how many there are (on all pages)."""
        what = f"listing {rtype} records of {name}"
        envelope = await session.call(
            "GET",
            f"/zones/{zone_id}/dns_records",
            what,
            params={"type": rtype, "name.exact": name, "per_page": "100"},
        )
        answered = [_record(item, what) for item in _result_list(envelope, what)]
        records = [r for r in answered if r.type == rtype and r.name.lower() == name]
        info = envelope.get("result_info")
        total = info.get("total_count") if isinstance(info, dict) else None
        if isinstance(total, int) and records and len(records) == len(answered):
            # The filter was applied, so the total counts this name's records on every page.
            return records, max(len(records), total)
        return records, len(records)

    async def _patch(
        self, session: _Session, zone_id: str, record: _Record, address: IPAddress
    ) -> None:
        what = f"updating {record.type} record {record.name}"
        # type and name as they are (some revisions of the API schema require them), content new;
        # proxied, ttl, comment and tags are left out so that Cloudflare keeps them.
        body = {"type": record.type, "name": record.name, "content": str(address)}
        envelope = await session.call(
            "PATCH", f"/zones/{zone_id}/dns_records/{record.id}", what, body=body
        )
        self._check_written(envelope, address, what)

    async def _create(
        self, session: _Session, zone_id: str, rtype: str, name: str, address: IPAddress
    ) -> None:
        s = self.settings
        what = f"creating {rtype} record {name}"
        body = {
            "type": rtype,
            "name": name,
            "content": str(address),
            "ttl": s.ttl,
            "proxied": s.proxied,
        }
        envelope = await session.call("POST", f"/zones/{zone_id}/dns_records", what, body=body)
        self._check_written(envelope, address, what)

    @staticmethod
    def _check_written(envelope: dict[str, Any], address: IPAddress, what: str) -> None:
        written = _record(envelope.get("result"), what)
        if not _same_address(written.content, address):
            shown = _safe(written.content, 60)
            raise TransientError(f"Cloudflare answered with content {shown!r} after {what}")


_: type[Provider] = Client
