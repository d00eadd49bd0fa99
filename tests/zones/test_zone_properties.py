"""Property test: on generated zones, edit_zone changes the managed data and nothing else."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import dns.name
import dns.rdatatype
import dns.zone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ddnsagent.zones.edit.editor import edit_zone
from tests.zones.zone_samples import NOW, TODAY

ZONE = dns.name.from_text("example.net.")
LAB = dns.name.from_text("lab.example.net.")
NAMES = ["example.net.", "www.example.net.", "mail.example.net.", "gw.lab.example.net."]
V4S = [ipaddress.IPv4Address(f"192.0.2.{i}") for i in (1, 2, 3)]
V6S = [ipaddress.IPv6Address(f"2001:db8::{i}") for i in (1, 2, 3)]
SEP = st.sampled_from([" ", "\t", "  ", " \t", "\t\t"])


@dataclass
class Generated:
    text: str
    serial_line: int
    address_lines: list[tuple[int, str, int]]  # (line index, absolute owner, family)


def spell(name: str, origin: dns.name.Name, style: str) -> str:
    absolute = dns.name.from_text(name)
    if style == "absolute" or not absolute.is_subdomain(origin):
        return name
    return "@" if absolute == origin else absolute.relativize(origin).to_text()


@st.composite
def txt_rdata(draw: st.DrawFn) -> str:
    chunk = st.lists(st.sampled_from(["a", "b", " ", ";", "(", ")", '\\"', "\\\\"]), max_size=6)
    strings = [f'"{"".join(draw(chunk))}"' for _ in range(draw(st.integers(1, 2)))]
    if draw(st.booleans()):
        return "( " + "\n\t\t".join(strings) + " )"
    return " ".join(strings)


@st.composite
def zones(draw: st.DrawFn) -> Generated:
    lines = ["; generated", "$TTL 3600", "$ORIGIN example.net."]
    if draw(st.booleans()):
        lines.append("@ IN SOA ns1 hostmaster 2024010101 7200 3600 1209600 300")
        serial_line = len(lines) - 1
    else:
        lines += [
            "@\tIN\tSOA\tns1.example.net. hostmaster (\t; multi-line",
            "\t\t\t2024010101 ; sn",
        ]
        serial_line = len(lines) - 1
        lines += ["\t\t\t7200 3600 ; refresh retry", "\t\t\t1209600 300 )"]
    lines.append("\tIN\tNS\tns1.example.org.")
    origin, last_owner = ZONE, "example.net."
    address_lines: list[tuple[int, str, int]] = []
    for _ in range(draw(st.integers(0, 20))):
        kind = draw(st.sampled_from(["rr", "rr", "rr", "rr", "comment", "blank", "origin"]))
        if kind == "comment":
            lines.append(draw(st.sampled_from(["", " ", "\t"])) + '; note "x" ( y')
        elif kind == "blank":
            lines.append(draw(st.sampled_from(["", " ", "\t"])))
        elif kind == "origin":
            origin = LAB if origin == ZONE else ZONE
            lines.append(f"$ORIGIN {origin}")
        else:
            style = draw(st.sampled_from(["relative", "absolute", "blank"]))
            if style == "blank":
                owner_field, owner = draw(SEP), last_owner
            else:
                owner = draw(st.sampled_from(NAMES))
                owner_field = spell(owner, origin, style) + draw(SEP)
            last_owner = owner
            rrtype = draw(st.sampled_from(["A", "AAAA", "TXT", "MX", "HINFO"]))
            rdata = {
                "A": str(draw(st.sampled_from(V4S))),
                "AAAA": str(draw(st.sampled_from(V6S))),
                "TXT": draw(txt_rdata()),
                "MX": "10 mail",
                "HINFO": '"x86 (64)" "linux; 6"',
            }[rrtype]
            fields = draw(st.sampled_from([[], ["300"], ["IN"], ["300", "IN"], ["IN", "300"]]))
            middle = "".join(f + draw(SEP) for f in fields)
            comment = draw(st.sampled_from(["", " ; c", '\t; (c) "q"']))
            if rrtype in ("A", "AAAA"):
                number = sum(line.count("\n") + 1 for line in lines)  # TXT may span lines
                address_lines.append((number, owner, 4 if rrtype == "A" else 6))
            lines.append(f"{owner_field}{middle}{rrtype}{draw(SEP)}{rdata}{comment}")
    ending = draw(st.sampled_from(["\n", ""]))
    return Generated("\n".join(lines) + ending, serial_line, address_lines)


def load(text: str) -> dns.zone.Zone:
    return dns.zone.from_text(text, ZONE, relativize=False)


def is_subsequence(kept: list[str], new_lines: list[str]) -> bool:
    """Each kept line appears in order, verbatim or with an owner written in front of it."""
    it = iter(new_lines)
    return all(
        any(n == line or (line[:1] in " \t" and n.endswith(line) and n[0] not in " \t") for n in it)
        for line in kept
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    zone=zones(),
    managed=st.sets(st.sampled_from(NAMES), min_size=1),
    v4=st.none() | st.lists(st.sampled_from(V4S), max_size=3),
    v6=st.none() | st.lists(st.sampled_from(V6S), max_size=3),
    ttl=st.sampled_from([None, 60]),
    policy=st.sampled_from(["date", "increment", "unixtime"]),
)
def test_only_managed_data_changes(
    zone: Generated,
    managed: set[str],
    v4: list[ipaddress.IPv4Address] | None,
    v6: list[ipaddress.IPv6Address] | None,
    ttl: int | None,
    policy: str,
) -> None:
    addresses: dict[int, list[ipaddress.IPv4Address | ipaddress.IPv6Address]] = {}
    if v4 is not None:
        addresses[4] = list(v4)
    if v6 is not None:
        addresses[6] = list(v6)
    names = sorted(managed)
    result = edit_zone(
        zone.text, "example.net.", names, addresses, ttl=ttl, serial=policy,  # type: ignore[arg-type]
        today=TODAY, now=NOW,
    )  # fmt: skip

    # The data: managed address sets are exactly the wanted ones, everything else is equal.
    before, after = load(zone.text), load(result.text)
    families = {dns.rdatatype.A: 4, dns.rdatatype.AAAA: 6}
    keys = {(n, rds.rdtype) for z in (before, after) for n, node in z.nodes.items() for rds in node}
    for name, rdtype in keys:
        old, new = before.get_rdataset(name, rdtype), after.get_rdataset(name, rdtype)
        family = families.get(rdtype)
        if name.to_text() in managed and family in addresses:
            assert {rd.address for rd in new or []} == {str(a) for a in addresses[family]}
        elif rdtype == dns.rdatatype.SOA:
            assert old is not None and new is not None
            assert new[0].serial == result.new_serial
            assert new[0].replace(serial=old[0].serial) == old[0]
        else:
            assert old == new, (name, rdtype)
            assert old is None or new is None or old.ttl == new.ttl
    for managed_name in managed:
        for family, wanted in addresses.items():
            rdtype = dns.rdatatype.A if family == 4 else dns.rdatatype.AAAA
            got = after.get_rdataset(managed_name, rdtype)
            assert {rd.address for rd in got or []} == {str(a) for a in wanted}

    # The text: every line other than managed address lines and the serial survives verbatim.
    old_lines = zone.text.split("\n")
    skipped = {zone.serial_line} | {
        i for i, owner, family in zone.address_lines if owner in managed and family in addresses
    }
    kept = [line for i, line in enumerate(old_lines) if i not in skipped]
    assert is_subsequence(kept, result.text.split("\n"))
    assert result.changed == (result.text != zone.text)
    if not result.changed:
        assert result.new_serial == result.old_serial == 2024010101

    # Idempotent: a second run finds nothing to do.
    again = edit_zone(result.text, "example.net.", names, addresses, today=TODAY, now=NOW)
    assert not again.changed and again.text == result.text
