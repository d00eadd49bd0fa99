"""The DNSBL check without a server (issue 14, part 2): the question's name, the meaning of the
lists' answers, the [dnsbl] section, the state record and the words of `status`. The answers
below are the codes the lists document (see the table in ddnsagent/dnsbl/lists.py);
tests/test_dnsbl_rbldnsd.py asks a real rbldnsd."""

from __future__ import annotations

import ipaddress
import json
import socket
from pathlib import Path

import pytest

from ddnsagent import config
from ddnsagent.dnsbl import check as dnsbl_check
from ddnsagent.dnsbl.lists import (
    DEFAULT_ZONES,
    KNOWN,
    RESOLVER_FIX,
    Blocklist,
    DnsblConfig,
    judge,
    overall,
    query_name,
)
from ddnsagent.errors import ConfigError
from ddnsagent.store import Store
from tests.conftest import write_config

ZEN = KNOWN["zen.spamhaus.org"]
SPAMCOP = KNOWN["bl.spamcop.net"]


def test_the_question_is_the_address_backwards_under_the_zone() -> None:
    assert query_name(ipaddress.ip_address("203.0.113.5"), "zen.spamhaus.org") == (
        "5.113.0.203.zen.spamhaus.org"
    )
    # Spamhaus's own example of the nibble format (DQS queries page)
    assert query_name(ipaddress.ip_address("2001:db8:7ca6:22::45"), "sbl.example") == (
        "5.4.0.0.0.0.0.0.0.0.0.0.0.0.0.0.2.2.0.0.6.a.c.7.8.b.d.0.1.0.0.2.sbl.example"
    )


def test_nxdomain_or_an_empty_answer_is_not_listed() -> None:
    assert judge(ZEN, "192.0.2.1", "NXDOMAIN", []).verdict == "clean"
    assert judge(ZEN, "192.0.2.1", "NOERROR", []).verdict == "clean"


def test_a_listing_names_the_list_the_code_its_meaning_and_the_lookup_page() -> None:
    f = judge(ZEN, "203.0.113.5", "NOERROR", ["127.0.0.4"])
    assert f.verdict == "listed" and f.codes == ("127.0.0.4",)
    assert "XBL" in f.text and "127.0.0.4" in f.text
    assert f.lookup == "https://check.spamhaus.org/results/?query=203.0.113.5"
    f = judge(SPAMCOP, "203.0.113.5", "NOERROR", ["127.0.0.2"])
    assert f.verdict == "listed" and f.lookup == "https://www.spamcop.net/bl.shtml?203.0.113.5"


def test_the_pbl_alone_is_expected_for_a_dynamic_address() -> None:
    for code in ("127.0.0.10", "127.0.0.11"):
        f = judge(ZEN, "198.51.100.7", "NOERROR", [code])
        assert f.verdict == "policy", code
        assert "PBL" in f.text
    # PBL and XBL together: the XBL listing counts
    f = judge(ZEN, "198.51.100.7", "NOERROR", ["127.0.0.11", "127.0.0.4"])
    assert f.verdict == "listed" and f.codes == ("127.0.0.4", "127.0.0.11")


def test_spamhaus_error_codes_are_refusals_with_the_fix_not_listings() -> None:
    for code in ("127.255.255.254", "127.255.255.255"):
        f = judge(ZEN, "203.0.113.5", "NOERROR", [code])
        assert f.verdict == "refused", code
        assert f.fix == RESOLVER_FIX and "public" in f.fix and "resolver" in f.fix
    typo = judge(ZEN, "203.0.113.5", "NOERROR", ["127.255.255.252"])
    assert typo.verdict == "error" and "mistyped" in typo.text
    # the same codes mean nothing special to a list that does not document them
    assert judge(SPAMCOP, "203.0.113.5", "NOERROR", ["127.255.255.254"]).verdict == "listed"


def test_answers_outside_the_blocklist_range_are_errors() -> None:
    parked = judge(SPAMCOP, "203.0.113.5", "NOERROR", ["198.51.100.80"])
    assert parked.verdict == "error" and "RFC 5782" in parked.text
    everything = judge(SPAMCOP, "203.0.113.5", "NOERROR", ["127.0.0.1"])
    assert everything.verdict == "error" and "every address" in everything.text


