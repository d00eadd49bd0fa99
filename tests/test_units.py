"""Pure pieces: durations, address policy, provider answer tables."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import pytest

from ddnsagent import acme, names
from ddnsagent.address import parse_single, refusal
from ddnsagent.durations import format_duration, parse_duration
from ddnsagent.errors import FatalAnswer, TransientError
from ddnsagent.providers import cloudflare, desec, duckdns, dyndns2, dynv6, lexicon, mydns
from ddnsagent.providers import url as url_provider
from ddnsagent.providers.base import MAX_WAIT


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("24h", 86400), ("7d", 604800), ("1h30m", 5400), ("0", 0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "m", "5 minutes", "-5m", "5mm"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="30s"):
        parse_duration(text)


def test_format_duration() -> None:
    assert format_duration(5400) == "1h30m"
    assert format_duration(0) == "0s"


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("10.1.2.3", "private"),
        ("192.168.1.1", "private"),
        ("100.64.1.1", "carrier-grade NAT"),
        ("127.0.0.1", "loopback"),
        ("169.254.1.1", "link-local"),
        ("203.0.113.7", "documentation"),
        ("224.0.0.1", "multicast"),
        ("fe80::1", "link-local"),
        ("fd00::1", "ULA"),
        ("2001:db8::1", "documentation"),
    ],
)
def test_global_policy_refuses(address: str, why: str) -> None:
    text = refusal(ipaddress.ip_address(address), "global")
    assert text is not None and why in text


def test_global_policy_accepts_public() -> None:
    assert refusal(ipaddress.ip_address("8.8.8.8"), "global") is None
    assert refusal(ipaddress.ip_address("2606:4700::1"), "global") is None


def test_any_policy() -> None:
    assert refusal(ipaddress.ip_address("203.0.113.7"), "any") is None
    assert refusal(ipaddress.ip_address("224.0.0.1"), "any") is not None
    assert refusal(ipaddress.ip_address("0.0.0.0"), "any") is not None


@pytest.mark.parametrize(
    ("body", "family", "fragment"),
    [
        ("", 4, "empty"),
        ("<html>203.0.113.7</html>", 4, "not an address"),
        ("203.0.113.7 203.0.113.8", 4, "2 words"),
        ("2001:db8::1", 4, "IPv6 address"),
        ("203.0.113.7", 6, "IPv4 address"),
    ],
)
def test_parse_single_refuses(body: str, family: int, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_single(body, family)


def test_parse_single_accepts_trailing_newline() -> None:
    assert str(parse_single("203.0.113.7\n", 4)) == "203.0.113.7"


HOSTS = ["a.example.net", "b.example.net"]


@pytest.mark.parametrize("code", sorted(dyndns2.FATAL))
def test_dyndns2_fatal_codes(code: str) -> None:
    with pytest.raises(FatalAnswer, match=code):
        dyndns2.judge(200, f"{code}\n", HOSTS[:1], 1800)


def test_dyndns2_fatal_code_for_one_host_of_many() -> None:
    """Issue 12 item 12: the line names the host; that host alone is stopped."""
    answered = dyndns2.judge_batch(200, "good 198.51.100.7\nnohost\n", HOSTS, 1800)
    assert list(answered.stops) == [HOSTS[1]] and "nohost" in answered.stops[HOSTS[1]][0]
    assert f"{HOSTS[1]}: nohost — STOPPED" in answered.message
    with pytest.raises(FatalAnswer, match="nohost"):
        dyndns2.judge(200, "nohost\nnohost\n", HOSTS, 1800)


@pytest.mark.parametrize("code", ["911", "dnserr"])
def test_dyndns2_wait_codes(code: str) -> None:
    with pytest.raises(TransientError) as info:
        dyndns2.judge(200, code, HOSTS[:1], 1800)
    assert info.value.min_wait >= 1800


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_dyndns2_http_transient(status: int) -> None:
    with pytest.raises(TransientError):
        dyndns2.judge(status, "", HOSTS, 1800)


def test_dyndns2_http_401_is_badauth() -> None:
    with pytest.raises(FatalAnswer, match="badauth"):
        dyndns2.judge(401, "", HOSTS, 1800)


def test_dyndns2_success_per_host() -> None:
    text = dyndns2.judge(200, "good 198.51.100.7\nnochg 198.51.100.7\n", HOSTS, 1800)
    assert text == "a.example.net: good, b.example.net: nochg"


@pytest.mark.parametrize("body", ["", "<html>oops</html>", "good 1.2.3.4\n", "goodbye"])
def test_dyndns2_garbage_or_short_answers_are_not_success(body: str) -> None:
    with pytest.raises(TransientError):
        dyndns2.judge(200, body + "\ngarbage" if body == "good 1.2.3.4\n" else body, HOSTS, 1800)


MYDNS_OK = "<html><body>login_status = 1.<br>Login and IP address notify OK.</body></html>"


def test_mydns_ok() -> None:
    assert mydns.judge(200, MYDNS_OK) == "notified"


@pytest.mark.parametrize(
    ("status", "body"),
    [(200, "login_status = 0."), (200, "NG"), (401, ""), (403, "")],
)
def test_mydns_fatal(status: int, body: str) -> None:
    with pytest.raises(FatalAnswer):
        mydns.judge(status, body)


@pytest.mark.parametrize(("status", "body"), [(500, ""), (200, "<html>maintenance</html>")])
def test_mydns_transient(status: int, body: str) -> None:
    with pytest.raises(TransientError):
        mydns.judge(status, body)


# -- one HTTP verdict: every HTTP provider reads a status class the same way ---------------------


class _LexiconResponse:
    """What lexicon's HTTP errors carry: a `requests` response, reduced to what is read."""

    def __init__(self, status: int, headers: dict[str, str]) -> None:
        self.status_code = status
        self.text = ""
        self.headers = headers


