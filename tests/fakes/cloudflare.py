"""A strict local emulator of the parts of Cloudflare's API v4 that a DNS updater uses.

What Cloudflare documents (developers.cloudflare.com: "Make API calls", the DNS records and
zones API reference, "Rate limits"), and what this fake enforces:

- Every endpoint lives under `/client/v4`. A token is sent as `Authorization: Bearer TOKEN`.
  Every answer is the JSON envelope `{"success", "errors", "messages", "result"}`, lists add
  `result_info` (`page`, `per_page`, `count`, `total_count`, `total_pages`); each error is
  `{"code", "message"}`, sometimes with an `error_chain` of the same shape.
- `GET /zones?name=NAME` lists the zones of that exact name the token may see.
- `GET /zones/{zone_id}/dns_records` lists records, filtered by `type`, `name.exact` (and the
  other `name.*` operators, and the older plain `name`), `content`, `proxied`, with `match`,
  `page`, `per_page` (default 100), `order`, `direction`. Names are fully qualified, lower case.
- `POST /zones/{zone_id}/dns_records` creates a record (`type`, `name`, `content` required; `ttl`
  1 = automatic, else 60…86400, 30 on Enterprise; `proxied` default false; `comment`, `tags`).
- `PATCH /zones/{zone_id}/dns_records/{id}` changes only the fields it is given;
  `PUT` overwrites the record, so fields left out go back to their defaults (that is how a
  careless client loses the user's `proxied`, `ttl` and `comment`); `GET` and `DELETE` too.
- Over the rate limit (1200 requests per five minutes per user) every call is answered 429 with
  `Retry-After` in seconds for five minutes.

Error answers as users have captured them from the real service (the codes are not documented
as a table): a missing Authorization header is 400 `9106`; a malformed one is 400 `6003`
"Invalid request headers" with an `error_chain` of `6111` "Invalid format for Authorization
header"; a token that is not valid gets `9109` "Invalid access token" (status 401 here,
`invalid_token_status`; 403 was observed for a token used from a forbidden location); a token
without permission gets 403 `10000` "Authentication error"; an unknown zone id `7003`, an
unknown path `7000`, an unknown record `81044` "Record does not exist."; content that is not an
address of the type `9005`/`9006`; an A/AAAA record beside a CNAME `81054` (a CNAME beside
anything `81053`); an identical record `81057` "The record already exists."; the rate limit
`971` "Please wait and consider throttling your request speed". The fake's own validation
failures that have no captured code (bad TTL, bad name, malformed body) use `1004` "DNS
Validation Error" or `9207` with a message that says what is wrong.

The client's own departures from the documented use (a PUT, a query parameter the endpoint does
not know, a PATCH that renames a record or changes its type, a body that is not JSON) are
answered as Cloudflare would and also noted in `violations`.
"""

from __future__ import annotations

import ipaddress
import json
import re
import ssl
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from ._server import FakeServer, RecordedRequest, Response

PREFIX = "/client/v4"
TYPES = ("A", "AAAA", "CNAME", "TXT")
PROXIABLE = ("A", "AAAA", "CNAME")
RECORD_KEYS = frozenset({"type", "name", "content", "ttl", "proxied", "comment", "tags"})
ZONE_LIST_PARAMS = frozenset(
    {
        "name",
        "status",
        "account.id",
        "account.name",
        "page",
        "per_page",
        "order",
        "direction",
        "match",
    }
)
RECORD_LIST_PARAMS = frozenset(
    {"type", "name", "content", "proxied", "match", "page", "per_page", "order", "direction"}
    | {f"name.{op}" for op in ("exact", "contains", "startswith", "endswith")}
    | {f"content.{op}" for op in ("exact", "contains", "startswith", "endswith")}
    | {"search", "tag_match"}
)
_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_RECORDS = re.compile(r"^/zones/([^/]+)/dns_records(?:/([^/]+))?$")
_BAD_GATEWAY = (
    "<html>\n<head><title>502 Bad Gateway</title></head>\n<body>\n"
    "<center><h1>502 Bad Gateway</h1></center>\n<hr><center>cloudflare</center>\n"
    "</body>\n</html>\n"
)