def test_dns_answer_codes() -> None:
    refused = judge(ZEN, "203.0.113.5", "REFUSED", [])
    assert refused.verdict == "refused" and refused.fix == RESOLVER_FIX
    assert judge(ZEN, "203.0.113.5", "SERVFAIL", []).verdict == "error"


def test_the_worst_finding_decides() -> None:
    clean = judge(ZEN, "a", "NXDOMAIN", [])
    policy = judge(ZEN, "a", "NOERROR", ["127.0.0.10"])
    listed = judge(SPAMCOP, "a", "NOERROR", ["127.0.0.2"])
    refused = judge(ZEN, "a", "REFUSED", [])
    assert overall([]) == "clean"
    assert overall([clean, policy]) == "policy"
    assert overall([policy, refused]) == "refused"
    assert overall([refused, listed, clean]) == "listed"


def load(tmp_path: Path, section: str) -> config.Config:
    text = f'[agent]\nstate_dir = "{tmp_path}/state"\n[detect]\nipv4 = ["web"]\n{section}'
    return config.load(write_config(tmp_path, text))


def test_no_section_no_check_and_defaults(tmp_path: Path) -> None:
    assert load(tmp_path, "").dnsbl is None
    cfg = load(tmp_path, "[dnsbl]\n").dnsbl
    assert cfg is not None and cfg.enabled and not cfg.reconnect
    assert cfg.resolver is None and cfg.timeout == 5.0
    assert tuple(b.zone for b in cfg.lists) == DEFAULT_ZONES
    assert DnsblConfig().lists == cfg.lists


def test_zones_resolver_and_a_list_of_ones_own(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        '[dnsbl]\nenabled = false\nreconnect = true\ntimeout = "2s"\n'
        'resolver = "[::1]:5353"\n'
        'zones = ["ZEN.spamhaus.org.", { zone = "bl.example.net", name = "Example", '
        'policy = ["127.0.0.10"], lookup = "https://bl.example.net/?ip={ip}", ipv6 = true }]\n',
    ).dnsbl
    assert cfg is not None and not cfg.enabled and cfg.reconnect and cfg.timeout == 2.0
    assert cfg.resolver == ("::1", 5353)
    zen, mine = cfg.lists
    assert zen is ZEN
    assert mine == Blocklist(
        "bl.example.net",
        "Example",
        policy=frozenset({"127.0.0.10"}),
        lookup="https://bl.example.net/?ip={ip}",
        ipv6=True,
    )
    assert judge(mine, "2001:db8::5", "NOERROR", ["127.0.0.10"]).verdict == "policy"


@pytest.mark.parametrize(
    ("section", "key", "words"),
    [
        ('zones = "zen.spamhaus.org"', "dnsbl.zones", "expected a list"),
        ("zones = []", "dnsbl.zones", "is empty"),
        ('zones = ["zen"]', "dnsbl.zones[0]", "not a zone name"),
        ('zones = ["bl.spamcop.net", "BL.spamcop.net"]', "dnsbl.zones", "twice"),
        ('zones = [{ zone = "x.example", policy = ["ten"] }]', "dnsbl.zones[0].policy[0]", ""),
        ('zones = [{ zone = "x.example", codes = 1 }]', "dnsbl.zones[0].codes", "not a known"),
        ('resolver = "my resolver"', "dnsbl.resolver", "system"),
        ('timeout = "2m"', "dnsbl.timeout", "between"),
        ("reconect = true", "dnsbl.reconect", "did you mean 'reconnect'"),
    ],
)
def test_mistakes_name_the_key_and_the_fix(
    tmp_path: Path, section: str, key: str, words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, f"[dnsbl]\n{section}\n")
    text = str(caught.value)
    assert key in text and words in text


def report(address: str, *findings: tuple[Blocklist, str, list[str]]) -> dnsbl_check.Report:
    r = dnsbl_check.Report(address, 1795000000.0, asked=[b.zone for b, _, _ in findings])
    r.findings = [judge(b, address, rcode, codes) for b, rcode, codes in findings]
    return r


