"""MyDNS.JP: IP notification by logging in to login.html with the MasterID.

MyDNS takes the address from the connection itself, so the IPv4 URL is fetched over IPv4 and the
IPv6 URL over IPv6 (the agent hands us a client bound to the family). The service answers 200 to
bad logins too, so success is read from the body, never from the status alone.

Two things the status cannot say are read from the body as well:

- The address MyDNS recorded. Its success page shows the connection's address (`REMOTE
  ADDRESS`). On a host with two ways out (multi-WAN, IPoE beside PPPoE) the request may leave
  over another route than the one whose address was detected; MyDNS then publishes the other
  address. That is not counted as sent: the sync warns with both addresses and tries again
  later. `bind_to_detected = true` makes the request leave from the detected address when it is
  an address of this host (an `interface:` source), which fixes the route for MyDNS's request.
  A success page without `REMOTE ADDRESS` is still a success; the message says that the address
  could not be confirmed.
- `login_status = 0`. A wrong password gives it, but so can a node of MyDNS's round-robin that
  does not do the work (see tests/fakes/mydns.py for the sources). One such answer does not stop
  the target: it asks again on a new connection, and only `LOGIN_ANSWERS` answers in a row stop
  it (401/403 stop at once: they are the service's own "no").
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ddnsagent import http
from ddnsagent.address import IPAddress
from ddnsagent.errors import FatalAnswer, HTTPFailure, TransientError
from ddnsagent.names import is_name
from ddnsagent.providers.base import Common, Provider, http_verdict, read_common
from ddnsagent.secrets import Secret, register_basic_auth
from ddnsagent.table import Table

if TYPE_CHECKING:  # httpx (~50 ms) loads only when a request is made; see ddnsagent.http
    import httpx

TYPE = "mydns"
KEYS = (
    "master_id, password|password_file|password_env, url_ipv4, url_ipv6, bind_to_detected, domain"
)

_OK_STATUS = re.compile(r"login_status\s*=\s*1\b")
_NG_STATUS = re.compile(r"login_status\s*=\s*0\b")
_OK_TEXT = "Login and IP address notify OK"
# `REMOTE ADDRESS: 198.51.100.7`, as text or as a definition list (`<DT>REMOTE ADDRESS:</DT>
# <DD>198.51.100.7</DD>`): the label, then the first address-looking word after any tags.
_REMOTE = re.compile(
    r"REMOTE\s+ADDRESS\s*:?\s*(?:<[^>]{0,40}>\s*)*([0-9A-Fa-f:.]{2,45})", re.IGNORECASE
)
LOGIN_FIX = "check master_id and the password"
# Three answers in a row, each on a new connection (so possibly another node of MyDNS's
# round-robin) and `LOGIN_PAUSE` apart: one node that fails to do the work must not stop the
# target, as a stop means no notification until someone acts, and MyDNS expects one at least
# every week. A wrong password says `login_status = 0` every time, so three in a row is the sign
# of it, and asking more would only hammer the service with a password it refuses.
LOGIN_ANSWERS = 3
LOGIN_PAUSE = 2.0
# A request that left over another route will leave over it again in a moment: no quick retry.
ROUTE_WAIT = 300.0


UNCONFIRMED = "MyDNS's page did not show the address it recorded (no REMOTE ADDRESS)"


class LoginNotAccepted(FatalAnswer):
    """`login_status = 0`: the credentials, or a node that did not do the work (see above)."""


@dataclass(frozen=True)
class Settings(Common):
    master_id: str
    password: Secret
    url_ipv4: str
    url_ipv6: str
    bind_to_detected: bool
    domain: str | None  # the domain registered to the MasterID (DOMAIN INFO), for acme-hook

    # Added after a release: at their defaults they stay out of the fingerprint, so an upgrade
    # neither resends every address nor lifts a stop.
    LATER_KEYS: ClassVar[dict[str, object]] = {
        **Common.LATER_KEYS,
        "bind_to_detected": False,
        "domain": None,
    }


def from_table(t: Table) -> Settings:
    common = read_common(t, ipv4=True, ipv6=False, keepalive=24 * 3600.0)
    insecure = common["insecure_http"]
    master_id = t.string("master_id")
    if not master_id:
        raise t.error("master_id", "is empty", "copy the MasterID from the MyDNS.JP control panel")
    password = t.secret("password")
    assert password is not None
    domain = t.string("domain", None)
    if domain is not None:
        domain = domain.strip().rstrip(".").lower()
        if not is_name(domain):
            raise t.error(
                "domain",
                f"{domain!r} is not a domain name",
                "give the domain shown in MyDNS.JP's DOMAIN INFO, e.g. example.mydns.jp",
            )
    return Settings(
        **common,
        master_id=master_id,
        password=password,
        url_ipv4=t.url("url_ipv4", "https://ipv4.mydns.jp/login.html", insecure),
        url_ipv6=t.url("url_ipv6", "https://ipv6.mydns.jp/login.html", insecure),
        bind_to_detected=t.boolean("bind_to_detected", False),
        domain=domain,
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
        raise LoginNotAccepted("MyDNS answered that the login failed (login_status = 0)", LOGIN_FIX)
    raise TransientError("MyDNS answered 200 without a login status; not counted as notified")


def recorded_address(body: str) -> IPAddress | None:
    """The address a success page says MyDNS recorded (`REMOTE ADDRESS`), if it shows one."""
    found = _REMOTE.search(body)
    if found is None:
        return None
    try:
        return ipaddress.ip_address(found.group(1).strip(".:"))
    except ValueError:
        return None


def check_recorded(meant: IPAddress, recorded: IPAddress | None, bound: bool | None) -> str:
    """What to add to the success message; raises TransientError when MyDNS recorded another
    address than `meant` (pure). `bound`: True when the request left from `meant`, None when
    `bind_to_detected` asked for that but `meant` is not an address of this host, else False."""
    if recorded is None:
        return (
            f"; MyDNS's page did not show the address it recorded (no REMOTE ADDRESS), so "
            f"{meant} is not confirmed"
        )
    if recorded == meant:
        return f" (MyDNS recorded {recorded})"
    if bound:
        why = (
            f"the request left from {meant} but reached MyDNS from {recorded}: something on "
            "the way translates it (NAT on a router, or a proxy); notify from the host that "
            f"holds {meant}"
        )
    elif bound is None:
        why = (
            f"bind_to_detected is set, but {meant} is not an address of this host (it was "
            "seen from outside, behind a router), so the request cannot be made to leave from "
            "it here: route MyDNS's hosts over the link that has that address, on the router"
        )
    else:
        why = (
            "the request left over another route than the one whose address was detected "
            "(multi-WAN, or IPoE beside PPPoE); set bind_to_detected = true so that it leaves "
            f"from {meant} when that is an address of this host (an interface: source), or "
            "route MyDNS's hosts over that link"
        )
    raise TransientError(
        f"MyDNS recorded {recorded}, not {meant} that this sync meant to publish; not counted "
        f"as sent: {why}",
        min_wait=ROUTE_WAIT,
    )


class Client:
    TYPE = TYPE
    BIND_FAMILY = True  # MyDNS notifies the address the request comes from

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.unconfirmed: str | None = None  # read by the agent after a success

    def _url(self, family: int) -> str:
        return self.settings.url_ipv4 if family == 4 else self.settings.url_ipv6

    def describe(self, family: int, address: IPAddress) -> str:
        source = f" from {address}" if self.settings.bind_to_detected else ""
        return f"GET {self._url(family)} as {self.settings.master_id} over IPv{family}{source}"

    async def update(self, family: int, address: IPAddress, client: httpx.AsyncClient) -> str:
        s = self.settings
        password = s.password.reveal()
        register_basic_auth(s.master_id, password)
        bound: bool | None = s.bind_to_detected and http.is_local_address(str(address))
        if s.bind_to_detected and not bound:
            bound = None  # asked for, but not possible: said so below
        timeout = client.timeout.connect or 10.0
        note = ""
        if bound is None:
            note = f" ({address} is not an address of this host, so the request was not bound)"
        for answer_no in range(1, LOGIN_ANSWERS + 1):
            # The first ask uses the agent's client; a new ask (or a bound one) gets a client of
            # its own, hence a new connection, maybe to another node of the round-robin.
            own = None
            if bound or answer_no > 1:
                own = http.client(
                    family,
                    timeout,
                    user_agent=client.headers.get("User-Agent"),
                    local_address=str(address) if bound else None,
                )
            try:
                body = await self._ask(family, own or client, password)
            except LoginNotAccepted as exc:
                if answer_no == LOGIN_ANSWERS:
                    raise LoginNotAccepted(
                        f"MyDNS answered that the login failed (login_status = 0) "
                        f"{LOGIN_ANSWERS} times in a row, on new connections",
                        exc.fix,
                    ) from None
                await _pause(LOGIN_PAUSE)
                continue
            except TransientError as exc:
                if answer_no > 1:  # the count restarts with the next sync
                    raise TransientError(
                        f"{exc} (after {answer_no - 1} login_status = 0 answer(s))",
                        min_wait=exc.min_wait,
                    ) from None
                raise
            finally:
                if own is not None:
                    await own.aclose()
            recorded = recorded_address(body)
            extra = check_recorded(address, recorded, bound)
            self.unconfirmed = None if recorded is not None else UNCONFIRMED
            again = f" (after {answer_no - 1} login_status = 0)" if answer_no > 1 else ""
            return f"notified{extra}{again}{note}"
        raise AssertionError("unreachable")

    async def _ask(self, family: int, client: httpx.AsyncClient, password: str) -> str:
        """One login; the page when it says notified, else what `judge` raises."""
        s = self.settings
        try:
            answer = await http.fetch(
                client,
                "GET",
                self._url(family),
                auth=(s.master_id, password),
                headers={"Connection": "close"},  # the next ask opens a new connection
            )
        except HTTPFailure as exc:
            raise TransientError(str(exc)) from None
        judge(
            answer.status,
            answer.body,
            answer.headers.get("retry-after"),
            answer.headers.get("location"),
        )
        return answer.body


_: type[Provider] = Client


async def _pause(seconds: float) -> None:
    import asyncio  # not at the top: reading the settings (status, check-config) needs none

    await asyncio.sleep(seconds)
