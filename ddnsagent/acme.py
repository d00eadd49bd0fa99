"""certbot's manual DNS-01 hooks for MyDNS.JP, through its DirectEDIT interface.

certbot runs `--manual-auth-hook` and `--manual-cleanup-hook` once per challenge, with the name
being validated in CERTBOT_DOMAIN and the TXT value in CERTBOT_VALIDATION. MyDNS.JP's own hook
scripts (github.com/disco-v8/DirectEdit) POST exactly those, plus EDIT_CMD=REGIST or DELETE, as
a form to https://www.mydns.jp/directedit.html with the MasterID and password as HTTP Basic
credentials; MyDNS then adds or removes the TXT record `_acme-challenge.<CERTBOT_DOMAIN>`.
The credentials are those of a `type = "mydns"` provider of the configuration.

What DirectEDIT answers is not documented, and MyDNS's scripts do not read it. This hook reads
what can be read: 401/403 and a page saying `login_status = 0` (as login.html says after a bad
login) mean the credentials were refused; redirects (seen when a request did not reach the
editor, disco-v8/DirectEdit#4) are never followed and, like 429 and 5xx, mean "try again"; a 2xx
is done only when the page says `OK.`, which is what acme.sh's dns_mydnsjp checks. MyDNS answers
200 with its front page when it did not take the request (a domain the MasterID does not own,
DirectEdit#4): that is a failure.

Which name to send: MyDNS's own instructions validate only `yourdomain` and `*.yourdomain`, and
acme.sh sends the domain registered to the MasterID whatever name is validated (sources in
tests/fakes/directedit.py); nothing documents DirectEDIT taking a sub-domain. With the
provider's `domain` set, the hook sends that domain for it and for `*.domain`, and refuses a
sub-domain or another name before sending anything, saying what to do instead.

MyDNS puts changes into its DNS data at once (its HOW TO USE page), but its name servers and
the CA's resolvers may take a moment to serve them; `wait` seconds of sleep after --auth give
them that time (other MyDNS clients wait 30 s to 2 min). The default is 0.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from ddnsagent import http
from ddnsagent.address import check_url
from ddnsagent.config import Config
from ddnsagent.errors import FatalAnswer, HookError, HTTPFailure, SecretUnavailable, TransientError
from ddnsagent.exitcodes import EXIT_CONFIG, EXIT_OK, EXIT_RETRY, EXIT_STOPPED
from ddnsagent.names import is_name
from ddnsagent.providers.base import http_verdict
from ddnsagent.secrets import redact, register_basic_auth

DIRECTEDIT_URL = "https://www.mydns.jp/directedit.html"
URL_ENV = "DDNSAGENT_DIRECTEDIT_URL"
COMMANDS = {"auth": "REGIST", "cleanup": "DELETE"}

_LOGIN_FAILED = re.compile(r"login_status\s*=\s*0\b")
_EDIT_OK = re.compile(r"\bOK\.")  # acme.sh: `grep "OK."` on the answer
# RFC 8555 §8.4: the TXT value is the base64url digest of the key authorization.
_VALIDATION = re.compile(r"^[A-Za-z0-9_-]+$")


def judge(
    status: int, body: str, location: str | None = None, retry_after: str | None = None
) -> str:
    """The meaning of one DirectEDIT answer; pure, so it is tested on plain strings."""
    http_verdict(
        status,
        "MyDNS",
        "check master_id and the password",
        refused=f"MyDNS refused the login (HTTP {status})",
        retry_after_header=retry_after,
        location=location,
    )
    if not 200 <= status < 300:
        raise FatalAnswer(f"MyDNS answered HTTP {status}", f"check the DirectEDIT URL (${URL_ENV})")
    if _LOGIN_FAILED.search(body):
        raise FatalAnswer(
            "MyDNS answered that the login failed (login_status = 0)",
            "check master_id and the password",
        )
    if not _EDIT_OK.search(body):
        front = "its front page" if re.search(r"<!DOCTYPE html", body, re.I) else "a page"
        raise FatalAnswer(
            f"MyDNS answered HTTP {status} with {front} that does not confirm the edit (no "
            '"OK."): nothing was changed. It answers so for a domain that is not the one '
            "registered to this MasterID",
            "CERTBOT_DOMAIN must be the domain of the MasterID's DOMAIN INFO (or *.domain); "
            "set `domain` on the mydns provider to have it checked before sending",
        )
    return f"HTTP {status}"


def find_provider(cfg: Config, name: str | None) -> Any:
    """The mydns provider named `name`, or the first one."""
    mydns = [p for p in cfg.providers if p.type == "mydns"]
    if name is not None:
        for p in cfg.providers:
            if p.name == name:
                if p.type != "mydns":
                    raise HookError(EXIT_CONFIG, f"provider {name!r} is {p.type}, not mydns")
                return p
        known = ", ".join(p.name for p in mydns) or "none"
        raise HookError(EXIT_CONFIG, f"no provider named {name!r} (mydns providers: {known})")
    if not mydns:
        raise HookError(
            EXIT_CONFIG,
            f"{cfg.file} has no provider of type mydns",
            'add a [[provider]] with type = "mydns", master_id and password',
        )
    return mydns[0]


def challenge(environ: Mapping[str, str]) -> tuple[str, str]:
    """CERTBOT_DOMAIN and CERTBOT_VALIDATION, as certbot's manual plugin sets them."""
    missing = [k for k in ("CERTBOT_DOMAIN", "CERTBOT_VALIDATION") if not environ.get(k)]
    if missing:
        raise HookError(
            EXIT_CONFIG,
            f"{' and '.join(missing)} not set; this command is meant to be run by certbot",
            "certbot certonly --manual --preferred-challenges dns "
            '--manual-auth-hook "ddnsagent acme-hook mydns --auth" '
            '--manual-cleanup-hook "ddnsagent acme-hook mydns --cleanup" -d NAME',
        )
    domain, validation = environ["CERTBOT_DOMAIN"].strip(), environ["CERTBOT_VALIDATION"].strip()
    if not is_name(domain.removesuffix("."), underscore=True, any_case=True, wildcard=True):
        raise HookError(EXIT_CONFIG, f"CERTBOT_DOMAIN={domain!r} is not a domain name")
    if not _VALIDATION.match(validation):
        raise HookError(EXIT_CONFIG, "CERTBOT_VALIDATION is not a base64url ACME digest")
    # A wildcard's challenge lives at the base name, which is what MyDNS must be given.
    return domain.rstrip(".").removeprefix("*."), validation