def test_the_log_says_each_kind_once_and_nothing_for_a_clean_address() -> None:
    clean = report("192.0.2.1", (ZEN, "NXDOMAIN", []), (SPAMCOP, "NXDOMAIN", []))
    assert dnsbl_check.lines(clean) == []
    mixed = report(
        "203.0.113.5",
        (ZEN, "NOERROR", ["127.0.0.11"]),
        (SPAMCOP, "NOERROR", ["127.0.0.2"]),
        (KNOWN["psbl.surriel.com"], "NOERROR", ["127.0.0.2"]),
    )
    said = dnsbl_check.lines(mixed)
    assert [level for level, _ in said] == ["warning", "info"]
    listed, policy = (text for _, text in said)
    assert "LISTED" in listed and "bl.spamcop.net" in listed and "psbl.surriel.com" in listed
    assert "https://www.spamcop.net/bl.shtml?203.0.113.5" in listed
    assert "https://psbl.org/listing?ip=203.0.113.5" in listed
    assert "expected" in policy and "127.0.0.11" in policy and "nothing to do" in policy
    dead = dnsbl_check.Report("203.0.113.5", 0.0, asked=["a.example", "b.example"])
    dead.findings = [
        dnsbl_check.failed(Blocklist(z, z), "no answer from 127.0.0.1:53 within 5s")
        for z in dead.asked
    ]
    (only,) = dnsbl_check.lines(dead)
    assert only[0] == "warning" and "incomplete" in only[1] and only[1].count("no answer") == 2


def test_the_state_keeps_the_check_and_status_shows_it(tmp_path: Path) -> None:
    store = Store(tmp_path / "state")
    r = report("203.0.113.5", (ZEN, "NOERROR", ["127.0.0.4"]), (SPAMCOP, "NXDOMAIN", []))
    with store.edit() as state:
        state.dnsbl.checks[4] = dnsbl_check.record(r, "reconnected: new address 203.0.113.9")
        state.dnsbl.acted_on.append("203.0.113.5")
    state = store.load()
    kept = state.dnsbl.checks[4]
    assert (kept.address, kept.verdict, kept.zones) == (
        "203.0.113.5",
        "listed",
        ["zen.spamhaus.org", "bl.spamcop.net"],
    )
    assert [f.zone for f in kept.findings] == ["zen.spamhaus.org"]  # clean ones are not kept
    assert state.dnsbl.acted_on == ["203.0.113.5"]
    out = dnsbl_check.status_json(state.dnsbl, DnsblConfig(reconnect=True))
    assert out["enabled"] is True and out["reconnect"] is True
    assert out["checks"]["ipv4"]["findings"][0]["codes"] == ["127.0.0.4"]
    assert out["checks"]["ipv4"]["action"].startswith("reconnected")
    json.dumps(out)  # plain JSON
    text = "\n".join(dnsbl_check.status_lines(state.dnsbl, DnsblConfig(), lambda t: "T"))
    assert "dnsbl: 203.0.113.5 checked T: LISTED" in text
    assert "action: reconnected: new address 203.0.113.9" in text
    # a wrong-typed entry is dropped, the rest kept
    raw = json.loads((tmp_path / "state" / "state.json").read_text())
    raw["dnsbl"]["checks"]["6"] = {"address": 6}
    (tmp_path / "state" / "state.json").write_text(json.dumps(raw))
    assert set(store.load().dnsbl.checks) == {4}


