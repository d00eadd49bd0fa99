"""edit_zone: byte preservation, insertion and removal, serials, and refusals."""

from __future__ import annotations

import difflib
import ipaddress
import shutil
from pathlib import Path
from typing import Any

import dns.rdatatype
import dns.zone
import pytest

from ddnsagent.errors import ZoneEditError, ZoneSyntaxError
from ddnsagent.zones.edit.editor import ZoneEdit, edit_zone
from tests.zones.zone_samples import MINIMAL, NOW, TODAY, V4, V6

DATA = Path(__file__).parent / "data"
ZONE = (DATA / "example.net.zone").read_text()
BOTH = {4: [V4], 6: [V6]}


def edit(text: str, names: list[str], addresses: Any = BOTH, **kwargs: Any) -> ZoneEdit:
    kwargs.setdefault("today", TODAY)
    kwargs.setdefault("now", NOW)
    return edit_zone(text, "example.net.", names, addresses, **kwargs)


def load(text: str, include_dir: Path | None = None) -> dns.zone.Zone:
    if include_dir is not None:
        text = text.replace('"static.inc"', f'"{include_dir / "static.inc"}"')
    return dns.zone.from_text(text, "example.net.", relativize=False, allow_include=True)


def addresses_of(zone: dns.zone.Zone, name: str, rdtype: str) -> set[str]:
    rdataset = zone.get_rdataset(name, rdtype)
    return {rd.address for rd in rdataset} if rdataset else set()


def changed_lines(before: str, after: str) -> tuple[list[int], list[str]]:
    """1-based numbers of the old lines that differ, and the lines only the new text has."""
    old, new = before.splitlines(keepends=True), after.splitlines(keepends=True)
    replaced: list[int] = []
    added: list[str] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(
        None, old, new, autojunk=False
    ).get_opcodes():
        if tag in ("replace", "delete"):
            replaced.extend(range(i1 + 1, i2 + 1))
        if tag in ("replace", "insert"):
            added.extend(new[j1:j2])
    return replaced, added


# --- byte preservation ---------------------------------------------------------------------------


def test_only_managed_lines_and_serial_differ() -> None:
    result = edit(ZONE, ["mail", "gw.lab", "vpn"], include_dir=DATA)

    old_lines = ZONE.splitlines(keepends=True)
    expected_lines = list(old_lines)
    for number, old, new in [
        (7, "2024010101", "2024010102"),
        (19, "192.0.2.10", "198.51.100.7"),
        (20, "2001:db8::10", "2001:db8::77"),
        (28, "192.0.2.1 ", "198.51.100.7 "),
        (33, "192.0.2.10", "198.51.100.7"),
    ]:
        assert old_lines[number - 1].count(old) == 1
        expected_lines[number - 1] = old_lines[number - 1].replace(old, new)
    # Inserted after the name's last line (line 35 for vpn, 29 for gw); later index first.
    expected_lines.insert(35, "vpn\tIN\tAAAA\t2001:db8::77\n")
    expected_lines.insert(29, "gw\tIN\tAAAA\t2001:db8::77\n")
    assert result.text == "".join(expected_lines)

    replaced, added = changed_lines(ZONE, result.text)
    assert replaced == [7, 19, 20, 28, 33]
    assert len(added) == 7
    assert result.changed
    assert (result.old_serial, result.new_serial) == (2024010101, 2024010102)
    assert result.warnings == []
    assert len(result.changes) == 7  # four rewrites, two insertions, the serial
    assert "SOA serial 2024010101 -> 2024010102 (line 6, policy date)" in result.changes


