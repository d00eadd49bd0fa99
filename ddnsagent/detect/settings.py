"""The [detect] section: which sources find each family's address, and how far to trust them."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from ddnsagent.address import check_url
from ddnsagent.table import Table

ACCEPT_POLICIES = ("global", "any")
SOURCE_KINDS = ("interface", "web", "dns", "command")


@dataclass(frozen=True)
class Source:
    """One detection source as written, e.g. `interface:ppp0`."""

    kind: str
    arg: str
    text: str

    @property
    def remote(self) -> bool:
        """Remote echo answers are the ones a quorum is taken over."""
        return self.kind in ("web", "dns")


@dataclass(frozen=True)
class DetectConfig:
    ipv4: tuple[Source, ...] = ()
    ipv6: tuple[Source, ...] = ()
    accept: str = "global"
    quorum: int = 2
    timeout: float = 10.0
    insecure_http: bool = False

    def sources(self, family: int) -> tuple[Source, ...]:
        return self.ipv4 if family == 4 else self.ipv6


def from_table(t: Table) -> DetectConfig:
    insecure = t.boolean("insecure_http", False)
    families = {}
    for fam in ("ipv4", "ipv6"):
        default = ["web"] if fam == "ipv4" else []
        texts = t.str_list(fam, default)
        families[fam] = tuple(_source(t, fam, i, s, insecure) for i, s in enumerate(texts))
    cfg = DetectConfig(
        ipv4=families["ipv4"],
        ipv6=families["ipv6"],
        accept=t.string("accept", "global", ACCEPT_POLICIES),
        quorum=t.integer("quorum", 2, minimum=1),
        timeout=t.duration("timeout", 10.0),
        insecure_http=insecure,
    )
    t.finish()
    return cfg


def _source(t: Table, fam: str, index: int, text: str, insecure: bool) -> Source:
    key = f"{fam}[{index}]"
    kind, _, arg = text.partition(":")
    kind = kind.strip()
    arg = arg.strip()
    if kind not in SOURCE_KINDS:
        raise t.error(
            key,
            f"unknown source {text!r}",
            "valid: interface:NAME, web, web:URL, dns:opendns, dns:cloudflare, "
            "dns:NAME@SERVER[:PORT], command:PATH ARGS…",
        )
    if kind == "interface" and not arg:
        raise t.error(key, f"{text!r} names no interface", 'write e.g. "interface:ppp0"')
    if kind == "command":
        try:
            words = shlex.split(arg)
        except ValueError as exc:  # e.g. an unclosed quote: the command could never run
            raise t.error(key, f"{text!r} cannot be split into words: {exc}") from None
        if not words:
            raise t.error(
                key, f"{text!r} names no command", 'write e.g. "command:/usr/local/bin/wanip"'
            )
    if kind == "web" and arg:
        check_url(arg, insecure, lambda p, f=None: t.error(key, p, f))
    if kind == "dns":
        try:
            # lazy: the dns: source's module only when one is written
            from ddnsagent.detect.dns import parse_dns_source

            parse_dns_source(arg, 4 if fam == "ipv4" else 6)
        except ValueError as exc:
            raise t.error(key, str(exc)) from None
    return Source(kind, arg, text)