def test_status_with_a_dnsbl_section_stays_lean(tmp_path: Path) -> None:
    """`status` shows the check's result without loading dnspython's query code (or any of
    dnspython: the words live apart from the questions); see tests/test_imports.py."""
    from tests.test_imports import heavy, run

    path = write_config(
        tmp_path,
        f'[agent]\nstate_dir = "{tmp_path}/state"\n[detect]\nipv4 = ["web"]\n'
        '[dnsbl]\nzones = ["zen.spamhaus.org"]\nreconnect = true\n',
    )
    r = report("198.51.100.7", (ZEN, "NOERROR", ["127.0.0.11"]))
    with Store(tmp_path / "state").edit() as state:
        state.dnsbl.checks[4] = dnsbl_check.record(r)
    code, modules, out = run(["status", "--config", str(path)])
    assert code == 0, out
    assert "dnsbl: 198.51.100.7 checked" in out and "policy list only" in out
    assert "ddnsagent.dnsbl.check" in modules  # the words were loaded (not vacuous)
    assert heavy(modules) == []
    assert not any(m == "dns" or m.startswith("dns.") for m in modules)
    code, modules, out = run(["check-config", "--config", str(path)])
    assert heavy(modules) == [] and not any(m.startswith("dns.") for m in modules)


def test_the_example_shows_every_key_with_its_default(tmp_path: Path) -> None:
    """config.example.toml's [dnsbl], uncommented, loads and is the defaults."""
    import re

    root = Path(__file__).resolve().parents[1]
    text = (root / "config.example.toml").read_text(encoding="utf-8")
    block = text[text.index("# [dnsbl]") :]
    block = re.sub(r"(?m)^# ([a-z\[])", r"\1", block)
    cfg = load(tmp_path, block).dnsbl
    assert cfg == DnsblConfig()
    for key in ("enabled", "zones", "resolver", "timeout", "reconnect"):
        assert re.search(rf"(?m)^{key} = ", block), f"[dnsbl] {key} is not in the example"


def test_the_notification_is_the_dnsbl_event() -> None:
    from ddnsagent.outputs.notify import Notifier
    from ddnsagent.outputs.notify_settings import EVENTS

    class Sender:
        def __init__(self) -> None:
            self.got: list[object] = []

        def submit(self, message: object) -> bool:
            self.got.append(message)
            return True

    assert "dnsbl" in EVENTS  # on by default: [notify] events defaults to all of them
    sender = Sender()
    n = Notifier(sender, host="mx")  # type: ignore[arg-type]
    n.dnsbl("203.0.113.5", "listed", "IPv4 203.0.113.5 is LISTED on SpamCop")
    n.dnsbl("203.0.113.5", "refused", "refused the question")
    listed, refused = sender.got
    assert (listed.kind, listed.level) == ("dnsbl", "failure")  # type: ignore[attr-defined]
    assert "mx: 203.0.113.5 is listed" in listed.title  # type: ignore[attr-defined]
    assert refused.level == "warning"  # type: ignore[attr-defined]
    quiet = Sender()
    Notifier(quiet, events=["address"], host="mx").dnsbl("a", "listed", "x")  # type: ignore[arg-type]
    assert quiet.got == []


def test_the_system_resolvers_are_resolv_confs_in_order(tmp_path: Path) -> None:
    from ddnsagent.dnsclient import system_nameservers

    conf = tmp_path / "resolv.conf"
    conf.write_text(
        "# comment\nsearch example.net\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\n"
        "nameserver localhost\nnameserver ::1\nnameserver 192.0.2.54\n"
    )
    assert system_nameservers(conf) == [("192.0.2.53", 53), ("fe80::1", 53), ("::1", 53)]
    assert system_nameservers(tmp_path / "missing") == [("127.0.0.1", 53)]


def test_the_command_needs_no_event_loop_nor_http(tmp_path: Path) -> None:
    """`ddnsagent dnsbl` asks in threads, blocking: no asyncio, no httpx (a dead resolver here,
    so the check is incomplete: exit 1, one line saying so)."""
    from tests.test_imports import run

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        path = write_config(
            tmp_path,
            f'[agent]\nstate_dir = "{tmp_path}/state"\n[detect]\nipv4 = ["web"]\n'
            f'[dnsbl]\nresolver = "127.0.0.1:{port}"\ntimeout = "0.5s"\n',
        )
        code, modules, out = run(["dnsbl", "--config", str(path), "192.0.2.1"])
    assert code == 1 and "incomplete" in out, out
    assert "dns.query" in modules  # it did ask
    assert not {"asyncio", "httpx", "ddnsagent.sync"} & modules