def test_result_loads_and_everything_else_is_equal() -> None:
    result = edit(ZONE, ["mail", "gw.lab", "vpn"], include_dir=DATA)
    before, after = load(ZONE, DATA), load(result.text, DATA)
    managed = {"mail.example.net.", "gw.lab.example.net.", "vpn.example.net."}
    assert set(before.nodes) == set(after.nodes)
    for name, node in before.nodes.items():
        for rdataset in node.rdatasets:
            new = after.get_rdataset(name, rdataset.rdtype)
            assert new is not None
            if name.to_text() in managed and rdataset.rdtype in (
                dns.rdatatype.A,
                dns.rdatatype.AAAA,
            ):
                expected = "198.51.100.7" if rdataset.rdtype == dns.rdatatype.A else "2001:db8::77"
                assert {rd.address for rd in new} == {expected}
            elif rdataset.rdtype == dns.rdatatype.SOA:
                assert new[0].serial == 2024010102
                assert new[0].replace(serial=2024010101) == rdataset[0]
            else:
                assert new == rdataset and new.ttl == rdataset.ttl, name
    for managed_name in managed:
        assert addresses_of(after, managed_name, "AAAA") == {"2001:db8::77"}
    assert addresses_of(after, "mail.example.net.", "A") == {"198.51.100.7"}
    mail_a = after.get_rdataset("mail.example.net.", "A")
    assert mail_a is not None and mail_a.ttl == 300  # existing TTL kept


def test_a_family_missing_from_the_dict_is_untouched() -> None:
    result = edit(ZONE, ["mail", "gw.lab", "vpn"], {4: [V4]}, include_dir=DATA)
    replaced, added = changed_lines(ZONE, result.text)
    assert replaced == [7, 19, 28, 33]
    assert all("AAAA" not in line for line in added)
    assert "2001:db8::10" in result.text


def test_no_change_means_no_serial_bump() -> None:
    first = edit(ZONE, ["mail", "gw.lab", "vpn"], include_dir=DATA)
    second = edit(first.text, ["mail", "gw.lab", "vpn"], include_dir=DATA)
    assert not second.changed
    assert second.text == first.text
    assert second.changes == []
    assert second.old_serial == second.new_serial == 2024010102


def test_already_published_addresses_leave_the_text_identical() -> None:
    result = edit(MINIMAL, ["ns1"], {4: [ipaddress.IPv4Address("192.0.2.53")]})
    assert (result.changed, result.text, result.new_serial) == (False, MINIMAL, 2024010101)


def test_include_without_include_dir_is_reported_and_scan_validated() -> None:
    result = edit(ZONE, ["mail"])
    assert result.changed
    assert any("$INCLUDE" in w and "include_dir" in w for w in result.warnings)


def test_managed_record_inside_include_is_reported_and_refused(tmp_path: Path) -> None:
    shutil.copy(DATA / "static.inc", tmp_path / "static.inc")
    with pytest.raises(ZoneEditError, match=r"nas.example.net. A would hold .*1 record.*INCLUDE"):
        edit(ZONE, ["nas"], include_dir=tmp_path)
    with pytest.raises(ZoneEditError, match="INCLUDE"):
        edit(ZONE, ["nas"], include_dir=tmp_path, validate="scan")
    result = edit(ZONE, ["nas"], {6: [V6]}, include_dir=tmp_path)  # AAAA only: fine
    # Named by file, line, name and type; the included file's content is never quoted.
    assert any("static.inc:2: a managed A record of nas.example.net." in w for w in result.warnings)
    assert not any("192.0.2.20" in w for w in result.warnings)
    assert result.text.endswith('"vpn; still vpn"\nnas\tIN\tAAAA\t2001:db8::77\n')  # appended


def test_crlf_line_endings_are_kept() -> None:
    crlf = MINIMAL.replace("\n", "\r\n") + "www\tIN\tA\t192.0.2.80\r\n"
    result = edit(crlf, ["www"])
    assert result.text == (
        crlf.replace("2024010101", "2024010102").replace("192.0.2.80", "198.51.100.7")
        + "www\tIN\tAAAA\t2001:db8::77\r\n"
    )


# --- insertion ----------------------------------------------------------------------------------


def test_missing_aaaa_is_inserted_after_the_a_record_with_the_configured_ttl() -> None:
    zone = MINIMAL + "www\tIN\tA\t198.51.100.7 ; web\nftp\tIN\tA\t192.0.2.9\n"
    result = edit(zone, ["www"], ttl=120)
    assert result.text.splitlines()[5:8] == [
        "www\tIN\tA\t198.51.100.7 ; web",
        "www\t120\tIN\tAAAA\t2001:db8::77",
        "ftp\tIN\tA\t192.0.2.9",
    ]
    assert result.changes[0] == "www.example.net. AAAA 2001:db8::77 added after line 6"


