"""The `[notify]` section: where notifications go (apprise URLs, which are secrets) and which
events are worth one."""

from __future__ import annotations

import difflib
import importlib.util
import sys
from dataclasses import dataclass, field

from ddnsagent.errors import ConfigError
from ddnsagent.outputs.apprise_urls import is_apprise_url, register_url_secrets
from ddnsagent.secrets import Secret, check_private_file
from ddnsagent.table import Table

# What is worth a message: `address` (the WAN address changed), `stopped` (a target stopped on a
# fatal answer and needs you), `reconnect` (a reconnect ran for a new address), `backscatter`
# (this server generated too many bounces in an hour), `relay` (the relay refuses us for a reason
# a new address does not cure: TLS, SASL login), `dnsbl` (our address is listed on a blocklist, or
# a list refused the DNSBL check's question; see ddnsagent.dnsbl).
EVENTS = ("address", "stopped", "reconnect", "backscatter", "relay", "dnsbl")
INSTALL_HINT = "pip install 'ddnsagent[notify]'"
DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True)
class NotifyConfig:
    """[notify]: where to send (a Secret holding apprise URLs, one a line) and what."""

    urls: Secret
    events: frozenset[str] = field(default_factory=lambda: frozenset(EVENTS))
    timeout: float = DEFAULT_TIMEOUT


def apprise_available() -> bool:
    """Whether apprise can be imported, without importing it (that costs its plugins)."""
    if "apprise" in sys.modules:
        return sys.modules["apprise"] is not None
    return importlib.util.find_spec("apprise") is not None


def parse_notify(t: Table) -> NotifyConfig:
    """Read [notify]: exactly one of `urls`, `urls_file`, `urls_env`; `events`; `timeout`.

    Inline URLs are checked now (and need the configuration file to be private); URLs from a
    file or the environment are read when the daemon starts. Raises ConfigError when apprise
    is not installed.
    """
    given = [k for k in ("urls", "urls_file", "urls_env") if t.has(k)]
    if len(given) > 1:
        raise t.error(given[1], f"conflicts with {t.key(given[0])}", "keep only one")
    if not given:
        raise t.error(
            "urls",
            "is required but missing",
            'add urls_file = "/etc/ddnsagent/notify.urls" (mode 0600, one apprise URL a line), '
            'urls_env = "VAR", or urls = ["…"]',
        )
    if given[0] == "urls":
        urls = t.str_list("urls")
        if not urls:
            raise t.error("urls", "is empty", "give at least one apprise URL, or remove [notify]")
        for i, url in enumerate(urls):
            if not is_apprise_url(url.strip()):
                # Never echo the value: it may be a token.
                raise t.error(f"urls[{i}]", "is not an apprise URL", "write SCHEME://…")
            register_url_secrets(url.strip())
        check_private_file(t.file, f"{t.key('urls')} holds secrets inline")
        urls_secret = Secret.inline("\n".join(u.strip() for u in urls), t.key("urls"))
    else:
        secret = t.secret("urls")
        assert secret is not None
        urls_secret = secret
    events = t.str_list("events", list(EVENTS))
    if not events:
        raise t.error("events", "is empty", "list what to send, or remove [notify]")
    for i, event in enumerate(events):
        if event not in EVENTS:
            close = difflib.get_close_matches(event, EVENTS, n=1)
            hint = f"did you mean {close[0]!r}?" if close else None
            raise t.error(f"events[{i}]", f"found {event!r}; valid: {', '.join(EVENTS)}", hint)
    timeout = t.duration("timeout", DEFAULT_TIMEOUT)
    if timeout < 1:
        raise t.error("timeout", "must be at least 1s")
    t.finish()
    if not apprise_available():
        raise ConfigError(
            t.file, t.path, "needs the apprise library, which is not installed", INSTALL_HINT
        )
    return NotifyConfig(urls_secret, frozenset(events), timeout)
