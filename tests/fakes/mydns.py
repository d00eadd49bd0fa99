"""A strict local emulator of MyDNS.JP's HTTP IP notification (`GET /login.html`).

How MyDNS.JP behaves, as its usage page and users' captures of real answers describe it:

- The client sends `GET /login.html` with HTTP Basic authentication, the MasterID as user name.
  There are no parameters: MyDNS takes the address to publish from the connection itself, which
  is why it offers `ipv4.mydns.jp` and `ipv6.mydns.jp` (one host per address family).
- Without an Authorization header the answer is 401 with
  `WWW-Authenticate: Basic realm="Enter MasterID and Password."`.
- With credentials that do not match, the answer observed in the field is *200* with a page that
  says `login_status = 0.`; nothing is notified. (`bad_login_status = 401` answers with the
  challenge instead, for tests that want that path.)
- With valid credentials the answer is 200 with an HTML page saying
  `Login and IP address notify OK.` and `login_status = 1.`, followed by a definition list of
  MASTERID, REMOTE ADDRESS (the connection's address, now published), ACCESS DAYTIME and
  SERVER ADDRESS.

The exact wording of the failure page is not documented; the fake guarantees only that it has
`login_status = 0.` and lacks the OK sentence, which is what a client should key on.

Sources for the above, and for the knobs added with issue 12:

- yumewaka/Magnetite, docs/DDNS-MYDNS-FIX-REQUEST.md (a MyDNS user's capture, 2026): login.html
  checks the credentials itself with realm "Enter MasterID and Password."; no Authorization →
  401; wrong password → 200 with `login_status = 0` and nothing notified; right password → 200
  with `login_status = 1` and "Login and IP address notify OK"; the real success body shows
  `REMOTE ADDRESS: 119.244.9.188` and `SERVER ADDRESS: …`. The same report saw correct
  credentials get a 200 login.html page that notified nothing, and names www.mydns.jp's
  round-robin over several addresses: one node may not do the work (`flaky_answers`).
- A user's notify script (pages corpus, "mydns_noticeip.sh"): the success page begins with
  "Login and IP address notify OK.<BR>"; several public clients key on that sentence alone
  (e.g. the `grep -q "Login and IP address notify OK"` of a directip.html script).
- REMOTE ADDRESS is the connection's address, so a request that leaves over another route than
  the one we meant is recorded with that route's address (`pretend_peer` plays that route).
  Whether every page shows it is not documented: `show_remote = False` leaves it out.
- Redirects: none documented for login.html; `redirect_to` answers 302 to that Location, as a
  moved or misconfigured front end would (DirectEDIT was seen answering 307 to its front page,
  disco-v8/DirectEdit#4). A client must not follow it with the credentials.
"""

from __future__ import annotations

import html
import ipaddress
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from ._server import (
    FakeServer,
    RecordedRequest,
    Response,
    method_not_allowed,
    not_found,
    text,
)

REALM = "Enter MasterID and Password."
OK_SENTENCE = "Login and IP address notify OK."
PATH = "/login.html"


@dataclass(frozen=True)
class Notification:
    """One successful notification: who, which address (and its family), when (monotonic)."""

    master_id: str
    address: str
    family: int
    time: float


class MyDNSServer(FakeServer):
    """MyDNS.JP's `login.html` notify endpoint.

    `accounts` maps MasterID to password. Knobs, besides those of `FakeServer`:
    `bad_login_status` (200, as observed, or 401) and `notify_fails` (valid credentials, but
    the page says `login_status = 0.`, e.g. a suspended account); `flaky_answers` (the next N
    valid logins get `login_status = 0.` and notify nothing, a node that does not do the work);
    `show_remote` (False: the success page has no REMOTE ADDRESS); `redirect_to` (a Location:
    every request is answered 302 to it, nothing notified).
    """

    def __init__(
        self,
        accounts: Mapping[str, str],
        *,
        host: str = "127.0.0.1",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(host=host, ssl_context=ssl_context)
        self.accounts = dict(accounts)
        self.bad_login_status: int = 200
        self.notify_fails: bool = False
        self.flaky_answers: int = 0
        self.show_remote: bool = True
        self.redirect_to: str | None = None
        self._state = threading.Lock()
        self._notifications: list[Notification] = []

    @property
    def notify_url(self) -> str:
        return self.url + PATH

    @property
    def notifications(self) -> list[Notification]:
        with self._state:
            return list(self._notifications)

    def notify_count(self, master_id: str) -> int:
        return sum(1 for n in self.notifications if n.master_id == master_id)

    def address_of(self, master_id: str, family: int = 4) -> str | None:
        """The address last published for `master_id` in `family` (4 or 6), if any."""
        for notification in reversed(self.notifications):
            if notification.master_id == master_id and notification.family == family:
                return notification.address
        return None

    def handle(self, request: RecordedRequest) -> Response:
        if request.path != PATH:
            self.violation(f"request for {request.path!r}, MyDNS notifies at {PATH}")
            return not_found()
        if request.method != "GET":
            self.violation(f"{request.method} {PATH}; the notification is a GET")
            return method_not_allowed("GET")
        if request.raw_query:
            self.violation(f"{PATH} takes no parameters, got {request.raw_query!r}")
        if request.auth_malformed:
            self.violation("Authorization header is not valid Basic credentials")
        if self.redirect_to is not None:
            return text(302, "", headers={"Location": self.redirect_to})
        if request.user is None:
            return self._challenge()
        master_id = request.user
        if self.accounts.get(master_id) != request.password:
            if self.bad_login_status == 401:
                return self._challenge()
            return self._page(request, status=self.bad_login_status, ok=False)
        if self.notify_fails:
            return self._page(request, status=200, ok=False)
        with self._state:
            flaky = self.flaky_answers > 0
            self.flaky_answers -= 1 if flaky else 0
        if flaky:
            return self._page(request, status=200, ok=False)
        address = self.peer(request)
        with self._state:
            self._notifications.append(
                Notification(
                    master_id=master_id,
                    address=address,
                    family=ipaddress.ip_address(address).version,
                    time=request.time,
                )
            )
        return self._page(request, status=200, ok=True)

    def _challenge(self) -> Response:
        return text(
            401,
            "<html><body>401 Unauthorized</body></html>\n",
            content_type="text/html; charset=utf-8",
            headers={"WWW-Authenticate": f'Basic realm="{REALM}"'},
        )

    def _page(self, request: RecordedRequest, *, status: int, ok: bool) -> Response:
        lines = [OK_SENTENCE + "<BR>"] if ok else []
        lines.append(f"login_status = {1 if ok else 0}.<BR>")
        lines.append("<BR>")
        if ok:
            stamp = datetime.fromtimestamp(time.time(), UTC).strftime("%Y/%m/%d %H:%M:%S UTC")
            for term, value in (
                ("MASTERID :", request.user or ""),
                ("REMOTE ADDRESS:", self.peer(request) if self.show_remote else None),
                ("ACCESS DAYTIME:", stamp),
                ("SERVER ADDRESS:", self.host),
            ):
                if value is None:
                    continue
                lines.append(f"<DT>{term}</DT><DD>{html.escape(value)}</DD>")
        page = (
            "<html>\n<head>\n<title>MyDNS.JP</title>\n"
            '<meta http-equiv="Content-Type" content="text/html; charset=utf-8" />\n'
            "</head>\n<BODY>\n" + "\n".join(lines) + "\n</BODY>\n</html>\n"
        )
        return text(status, page, content_type="text/html; charset=utf-8")