def test_inserted_record_reuses_the_ttl_of_the_address_record_it_follows() -> None:
    zone = MINIMAL + "www 300 IN A 198.51.100.7\n"
    assert "www\t300\tIN\tAAAA\t2001:db8::77\n" in edit(zone, ["www"]).text


def test_blank_owner_anchor_gets_a_relative_owner_spelled_for_its_origin() -> None:
    zone = (
        MINIMAL + '$ORIGIN lab.example.net.\ngw IN MX 10 mx\n\tIN TXT "x"\n$ORIGIN example.net.\n'
    )
    result = edit(zone, ["gw.lab"], {4: [V4]})
    assert '\tIN TXT "x"\ngw\tIN\tA\t198.51.100.7\n$ORIGIN example.net.\n' in result.text


def test_name_without_records_is_appended_relative_to_the_final_origin() -> None:
    zone = MINIMAL + "$ORIGIN lab.example.net.\nprinter A 192.0.2.3"  # no final newline
    result = edit(zone, ["new", "gw.lab"], {4: [V4]})
    assert result.text.endswith(
        "printer A 192.0.2.3\nnew.example.net.\tIN\tA\t198.51.100.7\ngw\tIN\tA\t198.51.100.7"
    )
    assert load(result.text).get_rdataset("gw.lab.example.net.", "A") is not None


def test_origin_itself_can_be_managed() -> None:
    result = edit(MINIMAL, ["@"], {4: [V4]})
    assert "\tIN\tNS\tns1\n@\tIN\tA\t198.51.100.7\n" in result.text
    assert addresses_of(load(result.text), "example.net.", "A") == {"198.51.100.7"}


# --- several addresses per family ---------------------------------------------------------------

A1, A2, A3 = (ipaddress.IPv4Address(f"203.0.113.{i}") for i in (1, 2, 3))


def test_more_addresses_than_records_inserts_after_the_last_one() -> None:
    zone = MINIMAL + "www IN A 192.0.2.80 ; old\nwww IN MX 10 mail\n"
    result = edit(zone, ["www"], {4: [A1, A2, A3]})
    assert result.text.endswith(
        "www IN A 203.0.113.1 ; old\n"
        "www\tIN\tA\t203.0.113.2\nwww\tIN\tA\t203.0.113.3\n"
        "www IN MX 10 mail\n"
    )


def test_fewer_addresses_than_records_keeps_matches_and_removes_the_rest() -> None:
    zone = MINIMAL + "www IN A 192.0.2.1\nwww IN A 203.0.113.2 ; keep me\nwww IN A 192.0.2.3\n"
    result = edit(zone, ["www"], {4: [A2]})
    assert result.text.endswith("ns1\tIN\tA\t192.0.2.53\nwww IN A 203.0.113.2 ; keep me\n")
    assert sum("removed" in c for c in result.changes) == 2


def test_removing_an_owner_line_prefers_rewriting_it_over_orphaning_continuations() -> None:
    zone = MINIMAL + 'www IN A 192.0.2.1\n\tIN A 192.0.2.2\n\tIN TXT "w"\n'
    result = edit(zone, ["www"], {4: [A1]})
    assert result.text.endswith('www IN A 203.0.113.1\n\tIN TXT "w"\n')


def test_removed_owner_line_hands_its_owner_to_the_next_line() -> None:
    zone = MINIMAL + 'www IN A 192.0.2.1 ; gone\n\tIN TXT "w"\n\tIN MX 10 mail\n'
    result = edit(zone, ["www"], {4: []})
    assert result.text.endswith('www\tIN TXT "w"\n\tIN MX 10 mail\n')
    zone_after = load(result.text)
    assert zone_after.get_rdataset("www.example.net.", "TXT") is not None
    assert zone_after.get_rdataset("www.example.net.", "A") is None


def test_generic_rdata_form_is_kept() -> None:
    zone = MINIMAL + "www IN TYPE1 \\# 4 c0000201\n"
    result = edit(zone, ["www"], {4: [V4]})
    assert result.text.endswith("www IN TYPE1 \\# 4 c6336407\n")
    assert addresses_of(load(result.text), "www.example.net.", "A") == {"198.51.100.7"}