@dataclass(frozen=True)
class Token:
    """What one API token may do. `zones=None` means every zone of the account."""

    zones: frozenset[str] | None = None
    zone_read: bool = True  # Zone → Zone → Read: the zone is listed by GET /zones
    dns_read: bool = True  # Zone → DNS → Read
    dns_edit: bool = True  # Zone → DNS → Edit (implies read)

    def sees(self, zone: str) -> bool:
        return self.zones is None or zone in self.zones


@dataclass(frozen=True)
class Zone:
    id: str
    name: str
    status: str = "active"


@dataclass
class Record:
    id: str
    zone_id: str
    zone_name: str
    name: str
    type: str
    content: str
    proxied: bool = False
    ttl: int = 1
    comment: str | None = None
    tags: list[str] = field(default_factory=list)
    created_on: str = ""
    modified_on: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "zone_id": self.zone_id,
            "zone_name": self.zone_name,
            "name": self.name,
            "type": self.type,
            "content": self.content,
            "proxiable": self.type in PROXIABLE,
            "proxied": self.proxied,
            "ttl": self.ttl,
            "comment": self.comment,
            "tags": list(self.tags),
            "settings": {},
            "meta": {},
            "created_on": self.created_on,
            "modified_on": self.modified_on,
        }


class _Refusal(Exception):
    """An error answer, raised from deep inside a handler."""

    def __init__(
        self, status: int, code: int, message: str, chain: list[dict[str, Any]] | None = None
    ):
        super().__init__(message)
        self.status, self.code, self.message, self.chain = status, code, message, chain


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _new_id() -> str:
    return uuid.uuid4().hex


