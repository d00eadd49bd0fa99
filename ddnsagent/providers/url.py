"""A generic update URL, for services that have no provider of their own.

The user writes the request as templates: `url` (and optionally `headers` and `body` or `json`)
with placeholders such as `{ip}`, `{hostname}` and `{token}`. Secrets enter a request only
through `{password}`/`{token}` (or Basic auth), so describing a request never needs them, and
every form a secret travels in (plain, percent-encoded, JSON-escaped) is registered with the log
redactor before the request is made. Whether the service accepted the update is read from the
status and, when the service always answers 200, from `success_regex` or `success_json`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ddnsagent import http
from ddnsagent.address import IPAddress, check_url
from ddnsagent.errors import FatalAnswer, HTTPFailure, TransientError
from ddnsagent.providers.base import Common, Provider, http_verdict, read_common
from ddnsagent.secrets import Secret, redact, register, register_basic_auth
from ddnsagent.table import Table

if TYPE_CHECKING:  # httpx (~50 ms) loads only when a request is made; see ddnsagent.http
    import httpx

TYPE = "url"
KEYS = (
    "url, method, hostnames, headers, body|json, username, "
    "password|password_file|password_env, token|token_file|token_env, "
    "success_regex | success_json [+ success_value]"
)

PLACEHOLDERS = ("ip", "ipv4", "ipv6", "hostname", "password", "token")
METHODS = ("GET", "POST", "PUT", "PATCH")
WAIT_429 = 60.0  # when a 429 comes without Retry-After

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_FORBIDDEN_IN_HEADER = ("\r", "\n", "\0")
_NO_VALUE = object()


@dataclass(frozen=True)
class Success:
    """How a 2xx answer is recognised as a done update; neither field set means 2xx is enough."""

    regex: str | None = None
    json_path: tuple[str, ...] | None = None
    json_value: str | int | float | bool | None = None  # None: the value must be truthy


@dataclass(frozen=True)
class Settings(Common):
    method: str
    url: str
    hostnames: tuple[str, ...]
    headers: tuple[tuple[str, str], ...]
    body: str | None
    json_body: str | None  # the `json` table, serialised; placeholders live in its strings
    username: str | None
    password: Secret | None
    token: Secret | None
    success: Success

    @property
    def per_hostname(self) -> bool:
        return bool(self.hostnames)


def placeholders(text: str) -> list[str]:
    """The placeholder names in `text`, in order of appearance."""
    return [m.group(1) for m in _PLACEHOLDER.finditer(text)]


def expand(text: str, values: Mapping[str, str], encode: Callable[[str], str] = str) -> str:
    """Replace each known placeholder that has a value; others stay as written."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        return encode(values[name]) if name in values else match.group(0)

    return _PLACEHOLDER.sub(one, text)


def _url_encode(value: str) -> str:
    return quote(value, safe="")