def name_to_send(domain: str, registered: str | None) -> str:
    """The CERTBOT_DOMAIN to give DirectEDIT for certbot's `domain` (a wildcard's `*.` already
    removed): the registered domain itself; a sub-domain or another name is refused."""
    if registered is None or domain.lower() == registered:
        return domain
    if domain.lower().endswith("." + registered):
        raise HookError(
            EXIT_CONFIG,
            f"CERTBOT_DOMAIN={domain!r} is a sub-domain of {registered}; MyDNS DirectEDIT edits "
            f"only _acme-challenge.{registered}, the record of the domain registered to the "
            "MasterID, so this name cannot be validated through it",
            f"request the certificate for {registered} and *.{registered} (the wildcard covers "
            f"{domain}), or validate {domain} another way (certbot's HTTP-01)",
        )
    raise HookError(
        EXIT_CONFIG,
        f"CERTBOT_DOMAIN={domain!r} is not {registered}, the domain set for this MasterID",
        "use the mydns provider whose domain this is (acme-hook mydns NAME), or fix `domain`",
    )


def directedit_url(url: str | None, environ: Mapping[str, str], insecure_http: bool) -> str:
    """`url` if given, else $DDNSAGENT_DIRECTEDIT_URL, else MyDNS.JP's; checked like any URL."""
    chosen = url or environ.get(URL_ENV) or DIRECTEDIT_URL

    def error(problem: str, fix: str | None = None) -> HookError:
        return HookError(EXIT_CONFIG, f"DirectEDIT URL: {problem}", fix)

    check_url(chosen, insecure_http, error)
    return chosen


async def _post(
    cfg: Config, settings: Any, url: str, command: str, domain: str, validation: str
) -> str:
    password = settings.password.reveal()
    register_basic_auth(settings.master_id, password)
    form = {"CERTBOT_DOMAIN": domain, "CERTBOT_VALIDATION": validation, "EDIT_CMD": command}
    attempts = max(cfg.agent.retries, 1)
    async with http.client(None, cfg.detect.timeout) as client:
        for attempt in range(attempts):
            try:
                try:
                    answer = await http.fetch(
                        client, "POST", url, data=form, auth=(settings.master_id, password)
                    )
                except HTTPFailure as exc:
                    raise TransientError(redact(str(exc))) from None
                return judge(
                    answer.status,
                    answer.body,
                    answer.headers.get("Location"),
                    answer.headers.get("Retry-After"),
                )
            except TransientError as exc:
                if attempt + 1 >= attempts or exc.min_wait:
                    raise
                await asyncio.sleep(cfg.agent.retry_delay * 2**attempt)
    raise AssertionError("unreachable")


def main(
    cfg: Config,
    mode: str,
    provider_name: str | None = None,
    *,
    url: str | None = None,
    wait: float = 0.0,
    environ: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run one hook: mode "auth" registers the TXT value, "cleanup" deletes it.

    Exit codes: 0 done, 1 try again later, 2 configuration or environment, 3 refused.
    """
    env = os.environ if environ is None else environ
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        if mode not in COMMANDS:
            raise HookError(EXIT_CONFIG, f"unknown mode {mode!r}; valid: auth, cleanup")
        settings = find_provider(cfg, provider_name)
        target = directedit_url(url, env, settings.insecure_http)
        domain, validation = challenge(env)
        domain = name_to_send(domain, getattr(settings, "domain", None))
        command = COMMANDS[mode]
        try:
            result = asyncio.run(_post(cfg, settings, target, command, domain, validation))
        except SecretUnavailable as exc:
            # The secret's own fix says how to set its source (issue 13); None: said already
            raise HookError(EXIT_CONFIG, str(exc), getattr(exc, "fix", None)) from None
        except FatalAnswer as exc:
            raise HookError(EXIT_STOPPED, str(exc), exc.fix) from None
        except TransientError as exc:
            raise HookError(EXIT_RETRY, str(exc), "run certbot again later") from None
    except HookError as exc:
        text = f"ddnsagent: error: {exc}" + (f" — {exc.fix}" if exc.fix else "")
        print(redact(text), file=err)
        return exc.code
    record = f"_acme-challenge.{domain}"
    done = "registered" if command == "REGIST" else "deleted"
    print(f"{settings.name}: TXT {record} {done} at MyDNS.JP ({result})", file=out)
    if command == "REGIST" and wait > 0:
        print(f"{settings.name}: waiting {wait:g}s for MyDNS to serve it", file=out, flush=True)
        asyncio.run(asyncio.sleep(wait))
    return EXIT_OK
