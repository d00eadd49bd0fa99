"""A strict local emulator of the PowerDNS Authoritative HTTP API, the zone endpoints only.

It exists so that a real dns-lexicon provider (`powerdns`, whose `pdns_server` option points it
anywhere) can be run end to end without a network. What it enforces, from PowerDNS's
documentation (docs/http-api/index.rst, zone.rst and the OpenAPI description in the pdns
repository) and its web server (pdns/webserver.cc):

- Every request carries `X-API-Key` (or `?api-key=`); otherwise 401 with
  `WWW-Authenticate: X-API-Key realm="PowerDNS"` and `{"error": "Unauthorized"}`.
- Base path `/api/v1`, server id `localhost`; `GET`/`PATCH .../zones/{zone_id}` and
  `PUT .../zones/{zone_id}/notify`. Zone ids are canonical names ("example.org."); the name
  without its final dot is accepted too, as PowerDNS parses the id as a DNS name.
- `PATCH` takes `{"rrsets": [...]}`; each RRset has a canonical `name` inside the zone, a
  `type`, and `changetype` REPLACE or DELETE. REPLACE needs `ttl` and `records` (an empty list
  deletes the RRset); DELETE must not carry records (and, per the spec, no ttl). Records are
  `{"content", "disabled"}`; A and AAAA content must be an address of that family, TXT content
  a quoted string. Success is `204 No Content` without a Content-Type; input errors are 422
  with `{"error": "..."}`, a body that is not JSON is 400.
- `notify` works for Master zones only, and clients must not send it a body.

Knobs, besides those of `FakeServer`: `api_key` (change it to provoke 401) and `zone(name)`
for the zone's current RRsets.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote

from ._server import FakeServer, RecordedRequest, Response, method_not_allowed

BASE = "/api/v1/servers/localhost/zones/"
KINDS = ("Native", "Master", "Slave")


def _json(status: int, value: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        status, json.dumps(value).encode("utf-8"), "application/json", dict(headers or {})
    )


def _error(status: int, message: str) -> Response:
    return _json(status, {"error": message})


class _Invalid(Exception):
    """Input validation failed: answered 422."""


class PowerDNSServer(FakeServer):
    """PowerDNS with `zones`: name → list of (name, type, ttl, [contents]).

    Names may be written relative to the zone ("home", "@") or absolute.
    """

    def __init__(
        self,
        api_key: str,
        zones: Mapping[str, Iterable[tuple[str, str, int, list[str]]]],
        *,
        kind: str = "Native",
        host: str = "127.0.0.1",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(host=host, ssl_context=ssl_context)
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        self.api_key = api_key
        self._state = threading.Lock()
        self._zones: dict[str, dict[str, Any]] = {}
        self.patches = 0
        self.notifies = 0
        for zone_name, rrsets in zones.items():
            zone = _canonical(zone_name)
            data: dict[tuple[str, str], dict[str, Any]] = {}
            for name, rtype, ttl, contents in rrsets:
                owner = zone if name == "@" else _canonical(name, zone)
                data[(owner, rtype)] = {
                    "ttl": ttl,
                    "records": [{"content": c, "disabled": False} for c in contents],
                }
            self._zones[zone] = {"kind": kind, "serial": 2024010101, "rrsets": data}

    # -- for tests -----------------------------------------------------------------------------

    def zone(self, name: str) -> dict[tuple[str, str], list[str]]:
        """(owner, type) → contents, owners absolute with the final dot."""
        with self._state:
            rrsets = self._zones[_canonical(name)]["rrsets"]
            return {k: [r["content"] for r in v["records"]] for k, v in rrsets.items()}

    def contents(self, zone: str, owner: str, rtype: str) -> list[str]:
        """The contents of one RRset; `owner` relative to the zone, "@" for its apex."""
        apex = _canonical(zone)
        key = apex if owner == "@" else _canonical(owner, apex)
        return self.zone(zone).get((key, rtype), [])

    # -- the protocol --------------------------------------------------------------------------

    def handle(self, request: RecordedRequest) -> Response:
        given = request.header("X-API-Key") or request.query.get("api-key")
        if given != self.api_key:
            return _json(
                401,
                {"error": "Unauthorized"},
                {"WWW-Authenticate": 'X-API-Key realm="PowerDNS"'},
            )
        if not request.path.startswith(BASE):
            self.violation(f"request for {request.path!r}; only {BASE}… is emulated")
            return _error(404, "Not Found")
        rest = request.path[len(BASE) :]
        zone_id, _, action = rest.partition("/")
        zone_name = _canonical(unquote(zone_id)) if zone_id else ""
        with self._state:
            zone = self._zones.get(zone_name)
            if zone is None:
                return _error(404, f"Could not find domain '{zone_name}'")
            if action == "notify":
                return self._notify(request, zone)
            if action:
                self.violation(f"sub-resource {action!r} is not emulated")
                return _error(404, "Not Found")
            if request.method == "GET":
                return _json(200, self._zone_object(zone_name, zone))
            if request.method == "PATCH":
                return self._patch(request, zone_name, zone)
        return method_not_allowed("GET", "PATCH")

    def _zone_object(self, name: str, zone: dict[str, Any]) -> dict[str, Any]:
        rrsets = [
            {
                "name": owner,
                "type": rtype,
                "ttl": rrset["ttl"],
                "records": copy.deepcopy(rrset["records"]),
                "comments": [],
            }
            for (owner, rtype), rrset in sorted(zone["rrsets"].items())
        ]
        return {
            "id": name,
            "name": name,
            "type": "Zone",
            "url": f"/api/v1/servers/localhost/zones/{name}",
            "kind": zone["kind"],
            "serial": zone["serial"],
            "notified_serial": 0,
            "edited_serial": zone["serial"],
            "masters": [],
            "dnssec": False,
            "nsec3param": "",
            "nsec3narrow": False,
            "presigned": False,
            "soa_edit": "",
            "soa_edit_api": "DEFAULT",
            "api_rectify": False,
            "account": "",
            "rrsets": rrsets,
        }

    def _notify(self, request: RecordedRequest, zone: dict[str, Any]) -> Response:
        if request.method != "PUT":
            return method_not_allowed("PUT")
        if request.body:
            self.violation("body sent with notify; clients MUST NOT send a body")
        if zone["kind"] != "Master":
            return _error(422, "Domain is not a primary zone")
        self.notifies += 1
        return _json(200, {"result": "Notification queued"})

    def _patch(self, request: RecordedRequest, zone_name: str, zone: dict[str, Any]) -> Response:
        content_type = (request.header("Content-Type") or "").split(";")[0].strip()
        if content_type != "application/json":
            self.violation(f"PATCH with Content-Type {content_type!r}; the API takes JSON")
        try:
            document = json.loads(request.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return _error(400, "Bad Request")
        if not isinstance(document, dict):
            return _error(400, "Bad Request")
        try:
            changes = self._validate(document, zone_name)
        except _Invalid as error:
            return _error(422, str(error))
        for key, rrset in changes:
            if rrset is None:
                zone["rrsets"].pop(key, None)
            else:
                zone["rrsets"][key] = rrset
        zone["serial"] += 1
        self.patches += 1
        return Response(204, b"", content_type="")

    def _validate(
        self, document: dict[str, Any], zone_name: str
    ) -> list[tuple[tuple[str, str], dict[str, Any] | None]]:
        rrsets = document.get("rrsets")
        if not isinstance(rrsets, list):
            raise _Invalid("No rrsets given in update request")
        seen: set[tuple[str, str]] = set()
        changes: list[tuple[tuple[str, str], dict[str, Any] | None]] = []
        for rrset in rrsets:
            if not isinstance(rrset, dict):
                raise _Invalid("RRset is not a JSON object")
            name, rtype = rrset.get("name"), rrset.get("type")
            if not isinstance(name, str) or not isinstance(rtype, str):
                raise _Invalid("RRset lacks name or type")
            if not name.endswith("."):
                raise _Invalid(f"RRset {name} IN {rtype}: Name is not canonical")
            if name.lower() != zone_name and not name.lower().endswith("." + zone_name):
                raise _Invalid(f"RRset {name} IN {rtype}: Name is out of zone")
            key = (name.lower(), rtype.upper())
            if key in seen:
                raise _Invalid(f"Duplicate RRset {name} IN {rtype}")
            seen.add(key)
            changetype = str(rrset.get("changetype", "")).upper()
            records = rrset.get("records", [])
            if changetype == "DELETE":
                if records:
                    raise _Invalid(f"RRset {name} IN {rtype}: records must be empty for DELETE")
                if "ttl" in rrset:
                    self.violation(f"DELETE of {name} {rtype} carries a ttl (MUST NOT)")
                changes.append((key, None))
            elif changetype == "REPLACE":
                changes.append((key, self._replacement(rrset, name, rtype, records)))
            else:
                raise _Invalid(f"Changetype not understood: {rrset.get('changetype')!r}")
        return changes

    def _replacement(
        self, rrset: dict[str, Any], name: str, rtype: str, records: Any
    ) -> dict[str, Any] | None:
        if not isinstance(records, list):
            raise _Invalid(f"RRset {name} IN {rtype}: records is not a list")
        if not records:
            return None  # an empty list deletes the RRset
        ttl = rrset.get("ttl")
        if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl < 0:
            raise _Invalid(f"RRset {name} IN {rtype}: ttl is missing or not a number")
        kept: list[dict[str, Any]] = []
        for record in records:
            if not isinstance(record, dict) or not isinstance(record.get("content"), str):
                raise _Invalid(f"RRset {name} IN {rtype}: record without content")
            content = record["content"]
            _check_content(rtype.upper(), content, name)
            if any(r["content"] == content for r in kept):
                raise _Invalid(f"RRset {name} IN {rtype}: duplicate record with content")
            kept.append({"content": content, "disabled": bool(record.get("disabled", False))})
        return {"ttl": ttl, "records": kept}


def _canonical(name: str, zone: str | None = None) -> str:
    name = name.strip().lower()
    if zone is not None and not name.endswith(".") and not name.endswith(zone.rstrip(".")):
        name = f"{name}.{zone}"
    return name if name.endswith(".") else name + "."


def _check_content(rtype: str, content: str, name: str) -> None:
    where = f"Record {name}/{rtype} '{content}'"
    if rtype in ("A", "AAAA"):
        try:
            address = ipaddress.ip_address(content)
        except ValueError:
            raise _Invalid(f"{where}: Parsing record content: not an IP address") from None
        if address.version != (4 if rtype == "A" else 6):
            raise _Invalid(f"{where}: Parsing record content: wrong address family")
    elif rtype == "TXT" and not (len(content) >= 2 and content[0] == content[-1] == '"'):
        raise _Invalid(f"{where}: Parsing record content: TXT data must be quoted")
