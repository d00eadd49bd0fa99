"""Apprise URLs as the secrets they are: `tgram://BOT_TOKEN/CHAT_ID`,
`json://user:password@host/`.

Before any URL is handed to apprise, its credential-like parts are registered with
ddnsagent.secrets, so our log formatter masks them in apprise's own log records too. ddnsagent
never logs a URL: a target is named by its position and scheme ("#2 (tgram)").
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlsplit

from ddnsagent.address import LOOPBACK_NAMES, split_host_port
from ddnsagent.secrets import register, register_basic_auth

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
# Query keys whose value is a credential whatever it looks like.
_SECRET_KEYS = {
    "apikey",
    "api_key",
    "key",
    "pass",
    "password",
    "pw",
    "secret",
    "token",
    "access_token",
    "webhook",
    "user",
    "userkey",
}


def is_apprise_url(url: str) -> bool:
    """`SCHEME://…`; whether apprise knows the scheme only apprise can say."""
    return _SCHEME.match(url) is not None


def split_urls(text: str) -> list[str]:
    """URLs from a file or variable: whitespace-separated, `#` starts a comment line."""
    urls: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            urls.extend(line.split())
    return urls


def describe(index: int, url: str) -> str:
    """How ddnsagent names a target in its messages: never the URL."""
    scheme = url.split("://", 1)[0] if "://" in url else "?"
    return f"#{index} ({scheme})"


def _looks_secret(part: str) -> bool:
    """A token rather than a word: long, or with digits, mixed case or punctuation.

    Plain words ("notify", "hooks") stay readable: masking them would garble every log line.
    """
    if len(part) < 6:
        return False
    if len(part) >= 20:
        return True
    has_digit = any(c.isdigit() for c in part)
    mixed = any(c.isupper() for c in part) and any(c.islower() for c in part)
    other = any(not (c.isalpha() or c in "-_.") for c in part)
    return has_digit or mixed or other


def _is_host(hostport: str) -> bool:
    """A real host[:port] — an address, localhost or a dotted DNS name — not a token.

    Anything else (an IPv6 address without brackets, a port out of range) may be a token, and
    masking a host by mistake costs only readability."""
    if hostport.count(":") > 1 and not hostport.startswith("["):
        return False
    try:
        split_host_port(hostport.lower(), default_port=0, names=LOOPBACK_NAMES)
        return True
    except ValueError:
        pass
    name, colon, port = hostport.rpartition(":")
    if not colon:
        name = hostport
    elif not port.isdigit():
        return False
    labels = name.rstrip(".").split(".")
    return len(labels) > 1 and all(_HOST_LABEL.fullmatch(label) for label in labels)


def url_secret_parts(url: str) -> set[str]:
    """The parts of an apprise URL that may be credentials, raw and percent-decoded."""
    parts: set[str] = set()

    def add(value: str, always: bool = False) -> None:
        for form in {value, unquote(value)}:
            if form and (always or _looks_secret(form)):
                parts.add(form)

    try:
        split = urlsplit(url)
    except ValueError:
        add(url, always=True)  # unparseable: mask it whole
        return parts
    userinfo, at, hostport = split.netloc.rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        add(user)
        if colon:
            add(password, always=True)
    if hostport and not _is_host(hostport):
        add(hostport, always=True)  # e.g. tgram://BOT_TOKEN/…: the "host" is the token
        for piece in hostport.split(":"):
            add(piece)
    for segment in split.path.split("/"):
        add(segment)
    for key, value in parse_qsl(split.query, keep_blank_values=False):
        add(value, always=key.lower() in _SECRET_KEYS)
    add(split.fragment)
    return parts


def register_url_secrets(url: str) -> None:
    """Register every credential-like part of `url` with the log redactor."""
    for part in url_secret_parts(url):
        register(part)
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return
    userinfo, at, _ = netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    if at and colon and password:
        register_basic_auth(unquote(user), unquote(password))  # user:password and its base64
