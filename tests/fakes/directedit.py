"""A strict local emulator of MyDNS.JP's DirectEDIT (`POST /directedit.html`), the interface
MyDNS.JP offers for Let's Encrypt DNS-01 challenges.

What the request must be, from MyDNS.JP's own certbot hook scripts (github.com/disco-v8/
DirectEdit, txtregist.php and txtdelete.php, by T.Kabu/MyDNS.JP):

- `POST /directedit.html`, `Content-Type: application/x-www-form-urlencoded`, HTTP Basic
  authentication with the MasterID as user name and the MasterID's password.
- Form fields `CERTBOT_DOMAIN` (the name being validated), `CERTBOT_VALIDATION` (the TXT value)
  and `EDIT_CMD` = `REGIST` (add) or `DELETE` (remove). MyDNS's scripts also forward certbot's
  other variables (CERTBOT_TOKEN, CERTBOT_AUTH_OUTPUT…), so those are accepted and ignored;
  any other field is a violation. The record edited is `_acme-challenge.<CERTBOT_DOMAIN>`.

What the answer is, is not documented (the scripts only log it). What public clients and
reports show, and the fake's choices, which a client must not rely on beyond what is said here:

- Success: acme.sh (acmesh-official/acme.sh, dnsapi/dns_mydnsjp.sh, `_mydnsjp_api` and its
  callers) counts an edit as done only when the answer contains `OK.`; anything else is "Add txt
  record error". The fake answers 200 with a short page saying `<EDIT_CMD> OK.` and
  `login_status = 1.` (the rest of that page is the fake's choice).
- No credentials: 401 with `WWW-Authenticate: Basic`. Wrong credentials: by default 200 with a
  page saying `login_status = 0.` (what login.html does); `bad_login_status = 401` challenges.
- Which name CERTBOT_DOMAIN must be: MyDNS's own README (disco-v8/DirectEdit) shows only
  `-d yourdomain -d *.yourdomain`, both of which give certbot's CERTBOT_DOMAIN = the domain
  registered to the MasterID (txtedit.conf's MYDNSJP_DOMAIN); acme.sh sends that registered
  domain (DOMAIN INFO's `DNSINFO[domainname]`, found by `_get_root`) whatever name is being
  validated; the debug log in disco-v8/DirectEdit#4 shows CERTBOT_DOMAIN=<registered domain>.
  Whether a sub-domain is accepted is documented nowhere, so the fake accepts only a registered
  domain itself: for a sub-domain of it, nothing changes and the answer is the front page.
- A domain the account does not own: a violation, nothing changes, and the answer is the site's
  front page, 200 (what disco-v8/DirectEdit#4 shows for a request the editor did not take:
  "MYDNSJP_CONTENTS=<!DOCTYPE html>…", the home page's HTML).
- `redirect = True`: 307 to the front page without doing anything (also reported there: "307
  Temporary Redirect"); `redirect_location` sets another Location for it.
"""

from __future__ import annotations

import html
import ssl
import threading
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qs

from ._server import FakeServer, RecordedRequest, Response, method_not_allowed, not_found, text

PATH = "/directedit.html"
REALM = "Enter MasterID and Password."
COMMANDS = ("REGIST", "DELETE")
REQUIRED_FIELDS = ("CERTBOT_DOMAIN", "CERTBOT_VALIDATION", "EDIT_CMD")
FORWARDED_FIELDS = (
    "CERTBOT_TOKEN",
    "CERTBOT_CERT_PATH",
    "CERTBOT_KEY_PATH",
    "CERTBOT_SNI_DOMAIN",
    "CERTBOT_AUTH_OUTPUT",
    "CERTBOT_ALL_DOMAINS",
    "CERTBOT_REMAINING_CHALLENGES",
)
FRONT_PAGE = (
    '<!DOCTYPE html>\n<html lang="en" dir="ltr" class="no-js">\n<head><title>MyDNS.JP</title>'
    "</head>\n<body><h1>MyDNS.JP</h1><p>Free dynamic DNS.</p></body>\n</html>\n"
)