def _strings(value: Any) -> Iterable[str]:
    """Every string inside a TOML value (keys of tables included)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _expand_json(value: Any, values: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return expand(value, values)
    if isinstance(value, dict):
        return {expand(k, values): _expand_json(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_json(v, values) for v in value]
    return value


def from_table(t: Table) -> Settings:
    common = read_common(t, ipv4=True, ipv6=False)
    insecure = common["insecure_http"]
    method = t.string("method", "GET", METHODS)
    url = t.string("url")
    used: dict[str, str] = {}  # placeholder → the first key that uses it

    def scan(key: str, text: str) -> None:
        for name in placeholders(text):
            if name not in PLACEHOLDERS:
                raise t.error(
                    key,
                    f"unknown placeholder {{{name}}}",
                    "valid: " + ", ".join(f"{{{p}}}" for p in PLACEHOLDERS),
                )
            used.setdefault(name, t.key(key))

    scan("url", url)
    dummy = {name: "x" for name in PLACEHOLDERS} | {"hostname": "example.net"}
    check_url(expand(url, dummy), insecure, lambda p, f=None: t.error("url", p, f))

    headers_table = t.table("headers")
    headers = []
    for name in headers_table.data:
        value = headers_table.string(name)
        if not _HEADER_NAME.match(name):
            raise headers_table.error(name, "is not a valid HTTP header name")
        if any(c in value for c in _FORBIDDEN_IN_HEADER):
            raise headers_table.error(name, "contains a line break or NUL")
        scan(f"headers.{name}", value)
        headers.append((name, value))

    body = t.string("body", None)
    json_template = t.raw("json", None)
    if body is not None and json_template is not None:
        raise t.error("json", "conflicts with body", "keep only one")
    if body is not None:
        scan("body", body)
    json_body = None
    if json_template is not None:
        if not isinstance(json_template, dict | list):
            raise t.error("json", f"found {json_template!r}, expected a table or a list")
        for text in _strings(json_template):
            scan("json", text)
        json_body = json.dumps(json_template)
    if method == "GET" and (body is not None or json_body is not None):
        raise t.error("method", "GET requests carry no body", 'set method = "POST" (or PUT)')

    hostnames = tuple(t.str_list("hostnames", []))
    if "hostname" in used and not hostnames:
        raise t.error(
            "hostnames",
            f"is required because {used['hostname']} uses {{hostname}}",
            'e.g. hostnames = ["home.example.net"]; one request is sent per hostname',
        )
    if hostnames and "hostname" not in used:
        raise t.error(
            "hostnames",
            "is set but no template uses {hostname}",
            "add {hostname} to url, headers or body, or remove hostnames",
        )
    for h in hostnames:
        if not h or any(c.isspace() or c in "/?#@," for c in h):
            raise t.error("hostnames", f"{h!r} is not a host name")

    if "ipv4" in used and "ipv6" in used:
        raise t.error(
            "url", "uses both {ipv4} and {ipv6}, but a request carries one address", "use {ip}"
        )
    if "ipv4" in used and common["ipv6"]:
        raise t.error(
            "ipv6",
            f"is true but {used['ipv4']} uses {{ipv4}}",
            "use {ip}, which is the address of either family, or set ipv6 = false",
        )
    if "ipv6" in used and common["ipv4"]:
        raise t.error(
            "ipv4", f"is true but {used['ipv6']} uses {{ipv6}}", "use {ip}, or set ipv4 = false"
        )

    username = t.string("username", None)
    password = t.secret("password", required=False)
    token = t.secret("token", required=False)
    for name, secret in (("password", password), ("token", token)):
        needed = name in used or (name == "password" and username is not None)
        if needed and secret is None:
            why = used.get(name) or t.key("username")
            uses = f"uses {{{name}}}" if name in used else "asks for Basic auth"
            raise t.error(
                name,
                f"is required because {why} {uses}",
                f'add {name}_file = "/etc/ddnsagent/NAME.secret" (mode 0600), '
                f'{name}_env = "VAR", or {name} = "…"',
            )
        if secret is not None and not needed:
            raise t.error(
                secret.key.rpartition(".")[2],
                f"is set but nothing uses {{{name}}}",
                f"put {{{name}}} in url, headers or body"
                + (", or set username for Basic auth" if name == "password" else "")
                + f", or remove {secret.key.rpartition('.')[2]}",
            )

    success = _read_success(t)
    return Settings(
        **common,
        method=method,
        url=url,
        hostnames=hostnames,
        headers=tuple(headers),
        body=body,
        json_body=json_body,
        username=username,
        password=password,
        token=token,
        success=success,
    )


def _read_success(t: Table) -> Success:
    regex = t.string("success_regex", None)
    path_text = t.string("success_json", None)
    value = t.raw("success_value", _NO_VALUE)
    if regex is not None and path_text is not None:
        raise t.error("success_json", "conflicts with success_regex", "keep only one")
    if value is not _NO_VALUE and path_text is None:
        raise t.error("success_value", "needs success_json", 'e.g. success_json = "result"')
    if regex is not None:
        try:
            re.compile(regex)
        except re.error as exc:
            raise t.error("success_regex", f"is not a valid regular expression: {exc}") from None
        return Success(regex=regex)
    if path_text is None:
        return Success()
    parts = tuple(path_text.split("."))
    if not path_text or any(not p for p in parts):
        raise t.error("success_json", f"found {path_text!r}", 'write a dotted path, e.g. "a.b.0"')
    if value is _NO_VALUE:
        return Success(json_path=parts)
    if not isinstance(value, str | int | float | bool):
        raise t.error("success_value", f"found {value!r}, expected a string, number or boolean")
    return Success(json_path=parts, json_value=value)


# -- the answer ---------------------------------------------------------------------------------


def _snippet(body: str) -> str:
    return redact(" ".join(body.split()))[:120]


def judge(
    status: int,
    body: str,
    success: Success,
    retry_after_header: str | None = None,
    now: float | None = None,
    location: str | None = None,
) -> str:
    """The meaning of one answer; pure, so it is tested on plain strings."""
    http_verdict(
        status,
        "the service",
        "check username, password/token and url",
        retry_after_header=retry_after_header,
        location=location,
        throttle_wait=WAIT_429,
        now=now,
    )
    if not 200 <= status < 300:
        raise FatalAnswer(f"HTTP {status} from the update URL", "check url and method")
    if success.regex is not None:
        if re.search(success.regex, body):
            return f"HTTP {status}, answer matches success_regex"
        raise TransientError(f"answer does not match success_regex: {_snippet(body)!r}")
    if success.json_path is not None:
        return _judge_json(status, body, success)
    return f"HTTP {status}"


def _judge_json(status: int, body: str, success: Success) -> str:
    assert success.json_path is not None
    shown = ".".join(success.json_path)
    try:
        node: Any = json.loads(body)
    except ValueError:
        raise TransientError(f"answer is not JSON: {_snippet(body)!r}") from None
    for part in success.json_path:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise TransientError(f"answer has no {shown}: {_snippet(body)!r}")
    ok = bool(node) if success.json_value is None else _equal(node, success.json_value)
    if ok:
        return f"HTTP {status}, {shown} = {json.dumps(node)}"
    raise TransientError(f"answer has {shown} = {redact(json.dumps(node))[:80]}, not success")


def _equal(node: Any, expected: str | int | float | bool) -> bool:
    """JSON and TOML values compared by kind: true is not 1, "1" is not 1, 1 is 1.0."""
    if isinstance(expected, bool) or isinstance(node, bool):
        return isinstance(node, bool) and isinstance(expected, bool) and node == expected
    if isinstance(expected, int | float):
        return isinstance(node, int | float) and node == expected
    return isinstance(node, str) and node == expected


# -- the request --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    headers: dict[str, str]
    content: bytes | None


def _register_forms(value: str) -> None:
    """Make the redactor know the secret as it appears in URLs and in JSON, not only as is."""
    register(value)
    register(_url_encode(value))
    register(json.dumps(value)[1:-1])


class Client:
    TYPE = TYPE
    BIND_FAMILY = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _values(
        self, family: int, address: IPAddress, hostname: str | None, secrets: Mapping[str, str]
    ) -> dict[str, str]:
        values = {"ip": str(address), f"ipv{family}": str(address)}
        if hostname is not None:
            values["hostname"] = hostname
        values.update(secrets)
        return values

    def build(
        self, family: int, address: IPAddress, hostname: str | None, secrets: Mapping[str, str]
    ) -> Request:
        """One request. Without `secrets`, {password}/{token} stay as written (for describe)."""
        s = self.settings
        values = self._values(family, address, hostname, secrets)
        url = expand(s.url, values, _url_encode)
        headers = {name: expand(value, values) for name, value in s.headers}
        for name, value in headers.items():
            if any(c in value for c in _FORBIDDEN_IN_HEADER):
                raise FatalAnswer(
                    f"header {name} would contain a line break", "check the values it uses"
                )
        content = None
        if s.body is not None:
            content = expand(s.body, values).encode("utf-8")
        elif s.json_body is not None:
            data = _expand_json(json.loads(s.json_body), values)
            content = json.dumps(data).encode("utf-8")
            if not any(name.lower() == "content-type" for name in headers):
                headers["Content-Type"] = "application/json"
        return Request(s.method, url, headers, content)

    def _hosts(self) -> tuple[str | None, ...]:
        return self.settings.hostnames if self.settings.per_hostname else (None,)

    def describe(self, family: int, address: IPAddress) -> str:
        s = self.settings
        lines = [self.build(family, address, h, {}).url for h in self._hosts()]
        text = f"{s.method} " + " ; ".join(lines)
        if s.body is not None or s.json_body is not None:
            text += " with a body"
        if s.username is not None:
            text += f" as {s.username}"
        return text

    async def update(self, family: int, address: IPAddress, client: httpx.AsyncClient) -> str:
        s = self.settings
        secrets: dict[str, str] = {}
        for name, secret in (("password", s.password), ("token", s.token)):
            if secret is not None:
                secrets[name] = secret.reveal()
                _register_forms(secrets[name])
        auth = None
        if s.username is not None:
            register_basic_auth(s.username, secrets["password"])
            auth = (s.username, secrets["password"])
        results = []
        for hostname in self._hosts():
            request = self.build(family, address, hostname, secrets)
            try:
                answer = await http.fetch(
                    client,
                    request.method,
                    request.url,
                    headers=request.headers,
                    content=request.content,
                    auth=auth,
                )
            except HTTPFailure as exc:
                raise TransientError(redact(str(exc))) from None
            message = judge(
                answer.status,
                answer.body,
                s.success,
                answer.headers.get("Retry-After"),
                location=answer.headers.get("Location"),
            )
            results.append(f"{hostname}: {message}" if hostname else message)
        return "; ".join(results)


_: type[Provider] = Client
