"""The blocklists, what their answers mean, and the `[dnsbl]` section. Pure: no I/O.

A DNSBL is asked an A question for the address written backwards under the list's zone
(203.0.113.5 → 5.113.0.203.zen.spamhaus.org; IPv6 as 32 reversed nibbles), as reverse DNS
writes it. NXDOMAIN means not listed; an answer in 127.0.0.0/8 is a listing whose last octets
say why. Some answers are not listings at all: *policy* lists (Spamhaus's PBL) name ranges
that should not send mail directly — every dynamic address is on them and a mail server that
sends through its ISP's relay, as ours does, is not hurt by it — and some codes say that the
question itself was refused (asked through a large public resolver, or too often).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ddnsagent.address import IPAddress, split_host_port
from ddnsagent.table import Table

# How to fix a refusal caused by the resolver the question went through.
RESOLVER_FIX = (
    "set [dnsbl] resolver to a resolver of your own that asks the lists' servers itself (e.g. "
    'unbound or BIND on this machine: resolver = "127.0.0.1"), not a large public one such as '
    "8.8.8.8, 1.1.1.1 or 9.9.9.9, nor one your hosting provider shares among its customers"
)


@dataclass(frozen=True)
class Blocklist:
    """One DNSBL zone and the meaning of its answers."""

    zone: str  # e.g. "zen.spamhaus.org", lower case, no trailing dot
    name: str  # for people: "Spamhaus ZEN"
    meanings: Mapping[str, str] = field(default_factory=dict)  # code → what it says
    policy: frozenset[str] = frozenset()  # codes expected for a dynamic address
    errors: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # code → problem, fix
    lookup: str | None = None  # the list's web page for one address; "{ip}" is replaced
    ipv6: bool = False  # the list answers questions about IPv6 addresses

    def lookup_url(self, address: str) -> str | None:
        return self.lookup.replace("{ip}", address) if self.lookup else None


# The default lists and what their answers mean, from each list's own documentation:
#
# - Spamhaus ZEN (SBL + XBL + PBL), codes: "Available Zones",
#   https://docs.spamhaus.com/datasets/docs/source/10-data-type-documentation/datasets/040-zones.html
#   (127.0.0.2 SBL, .3 CSS, .9 DROP, .4 XBL, .10 PBL maintained by the ISP, .11 PBL maintained
#   by Spamhaus, .30 BCL). The PBL, per Spamhaus's DNSBL usage FAQ
#   (https://www.spamhaus.org/faq/section/DNSBL%2520Usage), lists addresses "that the ISP does
#   not or should not allow to send email directly", i.e. dynamic ones: expected here.
#   Error codes, not listings: 127.255.255.254 "query via public/open resolver" and
#   127.255.255.255 "excessive number of queries" (https://www.spamhaus.org/news/article/788/,
#   "must not be interpreted as advisories of Spamhaus reputation"), 127.255.255.252 a typing
#   error in the zone name (https://www.spamhaus.com/resource-center/
#   help-for-spamhaus-projects-legacy-blocklist-users). IPv6 is asked in nibble format
#   (https://docs.spamhaus.com/datasets/docs/source/70-access-methods/data-query-service/
#   040-dqs-queries.html). Lookup: https://check.spamhaus.org/results/?query=IP.
# - SpamCop (bl.spamcop.net): 127.0.0.2 for a listed address
#   (https://www.spamcop.net/fom-serve/cache/291.html); its TXT answers point to
#   https://www.spamcop.net/bl.shtml?IP. IPv4 only.
# - Mailspike (bl.mailspike.net): 127.0.0.2 for an address in a spam wave (z.mailspike.net),
#   otherwise the rep.mailspike.net code of a poor reputation (L3 to L5); "Block at MTA level"
#   (https://mailspike.org/usage.html). IPv4 only.
# - PSBL (psbl.surriel.com): addresses that sent mail to spam traps, removable by anyone at
#   https://psbl.org/listing?ip=IP ("Anybody is free to use PSBL", http://psbl.surriel.com/howto/).
#   IPv4 only.
#
# For every list, RFC 5782 (DNS Blacklists and Whitelists): answers are in 127.0.0.0/8, and
# 127.0.0.1 is never listed — a list answering it lists everything (it is shut down, or its
# domain lapsed); an answer outside 127/8 is not a blocklist answer at all (a parked domain).
KNOWN: dict[str, Blocklist] = {
    b.zone: b
    for b in (
        Blocklist(
            "zen.spamhaus.org",
            "Spamhaus ZEN",
            {
                "127.0.0.2": "SBL: a known spam source or spam operation",
                "127.0.0.3": "SBL CSS: a snowshoe spam source (automated)",
                "127.0.0.4": "XBL: an infected or exploited machine (botnet, open proxy)",
                "127.0.0.9": "SBL DROP: a hijacked or spammer-owned network",
                "127.0.0.10": "PBL: the ISP says this range should not send mail directly",
                "127.0.0.11": "PBL: Spamhaus finds this range should not send mail directly",
                "127.0.0.30": "SBL BCL: a botnet controller",
            },
            frozenset({"127.0.0.10", "127.0.0.11"}),
            {
                "127.255.255.252": (
                    "answers 127.255.255.252: the zone name is mistyped",
                    "write the zone as Spamhaus names it, e.g. zen.spamhaus.org",
                ),
                "127.255.255.254": (
                    "refused the question (127.255.255.254): it came through a public or open "
                    "resolver, which Spamhaus's free servers do not answer",
                    RESOLVER_FIX,
                ),
                "127.255.255.255": (
                    "refused the question (127.255.255.255): too many questions from the "
                    "resolver it came through",
                    RESOLVER_FIX,
                ),
            },
            "https://check.spamhaus.org/results/?query={ip}",
            ipv6=True,
        ),
        Blocklist(
            "bl.spamcop.net",
            "SpamCop",
            {"127.0.0.2": "SpamCop users reported mail from this address as spam"},
            lookup="https://www.spamcop.net/bl.shtml?{ip}",
        ),
        Blocklist(
            "bl.mailspike.net",
            "Mailspike",
            {"127.0.0.2": "Mailspike saw this address take part in a spam wave"},
            lookup="https://mailspike.org/",
        ),
        Blocklist(
            "psbl.surriel.com",
            "PSBL",
            {"127.0.0.2": "this address sent mail to PSBL's spam traps"},
            lookup="https://psbl.org/listing?ip={ip}",
        ),
    )
}
DEFAULT_ZONES = ("zen.spamhaus.org", "bl.spamcop.net", "bl.mailspike.net", "psbl.surriel.com")
DEFAULT_TIMEOUT = 5.0
DAILY = 86400.0  # the check repeats this often in the daemon, besides after each change


@dataclass(frozen=True)
class DnsblConfig:
    """[dnsbl]: which lists, through which resolver (None: the system's), and what to do."""

    enabled: bool = True
    lists: tuple[Blocklist, ...] = tuple(KNOWN[z] for z in DEFAULT_ZONES)
    resolver: tuple[str, int] | None = None
    timeout: float = DEFAULT_TIMEOUT
    reconnect: bool = False


def parse_dnsbl(t: Table) -> DnsblConfig:
    """Read [dnsbl]; every mistake names the key and the fix."""
    enabled = t.boolean("enabled", True)
    lists = _read_zones(t)
    resolver = None
    text = t.string("resolver", "system").strip()
    if text != "system":
        try:
            resolver = split_host_port(text, 53)
        except ValueError as exc:
            raise t.error(
                "resolver",
                f"found {text!r}: {exc}",
                'write "system" (resolv.conf\'s), or an IP address with an optional port, '
                'e.g. "127.0.0.1" or "[::1]:5353"',
            ) from None
    timeout = t.duration("timeout", DEFAULT_TIMEOUT)
    if not 0.5 <= timeout <= 60:
        raise t.error("timeout", "must be between 0.5s and 60s", 'e.g. timeout = "5s"')
    reconnect = t.boolean("reconnect", False)
    t.finish()
    return DnsblConfig(enabled, lists, resolver, timeout, reconnect)


_ZONE_KEYS = ("zone", "name", "policy", "lookup", "ipv6")


def _read_zones(t: Table) -> tuple[Blocklist, ...]:
    raw = t.raw("zones", None)
    if raw is None:
        return DnsblConfig.lists
    if not isinstance(raw, list):
        raise t.error("zones", f"{t.found('zones', raw)}, expected a list", _ZONES_FIX)
    out: list[Blocklist] = []
    for i, item in enumerate(raw):
        where = f"zones[{i}]"
        if isinstance(item, str):
            zone = _zone_name(t, where, item)
            out.append(KNOWN.get(zone) or Blocklist(zone, zone))
        elif isinstance(item, dict):
            out.append(_custom(Table(item, t.key(where), t.file)))
        else:
            raise t.error(where, f"{t.found(where, item)}", _ZONES_FIX)
    if not out:
        raise t.error("zones", "is empty", "list at least one zone, or set enabled = false")
    zones = [b.zone for b in out]
    for zone in zones:
        if zones.count(zone) > 1:
            raise t.error("zones", f"names {zone} twice", "keep one")
    return tuple(out)


_ZONES_FIX = (
    'write zone names, e.g. zones = ["zen.spamhaus.org", "bl.spamcop.net"], or tables such as '
    '{ zone = "bl.example.net", policy = ["127.0.0.10"], lookup = "https://…?ip={ip}" }'
)


def _zone_name(t: Table, where: str, text: str) -> str:
    zone = text.strip().rstrip(".").lower()
    labels = zone.split(".")
    if len(labels) < 2 or not all(
        0 < len(label) <= 63 and label.replace("-", "").replace("_", "").isalnum()
        for label in labels
    ):
        raise t.error(where, f"found {text!r}, not a zone name", _ZONES_FIX)
    return zone


def _custom(t: Table) -> Blocklist:
    """{ zone, name, policy, lookup, ipv6 }: a list of the user's, or new facts on a known one."""
    zone = _zone_name(t, "zone", t.string("zone"))
    base = KNOWN.get(zone) or Blocklist(zone, zone)
    changes: dict[str, Any] = {}
    if t.has("name"):
        changes["name"] = t.string("name")
    if t.has("policy"):
        codes = t.str_list("policy")
        for i, code in enumerate(codes):
            try:
                ipaddress.IPv4Address(code)
            except ValueError:
                raise t.error(
                    f"policy[{i}]", f"found {code!r}", 'write the answer, e.g. "127.0.0.10"'
                ) from None
        changes["policy"] = frozenset(codes)
    if t.has("lookup"):
        changes["lookup"] = t.url("lookup")
    if t.has("ipv6"):
        changes["ipv6"] = t.boolean("ipv6")
    t.finish()
    return dataclasses.replace(base, **changes)


# -- the questions and the answers --------------------------------------------------------------


def query_name(address: IPAddress, zone: str) -> str:
    """The name to ask for `address` under `zone` (RFC 5782: reverse-DNS order)."""
    reverse = address.reverse_pointer  # "5.113.0.203.in-addr.arpa", "…ip6.arpa"
    return f"{reverse.rsplit('.', 2)[0]}.{zone}"


VERDICTS = ("listed", "refused", "error", "policy", "clean")  # worst first


@dataclass(frozen=True)
class Finding:
    """What one list said about one address."""

    zone: str
    name: str
    verdict: str  # one of VERDICTS
    codes: tuple[str, ...] = ()
    text: str = ""  # the meaning of the codes, or the problem
    fix: str | None = None
    lookup: str | None = None


def judge(blocklist: Blocklist, address: str, rcode: str, codes: list[str]) -> Finding:
    """The meaning of a list's answer (the DNS answer code and the A records)."""
    b, shown = blocklist, tuple(sorted(set(codes), key=_sort_key))
    if rcode == "NXDOMAIN" or (rcode == "NOERROR" and not shown):
        return Finding(b.zone, b.name, "clean")
    if rcode == "REFUSED":
        return Finding(
            b.zone,
            b.name,
            "refused",
            (),
            "the question was refused (REFUSED): the resolver does not answer us, or the list "
            "does not answer the resolver",
            RESOLVER_FIX,
        )
    if rcode != "NOERROR":
        return Finding(
            b.zone, b.name, "error", (), f"the resolver answered {rcode}", _RESOLVER_CHECK
        )
    for code in shown:
        if code in b.errors:
            problem, fix = b.errors[code]
            verdict = "refused" if fix == RESOLVER_FIX else "error"
            return Finding(b.zone, b.name, verdict, shown, problem, fix)
    strange = [c for c in shown if not _in_loopback(c)]
    if strange:
        return Finding(
            b.zone,
            b.name,
            "error",
            shown,
            f"answers {', '.join(strange)}, which is not a blocklist answer (RFC 5782: "
            "127.0.0.0/8): the list's domain may have lapsed or answer everything",
            f"check that {b.zone} is still a blocklist, or remove it from [dnsbl] zones",
        )
    if "127.0.0.1" in shown:
        return Finding(
            b.zone,
            b.name,
            "error",
            shown,
            "answers 127.0.0.1, which RFC 5782 says is never listed: the list lists every "
            "address (it is shut down)",
            f"remove {b.zone} from [dnsbl] zones",
        )
    listed = [c for c in shown if c not in b.policy]
    meaning = "; ".join(f"{c} {b.meanings.get(c, 'listed')}" for c in shown)
    lookup = b.lookup_url(address)
    if listed:
        return Finding(b.zone, b.name, "listed", shown, meaning, _DELIST, lookup)
    return Finding(b.zone, b.name, "policy", shown, meaning, None, lookup)


def failed(blocklist: Blocklist, problem: str) -> Finding:
    """No answer (a timeout, an unreachable resolver)."""
    return Finding(blocklist.zone, blocklist.name, "error", (), problem, _RESOLVER_CHECK)


_RESOLVER_CHECK = (
    "check that the resolver runs and reaches the Internet ([dnsbl] resolver, else resolv.conf)"
)
_DELIST = "read the list's page for this address and ask for removal there"


def _in_loopback(code: str) -> bool:
    try:
        return ipaddress.IPv4Address(code) in ipaddress.IPv4Network("127.0.0.0/8")
    except ValueError:
        return False


def _sort_key(code: str) -> tuple[int, str]:
    try:
        return int(ipaddress.IPv4Address(code)), code
    except ValueError:
        return 1 << 33, code


def overall(findings: list[Finding]) -> str:
    """The address's verdict: the worst of its lists' ("clean" when none was asked)."""
    return min((f.verdict for f in findings), key=VERDICTS.index, default="clean")