def test_names_are_case_insensitive_and_may_be_absolute_or_escaped() -> None:
    zone = MINIMAL + "WWW.Example.NET. IN A 192.0.2.1\nw\\119w2 IN A 192.0.2.2\n"
    result = edit(zone, ["www.example.net.", "www2"], {4: [V4]})
    assert result.text.endswith("WWW.Example.NET. IN A 198.51.100.7\nw\\119w2 IN A 198.51.100.7\n")


# --- serial policies ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "old", "new"),
    [
        ("date", 2024010101, 2024010102),
        ("date", 2023123105, 2024010100),
        ("date", 2030010100, 2030010101),
        ("increment", 2024010101, 2024010102),
        ("unixtime", 2024010101, 2024010102),
        ("unixtime", 1_000_000_000, NOW),
    ],
)
def test_serial_policies_in_the_zone(policy: str, old: int, new: int) -> None:
    zone = MINIMAL.replace("2024010101", str(old)) + "www IN A 192.0.2.1\n"
    result = edit(zone, ["www"], {4: [V4]}, serial=policy)
    assert (result.old_serial, result.new_serial) == (old, new)
    assert f"hostmaster {new} 7200" in result.text


# --- refusals -----------------------------------------------------------------------------------


def test_change_without_an_soa_in_the_file_is_refused() -> None:
    zone = "$ORIGIN example.net.\nwww IN A 192.0.2.1\n"
    with pytest.raises(ZoneEditError, match="no SOA"):
        edit(zone, ["www"], {4: [V4]}, validate="none")
    result = edit(zone, ["www"], {4: [ipaddress.IPv4Address("192.0.2.1")]}, validate="none")
    assert not result.changed and result.old_serial is None


def test_non_numeric_serial_is_refused() -> None:
    zone = MINIMAL.replace("2024010101", "2024O10101") + "www IN A 192.0.2.1\n"
    with pytest.raises(ZoneEditError, match="not a number"):
        edit(zone, ["www"], {4: [V4]}, validate="none")


def test_adding_address_to_a_cname_is_refused() -> None:
    with pytest.raises(ZoneEditError, match="CNAME"):
        edit(ZONE, ["www"], {4: [V4]}, include_dir=DATA)


@pytest.mark.parametrize(
    ("tail", "line", "message"),
    [
        ('www IN TXT "unterminated\n', 6, "unterminated"),
        ("www IN TXT ( a\n", 6, "unbalanced"),
        ("www IN TXT a )\n", 6, "unbalanced"),
        ("www IN\n", 6, "no type"),
        ("www IN A 192.0.2.1 \\\n", 6, "escape"),
    ],
)
def test_syntax_errors_name_the_line(tail: str, line: int, message: str) -> None:
    with pytest.raises(ZoneSyntaxError, match=message) as info:
        edit(MINIMAL + tail, ["www"], {4: [V4]})
    assert info.value.line == line


def test_zone_that_does_not_load_is_refused_with_the_reason() -> None:
    no_ns = MINIMAL.replace("\tIN\tNS\tns1\n", "") + "www IN A 192.0.2.1\n"
    with pytest.raises(ZoneEditError, match="did not load before the edit either"):
        edit(no_ns, ["www"], {4: [V4]})
    assert edit(no_ns, ["www"], {4: [V4]}, validate="scan").changed


def test_multi_line_address_record_is_refused() -> None:
    zone = MINIMAL + "www IN A ( \\# 4\n c0000201 )\n"
    with pytest.raises(ZoneEditError, match="one token on one line"):
        edit(zone, ["www"], {4: [V4]})