class CloudflareServer(FakeServer):
    """Cloudflare API v4: zones, DNS records, token checks, rate limit.

    `tokens` maps each valid token to what it may do (`Token()`: everything). Zones and records
    are added with `add_zone()` and `add_record()`; `records()` and `record()` read them back.

    Knobs, besides those of `FakeServer`:
    `rate_limit_after` (answer 429 to every request after this many), `retry_after` (its
    Retry-After header; None leaves it out), `server_errors` (answer the next this many requests
    with `server_error_status`, an HTML page as Cloudflare's edge sends), `invalid_token_status`,
    `enterprise` (TTL may go down to 30).
    """

    def __init__(
        self,
        tokens: Mapping[str, Token],
        *,
        host: str = "127.0.0.1",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(host=host, ssl_context=ssl_context)
        self.tokens = dict(tokens)
        self.rate_limit_after: int | None = None
        self.retry_after: str | None = "300"
        self.server_errors: int = 0
        self.server_error_status: int = 502
        self.invalid_token_status: int = 401
        self.enterprise: bool = False
        self._state = threading.Lock()
        self._served = 0
        self._zones: dict[str, Zone] = {}
        self._records: dict[str, Record] = {}

    @property
    def api_url(self) -> str:
        return self.url + PREFIX

    # -- state, for tests ------------------------------------------------------------------------

    def add_zone(self, name: str, status: str = "active") -> str:
        zone = Zone(_new_id(), name.lower(), status)
        with self._state:
            self._zones[zone.id] = zone
        return zone.id

    def renumber_zone(self, name: str) -> str:
        """Give the zone a new id, records kept: as when it is removed and added again."""
        with self._state:
            (old,) = [z for z in self._zones.values() if z.name == name.lower()]
            new = replace(old, id=_new_id())
            del self._zones[old.id]
            self._zones[new.id] = new
            for record in self._records.values():
                if record.zone_id == old.id:
                    record.zone_id = new.id
        return new.id

    def add_record(
        self,
        name: str,
        type: str,
        content: str,
        *,
        proxied: bool = False,
        ttl: int = 1,
        comment: str | None = None,
        tags: Iterable[str] = (),
    ) -> str:
        """Add a record to the zone that holds `name` (the longest matching zone)."""
        name = name.lower()
        with self._state:
            zone = self._zone_of(name)
            if zone is None:
                raise KeyError(f"no zone holds {name}")
            stamp = _now()
            record = Record(
                _new_id(),
                zone.id,
                zone.name,
                name,
                type,
                content,
                proxied,
                ttl,
                comment,
                list(tags),
                stamp,
                stamp,
            )
            self._records[record.id] = record
        return record.id

    def records(self, name: str | None = None, type: str | None = None) -> list[Record]:
        """Copies of the records, optionally only those of `name` and/or `type`."""
        with self._state:
            return [
                replace(r, tags=list(r.tags))
                for r in self._records.values()
                if (name is None or r.name == name.lower()) and (type is None or r.type == type)
            ]

    def record(self, name: str, type: str) -> Record:
        """The one record of `name` and `type` (AssertionError if there is not exactly one)."""
        found = self.records(name, type)
        assert len(found) == 1, f"{len(found)} {type} records of {name}"
        return found[0]

    def writes(self) -> list[RecordedRequest]:
        """The requests that could change something (POST, PUT, PATCH, DELETE)."""
        return [r for r in self.requests if r.method in ("POST", "PUT", "PATCH", "DELETE")]

    # -- the protocol ----------------------------------------------------------------------------

    def handle(self, request: RecordedRequest) -> Response:
        with self._state:
            self._served += 1
            served = self._served
            failing = self.server_errors > 0
            if failing:
                self.server_errors -= 1
        if failing:
            return Response(
                self.server_error_status, _BAD_GATEWAY.encode(), "text/html; charset=utf-8"
            )
        if self.rate_limit_after is not None and served > self.rate_limit_after:
            headers = {} if self.retry_after is None else {"Retry-After": self.retry_after}
            return _failure(
                429, 971, "Please wait and consider throttling your request speed", headers=headers
            )
        try:
            token = self._token(request)
            return self._route(request, token)
        except _Refusal as refusal:
            return _failure(refusal.status, refusal.code, refusal.message, chain=refusal.chain)

    def _token(self, request: RecordedRequest) -> Token:
        if request.header("x-auth-key") or request.header("x-auth-email"):
            self.violation("X-Auth-Key/X-Auth-Email sent; API tokens use Authorization: Bearer")
        value = request.header("authorization")
        if value is None:
            raise _Refusal(400, 9106, "Missing X-Auth-Key, X-Auth-Email or Authorization headers")
        scheme, _, token = value.partition(" ")
        if scheme != "Bearer" or not _TOKEN.match(token):
            self.violation("Authorization is not `Bearer TOKEN`")
            raise _Refusal(
                400,
                6003,
                "Invalid request headers",
                [{"code": 6111, "message": "Invalid format for Authorization header"}],
            )
        found = self.tokens.get(token)
        if found is None:
            raise _Refusal(self.invalid_token_status, 9109, "Invalid access token")
        return found

    def _route(self, request: RecordedRequest, token: Token) -> Response:
        if not request.path.startswith(PREFIX + "/"):
            self.violation(f"request for {request.path!r}, outside {PREFIX}")
            raise _Refusal(404, 7000, "No route for that URI")
        path = request.path[len(PREFIX) :]
        if path == "/zones":
            if request.method != "GET":
                self.violation(f"{request.method} /zones")
                raise _Refusal(405, 7000, "No route for that URI")
            return self._list_zones(request, token)
        match = _RECORDS.match(path)
        if match is None:
            self.violation(f"request for unknown path {request.path!r}")
            raise _Refusal(404, 7000, "No route for that URI")
        zone = self._zone(match.group(1), path, token)
        record_id = match.group(2)
        if record_id is None:
            if request.method == "GET":
                self._need(token, zone, edit=False)
                return self._list_records(request, zone)
            if request.method == "POST":
                self._need(token, zone, edit=True)
                return self._create(request, zone)
        else:
            if request.method == "GET":
                self._need(token, zone, edit=False)
                return _success(self._existing(zone, record_id).as_json())
            if request.method in ("PATCH", "PUT"):
                self._need(token, zone, edit=True)
                return self._change(request, zone, record_id)
            if request.method == "DELETE":
                self._need(token, zone, edit=True)
                with self._state:
                    self._existing(zone, record_id)
                    del self._records[record_id]
                return _success({"id": record_id})
        self.violation(f"{request.method} {request.path}")
        raise _Refusal(405, 7000, "No route for that URI")

    # -- zones -----------------------------------------------------------------------------------

    def _list_zones(self, request: RecordedRequest, token: Token) -> Response:
        self._check_params(request, ZONE_LIST_PARAMS)
        name = request.query.get("name")
        status = request.query.get("status")
        with self._state:
            zones = [
                z
                for z in self._zones.values()
                if token.sees(z.name)
                and token.zone_read
                and (name is None or z.name == name.lower())
                and (status is None or z.status == status)
            ]
        result = [
            {"id": z.id, "name": z.name, "status": z.status, "paused": False, "type": "full"}
            for z in sorted(zones, key=lambda z: z.name)
        ]
        return self._page(request, result, default_per_page=20, max_per_page=50)

    def _zone(self, zone_id: str, path: str, token: Token) -> Zone:
        with self._state:
            zone = self._zones.get(zone_id)
        if zone is None:
            raise _Refusal(
                404, 7003, f"Could not route to {path}, perhaps your object identifier is invalid?"
            )
        if not token.sees(zone.name):
            raise _Refusal(403, 10000, "Authentication error")
        return zone

    def _zone_of(self, name: str) -> Zone | None:
        best = None
        for zone in self._zones.values():
            if (name == zone.name or name.endswith("." + zone.name)) and (
                best is None or len(zone.name) > len(best.name)
            ):
                best = zone
        return best

    def _need(self, token: Token, zone: Zone, *, edit: bool) -> None:
        allowed = token.dns_edit if edit else token.dns_edit or token.dns_read
        if not allowed or not token.sees(zone.name):
            raise _Refusal(403, 10000, "Authentication error")

    # -- records ---------------------------------------------------------------------------------

    def _list_records(self, request: RecordedRequest, zone: Zone) -> Response:
        self._check_params(request, RECORD_LIST_PARAMS)
        q = request.query
        tests = []
        if "type" in q:
            tests.append(lambda r: r.type == q["type"])
        for key, value in q.items():
            target, _, op = key.partition(".")
            if target not in ("name", "content") or (op == "" and key not in ("name", "content")):
                continue
            value = value.lower()
            op = op or "exact"
            tests.append(_text_test(target, op, value))
        if "proxied" in q:
            tests.append(lambda r: str(r.proxied).lower() == q["proxied"].lower())
        combine = any if q.get("match") == "any" else all
        with self._state:
            found = [
                r.as_json()
                for r in self._records.values()
                if r.zone_id == zone.id and (not tests or combine(t(r) for t in tests))
            ]
        order = q.get("order", "type")
        if order not in ("type", "name", "content", "ttl", "proxied"):
            self.violation(f"order={order!r} is not a documented field")
            order = "type"
        found.sort(key=lambda r: (str(r[order]), r["id"]), reverse=q.get("direction") == "desc")
        return self._page(request, found, default_per_page=100, max_per_page=5_000_000)

    def _create(self, request: RecordedRequest, zone: Zone) -> Response:
        body = self._body(request)
        for key in ("type", "name", "content"):
            if key not in body:
                raise _Refusal(400, 9207, f"Request body is invalid: {key} is required")
        with self._state:
            record = Record(
                _new_id(), zone.id, zone.name, "", "", "", created_on=_now(), modified_on=_now()
            )
            self._apply(record, body, zone)
            self._records[record.id] = record
            return _success(record.as_json())

    def _change(self, request: RecordedRequest, zone: Zone, record_id: str) -> Response:
        body = self._body(request)
        with self._state:
            current = self._existing(zone, record_id)
            if request.method == "PUT":
                self.violation(
                    "PUT overwrites the whole record: fields left out (proxied, ttl, comment, "
                    "tags) return to their defaults; PATCH changes only what it is given"
                )
                for key in ("type", "name", "content"):
                    if key not in body:
                        raise _Refusal(400, 9207, f"Request body is invalid: {key} is required")
                new = replace(current, proxied=False, ttl=1, comment=None, tags=[])
            else:
                new = replace(current, tags=list(current.tags))
                if body.get("type", current.type) != current.type:
                    self.violation(f"PATCH changes the type of {current.name}")
                if str(body.get("name", current.name)).lower() != current.name:
                    self.violation(f"PATCH renames {current.name}")
            self._apply(new, body, zone)
            new.modified_on = _now()
            self._records[record_id] = new
            return _success(new.as_json())

    def _existing(self, zone: Zone, record_id: str) -> Record:
        record = self._records.get(record_id)
        if record is None or record.zone_id != zone.id:
            raise _Refusal(404, 81044, "Record does not exist.")
        return record

    def _apply(self, record: Record, body: dict[str, Any], zone: Zone) -> None:
        """Validate `body` against `record` as it would become, then change it (lock held)."""
        for key in body:
            if key not in RECORD_KEYS:
                self.violation(f"record field {key!r} is not one this fake knows")
        rtype = body.get("type", record.type)
        if rtype not in TYPES:
            raise _Refusal(
                400, 1004, "DNS Validation Error", [_chain(f"type {rtype!r} is invalid")]
            )
        name = self._full_name(body.get("name", record.name), zone)
        content = body.get("content", record.content)
        if not isinstance(content, str):
            raise _Refusal(400, 1004, "DNS Validation Error", [_chain("content must be a string")])
        if rtype in ("A", "AAAA"):
            content = _address(rtype, content)
        ttl = body.get("ttl", record.ttl)
        lowest = 30 if self.enterprise else 60
        if (
            not isinstance(ttl, int)
            or isinstance(ttl, bool)
            or not (ttl == 1 or lowest <= ttl <= 86400)
        ):
            raise _Refusal(
                400,
                1004,
                "DNS Validation Error",
                [_chain(f"TTL must be between {lowest} and 86400 seconds, or 1 for Automatic")],
            )
        proxied = body.get("proxied", record.proxied)
        if not isinstance(proxied, bool) or (proxied and rtype not in PROXIABLE):
            raise _Refusal(400, 1004, "DNS Validation Error", [_chain("invalid proxied mode")])
        comment = body.get("comment", record.comment)
        if comment is not None and not isinstance(comment, str):
            raise _Refusal(400, 1004, "DNS Validation Error", [_chain("comment must be a string")])
        tags = body.get("tags", record.tags)
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise _Refusal(400, 1004, "DNS Validation Error", [_chain("tags must be strings")])
        for other in self._records.values():
            if other.id == record.id or other.zone_id != zone.id or other.name != name:
                continue
            if rtype in ("A", "AAAA") and other.type == "CNAME":
                raise _Refusal(400, 81054, "A CNAME record with that host already exists.")
            if rtype == "CNAME" and other.type in ("A", "AAAA", "CNAME"):
                raise _Refusal(
                    400, 81053, "An A, AAAA, or CNAME record with that host already exists."
                )
            if other.type == rtype and other.content == content:
                raise _Refusal(400, 81057, "The record already exists.")
        record.type, record.name, record.content = rtype, name, content
        record.ttl, record.proxied, record.comment, record.tags = ttl, proxied, comment, list(tags)

    def _full_name(self, value: Any, zone: Zone) -> str:
        if not isinstance(value, str) or not value:
            raise _Refusal(400, 1004, "DNS Validation Error", [_chain("name is required")])
        name = value.lower().rstrip(".")
        if name == "@":
            name = zone.name
        elif name != zone.name and not name.endswith("." + zone.name):
            name = f"{name}.{zone.name}"  # relative names are taken within the zone
        labels = name.split(".")
        if labels[0] == "*":
            labels = labels[1:]
        if len(name) > 253 or not all(_LABEL.match(x) for x in labels):
            raise _Refusal(
                400, 1004, "DNS Validation Error", [_chain(f"name {value!r} is invalid")]
            )
        return name

    # -- helpers ---------------------------------------------------------------------------------

    def _body(self, request: RecordedRequest) -> dict[str, Any]:
        kind = (request.header("content-type") or "").split(";")[0].strip().lower()
        if kind != "application/json":
            self.violation(f"body sent as {kind or 'no content type'}, not application/json")
            raise _Refusal(
                400, 9207, "Failed to parse request body, content-type must be application/json"
            )
        try:
            body = json.loads(request.body)
        except ValueError:
            self.violation("request body is not JSON")
            raise _Refusal(400, 9207, "Request body is invalid.") from None
        if not isinstance(body, dict):
            self.violation("request body is not a JSON object")
            raise _Refusal(400, 9207, "Request body is invalid.")
        return body

    def _check_params(self, request: RecordedRequest, known: frozenset[str]) -> None:
        for name in request.query:
            if name not in known and not name.startswith(("comment.", "tag.")):
                self.violation(f"query parameter {name!r} is not documented for {request.path}")

    def _page(
        self,
        request: RecordedRequest,
        items: list[dict[str, Any]],
        *,
        default_per_page: int,
        max_per_page: int,
    ) -> Response:
        try:
            page = max(int(request.query.get("page", "1")), 1)
            per_page = int(request.query.get("per_page", str(default_per_page)))
        except ValueError:
            self.violation("page/per_page is not a number")
            raise _Refusal(400, 1004, "Invalid pagination parameters") from None
        per_page = min(max(per_page, 5), max_per_page)
        chunk = items[(page - 1) * per_page : page * per_page]
        info = {
            "page": page,
            "per_page": per_page,
            "count": len(chunk),
            "total_count": len(items),
            "total_pages": max((len(items) + per_page - 1) // per_page, 1),
        }
        return _json(
            200,
            {"success": True, "errors": [], "messages": [], "result": chunk, "result_info": info},
        )


def _text_test(target: str, op: str, value: str) -> Any:
    def test(record: Record) -> bool:
        text = getattr(record, target).lower()
        if op == "exact":
            return bool(text == value)
        if op == "contains":
            return value in text
        if op == "startswith":
            return bool(text.startswith(value))
        return bool(text.endswith(value))

    return test


def _address(rtype: str, content: str) -> str:
    wanted = 4 if rtype == "A" else 6
    try:
        address = ipaddress.ip_address(content)
    except ValueError:
        address = None
    if address is None or address.version != wanted:
        code, kind = (9005, "IPv4") if wanted == 4 else (9006, "IPv6")
        raise _Refusal(400, code, f"Content for {rtype} record must be a valid {kind} address.")
    return str(address)


def _chain(message: str) -> dict[str, Any]:
    return {"code": 1004, "message": message}


def _json(status: int, data: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(status, json.dumps(data).encode(), "application/json", headers or {})


def _success(result: Any) -> Response:
    return _json(200, {"success": True, "errors": [], "messages": [], "result": result})


def _failure(
    status: int,
    code: int,
    message: str,
    *,
    chain: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if chain:
        error["error_chain"] = chain
    return _json(
        status, {"success": False, "errors": [error], "messages": [], "result": None}, headers
    )