class DirectEditServer(FakeServer):
    """DirectEDIT for `accounts` (MasterID → password) owning `domains` (MasterID → names).

    `txt(name)` is the list of values of `_acme-challenge.<name>`, in the order registered.
    Knobs, besides those of `FakeServer`: `bad_login_status` (200 or 401), `redirect`.
    """

    def __init__(
        self,
        accounts: Mapping[str, str],
        domains: Mapping[str, Iterable[str]],
        *,
        host: str = "127.0.0.1",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(host=host, ssl_context=ssl_context)
        self.accounts = dict(accounts)
        self.domains = {k: {d.lower() for d in v} for k, v in domains.items()}
        self.bad_login_status: int = 200
        self.redirect: bool = False
        self.redirect_location: str | None = None
        self._state = threading.Lock()
        self._txt: dict[str, list[str]] = {}
        self.edits = 0

    @property
    def edit_url(self) -> str:
        return self.url + PATH

    def txt(self, name: str) -> list[str]:
        with self._state:
            return list(self._txt.get(name.lower(), []))

    def _owns(self, master_id: str, name: str) -> bool:
        name = name.lower()
        return any(name == d or name.endswith("." + d) for d in self.domains.get(master_id, ()))

    def handle(self, request: RecordedRequest) -> Response:
        if request.path != PATH:
            self.violation(f"request for {request.path!r}; DirectEDIT is at {PATH}")
            return not_found()
        if request.method != "POST":
            self.violation(f"{request.method} {PATH}; DirectEDIT takes a POSTed form")
            return method_not_allowed("POST")
        if request.raw_query:
            self.violation(f"query string {request.raw_query!r}; the fields belong in the form")
        if request.auth_malformed:
            self.violation("Authorization header is not valid Basic credentials")
        if request.user is None:
            return self._challenge()
        if self.accounts.get(request.user) != request.password:
            if self.bad_login_status == 401:
                return self._challenge()
            return self._page(self.bad_login_status, "login_status = 0.")
        content_type = (request.header("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            self.violation(f"Content-Type {content_type!r}; the body is a urlencoded form")
        try:
            fields = parse_qs(
                request.body.decode("utf-8"), keep_blank_values=True, strict_parsing=True
            )
        except (UnicodeDecodeError, ValueError) as error:
            self.violation(f"form body is not urlencoded: {error}")
            fields = {}
        for name, values in fields.items():
            if len(values) > 1:
                self.violation(f"form field {name!r} given {len(values)} times")
            if name not in REQUIRED_FIELDS + FORWARDED_FIELDS:
                self.violation(f"unknown form field {name!r}")
        form = {name: values[0] for name, values in fields.items()}
        missing = [name for name in REQUIRED_FIELDS if not form.get(name)]
        if missing:
            self.violation(f"form lacks {', '.join(missing)}")
            return text(200, FRONT_PAGE, content_type="text/html; charset=utf-8")
        command = form["EDIT_CMD"]
        if command not in COMMANDS:
            self.violation(f"EDIT_CMD={command!r}; valid: REGIST, DELETE")
            return text(200, FRONT_PAGE, content_type="text/html; charset=utf-8")
        if self.redirect:
            return text(307, "", headers={"Location": self.redirect_location or self.url + "/"})
        domain = form["CERTBOT_DOMAIN"]
        if not self._owns(request.user, domain):
            self.violation(f"{domain!r} is not a domain of {request.user}")
            return text(200, FRONT_PAGE, content_type="text/html; charset=utf-8")
        if domain.lower() not in self.domains.get(request.user, ()):
            return text(200, FRONT_PAGE, content_type="text/html; charset=utf-8")
        value = form["CERTBOT_VALIDATION"]
        with self._state:
            values = self._txt.setdefault(domain.lower(), [])
            if command == "REGIST" and value not in values:
                values.append(value)
            elif command == "DELETE" and value in values:
                values.remove(value)
            self.edits += 1
        return self._page(200, f"{command} OK.<BR>\nlogin_status = 1.", domain)

    def _challenge(self) -> Response:
        return text(
            401,
            "<html><body>401 Unauthorized</body></html>\n",
            content_type="text/html; charset=utf-8",
            headers={"WWW-Authenticate": f'Basic realm="{REALM}"'},
        )

    def _page(self, status: int, message: str, domain: str | None = None) -> Response:
        extra = f"<DT>DOMAIN :</DT><DD>{html.escape(domain)}</DD>\n" if domain else ""
        page = (
            "<html>\n<head><title>MyDNS.JP</title></head>\n<BODY>\n"
            f"{message}<BR>\n{extra}</BODY>\n</html>\n"
        )
        return text(status, page, content_type="text/html; charset=utf-8")