@pytest.mark.parametrize(
    ("names", "addresses", "kwargs"),
    [
        (["www.example.org."], {4: [V4]}, {}),
        (["www"], {4: [V6]}, {}),
        (["www"], {5: [V4]}, {}),
        (["www"], {4: [V4]}, {"ttl": -1}),
        (["www"], {4: [V4]}, {"validate": "maybe"}),
        (["www"], {4: [V4]}, {"serial": "weekly"}),
    ],
)
def test_bad_arguments(names: list[str], addresses: Any, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        edit(MINIMAL + "www IN A 192.0.2.1\n", names, addresses, **kwargs)


def test_bare_carriage_return_is_refused() -> None:
    with pytest.raises(ZoneSyntaxError, match="carriage return"):
        edit(MINIMAL + "www IN A 192.0.2.1\rftp IN A 192.0.2.2\n", ["www"])


# --- size ---------------------------------------------------------------------------------------


def big_zone(records: int) -> str:
    lines = [MINIMAL]
    lines.extend(
        f"host{i}\tIN\tA\t10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}\t; c{i}\n"
        if i % 3
        else f'host{i}\tIN\tTXT\t"k=v; ({i})"\n'
        for i in range(records)
    )
    return "".join(lines)


def test_hundred_thousand_records_in_a_single_pass() -> None:
    import time

    zone = big_zone(100_000)
    start = time.perf_counter()
    result = edit(zone, ["host1", "host50000", "host99998", "new"], validate="scan")
    elapsed = time.perf_counter() - start
    assert result.changed and len(result.changes) == 9
    assert elapsed < 5, f"{elapsed:.2f}s"  # about 0.3s on a laptop; generous for slow CI


# --- less common situations ---------------------------------------------------------------------


def test_inserting_with_a_ttl_before_any_ttl_directive_warns() -> None:
    zone = MINIMAL.replace("$TTL 3600\n", "") + 'www 600 IN MX 10 mail\n\tIN TXT "t"\n'
    result = edit(zone, ["www"], {4: [V4]}, ttl=60)
    assert "www\t60\tIN\tA\t198.51.100.7\n" in result.text
    assert any("no $TTL precedes" in w for w in result.warnings)


def test_generate_is_reported() -> None:
    zone = MINIMAL + "$GENERATE 1-3 host$ A 192.0.2.$\nwww IN A 192.0.2.1\n"
    result = edit(zone, ["www"], {4: [V4]})
    assert result.changed and any("$GENERATE on line(s) 6" in w for w in result.warnings)


def test_unparseable_address_is_rewritten() -> None:
    zone = MINIMAL + "www IN A 192.0.2.300\n"
    result = edit(zone, ["www"], {4: [V4]}, validate="scan")
    assert result.text.endswith("www IN A 198.51.100.7\n")
    assert "www.example.net. A 192.0.2.300 -> 198.51.100.7 (line 6)" in result.changes


def test_several_soa_records_are_refused() -> None:
    zone = MINIMAL + "@ IN SOA ns1 hostmaster 7 1 1 1 1\nwww IN A 192.0.2.1\n"
    with pytest.raises(ZoneEditError, match="several SOA records"):
        edit(zone, ["www"], {4: [V4]}, validate="none")


def test_nested_includes_are_examined_relative_to_include_dir(tmp_path: Path) -> None:
    (tmp_path / "outer.inc").write_text('$INCLUDE "inner.inc"\n')
    (tmp_path / "inner.inc").write_text("www IN A 192.0.2.99\n")
    zone = MINIMAL + '$INCLUDE "outer.inc"\n'
    with pytest.raises(ZoneEditError, match=r"www.example.net. A would hold .*from \$INCLUDE"):
        edit(zone, ["www"], {4: [V4]}, include_dir=tmp_path)
    result = edit(zone, ["www"], {4: [V4]}, include_dir=tmp_path, validate="none")
    assert any("inner.inc:1: a managed A record of www.example.net." in w for w in result.warnings)
    (tmp_path / "inner.inc").write_text("ftp IN A 192.0.2.99\n")
    # Nested relative names are resolved against include_dir by us; dnspython opens no file,
    # so "full" validation no longer falls back to "scan" (deliberately changed).
    result = edit(zone, ["www"], {4: [V4]}, include_dir=tmp_path)
    assert result.changed and not any("INCLUDE" in w for w in result.warnings)


def test_unreadable_include_is_refused_unless_validation_is_off(tmp_path: Path) -> None:
    zone = MINIMAL + '$INCLUDE "missing.inc"\n'
    for validate in ("full", "scan"):
        with pytest.raises(ZoneEditError, match=r"missing\.inc does not exist"):
            edit(zone, ["www"], {4: [V4]}, include_dir=tmp_path, validate=validate)
    result = edit(zone, ["www"], {4: [V4]}, include_dir=tmp_path, validate="none")
    assert any("missing.inc" in w for w in result.warnings)


def test_addresses_must_be_ipaddress_objects() -> None:
    with pytest.raises(TypeError):
        edit(MINIMAL, ["www"], {4: ["192.0.2.1"]})