def _lexicon_judge(status: int, wait: str | None, location: str | None) -> str:
    from requests import HTTPError

    headers = {k: v for k, v in (("Retry-After", wait), ("Location", location)) if v}
    raise lexicon.judge_exception(
        HTTPError(response=_LexiconResponse(status, headers)),  # type: ignore[arg-type]
        "powerdns",
    )


HTTP_JUDGES: dict[str, Callable[[int, str | None, str | None], object]] = {
    "dyndns2": lambda s, w, loc: dyndns2.judge(s, "", HOSTS, 1800, w, loc),
    "mydns": lambda s, w, loc: mydns.judge(s, "", w, loc),
    "duckdns": lambda s, w, loc: duckdns.judge(s, "", ["a"], w, loc),
    "dynv6": lambda s, w, loc: dynv6.judge(s, "", "z.dynv6.net", w, loc),
    "desec": lambda s, w, loc: desec.judge(s, "", ["h.example.dedyn.io"], w, loc),
    "cloudflare": lambda s, w, loc: cloudflare.judge(s, "", "testing", w, loc),
    "url": lambda s, w, loc: url_provider.judge(s, "", url_provider.Success(), w, location=loc),
    "lexicon": _lexicon_judge,
    "acme": lambda s, w, loc: acme.judge(s, "", loc, w),
}
LATER = [408, 425, 429, 500, 502, 503, 504]


@pytest.mark.parametrize("provider", HTTP_JUDGES)
@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_stop_every_provider(provider: str, status: int) -> None:
    with pytest.raises(FatalAnswer) as caught:
        HTTP_JUDGES[provider](status, "120", None)
    assert type(caught.value) is FatalAnswer and caught.value.fix


@pytest.mark.parametrize("provider", HTTP_JUDGES)
@pytest.mark.parametrize("status", LATER)
def test_come_back_later_honours_retry_after_in_every_provider(provider: str, status: int) -> None:
    with pytest.raises(TransientError) as caught:
        HTTP_JUDGES[provider](status, "120", None)
    assert type(caught.value) is TransientError and caught.value.min_wait == 120
    with pytest.raises(TransientError) as caught:
        HTTP_JUDGES[provider](status, "999999999", None)
    assert 3600 <= caught.value.min_wait <= MAX_WAIT  # capped
    if status != 429:  # a 429 without Retry-After waits what the service documents
        with pytest.raises(TransientError) as caught:
            HTTP_JUDGES[provider](status, None, None)
        assert caught.value.min_wait == 0


@pytest.mark.parametrize("provider", HTTP_JUDGES)
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_named_never_followed_in_every_provider(provider: str, status: int) -> None:
    where = "https://elsewhere.example/login"
    with pytest.raises(TransientError) as caught:
        HTTP_JUDGES[provider](status, None, where)
    assert type(caught.value) is TransientError and where in str(caught.value)
    assert f"HTTP {status}" in str(caught.value)


# -- one name check ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "options", "ok"),
    [
        ("home.example.net", {}, True),
        ("home", {}, False),  # one label is not a host name
        ("home", {"min_labels": 1}, True),
        ("-home.example.net", {}, False),
        ("home-.example.net", {}, False),
        ("a" * 63 + ".net", {}, True),
        ("a" * 64 + ".net", {}, False),
        (".".join(["a" * 63] * 4), {}, False),  # 255 characters
        ("_acme-challenge.example.net", {}, False),
        ("_acme-challenge.example.net", {"underscore": True}, True),
        ("Home.Example.net", {}, False),
        ("Home.Example.net", {"any_case": True}, True),
        ("*.example.net", {}, False),
        ("*.example.net", {"wildcard": True}, True),
        ("*.net", {"wildcard": True}, False),
        ("a..example.net", {}, False),
    ],
)
def test_one_name_check(name: str, options: dict[str, bool], ok: bool) -> None:
    assert names.is_name(name, **options) is ok  # type: ignore[arg-type]


def test_one_label_check() -> None:
    assert names.is_label("myhome") and not names.is_label("my.home")
    assert not names.is_label("my_home") and names.is_label("my_home", underscore=True)
