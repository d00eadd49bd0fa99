"""MyDNS.JP: IP notification by logging in to login.html with the MasterID.

MyDNS takes the address from the connection itself, so the IPv4 URL is fetched over IPv4 and the
IPv6 URL over IPv6 (the agent hands us a client bound to the family). The service answers 200 to
bad logins too, so success is read from the body, never from the status alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ddnsagent import http
from ddnsagent.address import IPAddress
from ddnsagent.errors import FatalAnswer, HTTPFailure, TransientError
from ddnsagent.providers.base import Common, Provider, http_verdict, read_common
from ddnsagent.secrets import Secret, register_basic_auth
from ddnsagent.table import Table

if TYPE_CHECKING:  # httpx (~50 ms) loads only when a request is made; see ddnsagent.http
    import httpx

TYPE = "mydns"
KEYS = "master_id, password|password_file|password_env, url_ipv4, url_ipv6"

_OK_STATUS = re.compile(r"login_status\s*=\s*1\b")
_NG_STATUS = re.compile(r"login_status\s*=\s*0\b")
_OK_TEXT = "Login and IP address notify OK"
LOGIN_FIX = "check master_id and the password"


@dataclass(frozen=True)
class Settings(Common):
    master_id: str
    password: Secret
    url_ipv4: str
    url_ipv6: str


def from_table(t: Table) -> Settings:
    common = read_common(t, ipv4=True, ipv6=False, keepalive=24 * 3600.0)
    insecure = common["insecure_http"]
    master_id = t.string("master_id")
    if not master_id:
        raise t.error("master_id", "is empty", "copy the MasterID from the MyDNS.JP control panel")
    password = t.secret("password")
    assert password is not None
    return Settings(
        **common,
        master_id=master_id,
        password=password,
        url_ipv4=t.url("url_ipv4", "https://ipv4.mydns.jp/login.html", insecure),
        url_ipv6=t.url("url_ipv6", "https://ipv6.mydns.jp/login.html", insecure),
    )


def judge(
    status: int, body: str, retry_after: str | None = None, location: str | None = None
) -> str:
    """The meaning of one answer; pure, so it is tested on plain strings."""
    http_verdict(
        status,
        "MyDNS",
        LOGIN_FIX,
        refused=f"MyDNS refused the login (HTTP {status})",
        retry_after_header=retry_after,
        location=location,
    )
    if status != 200:
        raise FatalAnswer(f"MyDNS answered HTTP {status}", "check url_ipv4/url_ipv6")
    if _OK_STATUS.search(body) or _OK_TEXT in body:
        return "notified"
    if _NG_STATUS.search(body) or re.search(r"\bNG\b", body):
        raise FatalAnswer("MyDNS answered that the login failed (login_status = 0)", LOGIN_FIX)
    raise TransientError("MyDNS answered 200 without a login status; not counted as notified")


class Client:
    TYPE = TYPE
    BIND_FAMILY = True  # MyDNS notifies the address the request comes from

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _url(self, family: int) -> str:
        return self.settings.url_ipv4 if family == 4 else self.settings.url_ipv6

    def describe(self, family: int, address: IPAddress) -> str:
        return f"GET {self._url(family)} as {self.settings.master_id} over IPv{family}"

    async def update(self, family: int, address: IPAddress, client: httpx.AsyncClient) -> str:
        s = self.settings
        password = s.password.reveal()
        register_basic_auth(s.master_id, password)
        try:
            answer = await http.fetch(
                client, "GET", self._url(family), auth=(s.master_id, password)
            )
        except HTTPFailure as exc:
            raise TransientError(str(exc)) from None
        return judge(
            answer.status,
            answer.body,
            answer.headers.get("retry-after"),
            answer.headers.get("location"),
        )


_: type[Provider] = Client
