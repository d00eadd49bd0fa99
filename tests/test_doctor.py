"""`ddnsagent doctor` against real servers on loopback: BIND's named serving a clean zone and a
wildcard zone, Postfix's own postconf on temporary main.cf files, and TCP listeners standing in
for the submission relay. Nothing is sent anywhere else: every resolver the doctor may ask —
the public ones included — is pointed at a named these tests started, or at a closed port.
"""

from __future__ import annotations

import io
import ipaddress
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ddnsagent import doctor
from ddnsagent.config import AgentConfig, Config, DetectConfig
from ddnsagent.doctor import STATUSES, Finding, Options
from ddnsagent.doctor.bounce import check_soft_bounce, judge_soft_bounce
from ddnsagent.doctor.domains import check_domains
from ddnsagent.doctor.mx import judge_mx
from ddnsagent.doctor.postfix import (
    RECIPIENT,
    RELAY,
    SENDER,
    check_postfix,
    judge_restrictions,
    parameters,
)
from ddnsagent.doctor.relay import check_relay, relay_address
from ddnsagent.doctor.resolvconf import check_resolv_conf, judge_nameservers, nameservers
from ddnsagent.doctor.servers import Answer, Server, parse_server
from ddnsagent.doctor.wildcard import judge_probe
from ddnsagent.relay.settings import RelayConfig
from ddnsagent.store import RelaySignal, Store
from ddnsagent.zones.base import ZoneCommon
from tests.doctor_servers import NAMED, Greeter, NamedServer, closed_port

POSTCONF = shutil.which("postconf")
needs_named = pytest.mark.skipif(NAMED is None, reason="needs BIND's named (Debian bind9)")
needs_postconf = pytest.mark.skipif(
    POSTCONF is None, reason="needs postconf (Debian package postfix)"
)

HEAD = "$TTL 300\n@ IN SOA ns hostmaster 1 3600 600 86400 300\n@ IN NS ns\nns IN A 127.0.0.1\n"
CLEAN = HEAD + (
    "@ IN A 192.0.2.10\n@ IN MX 10 mail\nmail IN A 192.0.2.10\nwww IN A 192.0.2.10\n"
    "shop IN A 192.0.2.10\nshop IN MX 10 mail\n"
)
WILD = HEAD + "@ IN A 192.0.2.20\n@ IN MX 10 mail\nmail IN A 192.0.2.20\n"
WILD += "* IN A 192.0.2.20\n* IN MX 10 mail\n"
MX_ONLY = HEAD + "@ IN MX 10 mail\nmail IN A 192.0.2.30\n* IN MX 10 mail\n"
NO_MX = HEAD + "@ IN A 192.0.2.40\n"
PROBE = "ddnsagent-probe-test"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NamedServer]:
    """The server's own DNS: one clean zone, and zones with the mistakes the doctor looks for."""
    if NAMED is None:
        pytest.skip("needs BIND's named (Debian bind9)")
    zones = {
        "clean.example": CLEAN,
        "wild.example": WILD,
        "mxonly.example": MX_ONLY,
        "nomx.example": NO_MX,
    }
    with NamedServer(tmp_path_factory.mktemp("named-home"), zones) as server:
        yield server


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NamedServer]:
    """The dynamic-DNS provider's view of clean.example: a wildcard answers every name."""
    if NAMED is None:
        pytest.skip("needs BIND's named (Debian bind9)")
    zones = {"clean.example": WILD}
    with NamedServer(tmp_path_factory.mktemp("named-provider"), zones) as server:
        yield server


def zone(origin: str, server: NamedServer | None, names: tuple[str, ...] = ("@",)) -> Any:
    verify = ("127.0.0.1", server.port) if server is not None else None
    iid = ipaddress.IPv6Address("::11")
    return ZoneCommon(
        name=origin.split(".")[0],
        type="zonefile",
        origin=origin + ".",
        names=names,
        hosts=(("nas", iid),),
        prefix_length=64,
        ttl=300,
        verify=verify,
    )


def config(tmp_path: Path, zones: tuple[Any, ...] = (), relay: str | None = None) -> Config:
    relay_cfg = RelayConfig(log=str(tmp_path / "mail.log"), host=relay) if relay else None
    agent = AgentConfig(state_dir=tmp_path / "state")
    return Config(tmp_path / "config.toml", agent, DetectConfig(), (), relay_cfg, None, zones)


def options(tmp_path: Path, **changes: Any) -> Options:
    """Everything local: resolv.conf in tmp_path, no public resolvers unless given, no
    Postfix, short timeouts. Tests that need more pass it in `changes`."""
    resolv = tmp_path / "resolv.conf"
    if not resolv.exists():
        resolv.write_text("nameserver 127.0.0.1\n")
    values: dict[str, Any] = {
        "resolv_conf": resolv,
        "postfix_resolv_conf": None,
        "resolver": None,
        "public_resolvers": (),
        "postconf": (str(tmp_path / "no-postconf"),),
        "dns_timeout": 0.5,
        "connect_timeout": 0.5,
        "probe_label": PROBE,
    }
    values.update(changes)
    if values["resolver"] is None:
        raise AssertionError("tests must name the resolver: resolv.conf's would be port 53")
    return Options(**values)


def by(findings: list[Finding], check: str) -> list[Finding]:
    return [f for f in findings if f.check == check]


def statuses(findings: list[Finding], check: str) -> list[str]:
    return [f.status for f in by(findings, check)]


# resolv.conf ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "status", "words"),
    [
        ("nameserver 127.0.0.1\n", "pass", "on this machine"),
        ("# generated\nnameserver ::1\noptions edns0\n", "pass", "on this machine"),
        ("nameserver 127.0.1.1\n", "pass", "on this machine"),
        ("nameserver 127.0.0.53\noptions edns0 trust-ad\n", "warn", "systemd-resolved"),
        ("nameserver 192.0.2.1\n", "fail", "not on this machine"),
        ("nameserver fe80::1%eth0\n", "fail", "not on this machine"),
        ("nameserver 127.0.0.1\nnameserver 192.0.2.1\n", "warn", "192.0.2.1 follows"),
        ("search example.net\n", "warn", "no nameserver"),
        ("", "warn", "no nameserver"),
    ],
)
def test_resolv_conf(tmp_path: Path, text: str, status: str, words: str) -> None:
    path = tmp_path / "resolv.conf"
    path.write_text(text)
    [finding] = check_resolv_conf(path)
    assert (finding.status, finding.check, finding.subject) == (status, "resolv.conf", str(path))
    assert words in finding.message
    if status == "fail":
        assert finding.fix is not None and "nameserver 127.0.0.1" in finding.fix
    if status == "warn" and "resolved" in words:
        assert finding.fix is not None and "Domains=~" in finding.fix


def test_resolv_conf_missing(tmp_path: Path) -> None:
    [finding] = check_resolv_conf(tmp_path / "absent")
    assert finding.status == "warn"
    assert "does not exist" in finding.message


def test_nameservers_only_first_three_count() -> None:
    text = "nameserver 127.0.0.1\nnameserver ::1\n;x\nnameserver 127.0.0.2\nnameserver 1.2.3.4\n"
    assert nameservers(text) == ["127.0.0.1", "::1", "127.0.0.2"]


def test_judge_nameservers_wants_loopback_literals() -> None:
    """glibc takes only addresses from nameserver lines: `localhost` is not on this machine."""
    finding = judge_nameservers("f", ["::1", "localhost"], "fix")
    assert finding.status == "warn" and "localhost follows" in finding.message
    assert judge_nameservers("f", ["127.0.0.1", "::1"], "fix").status == "pass"


def test_postfix_chroot_copy(tmp_path: Path) -> None:
    path, copy = tmp_path / "resolv.conf", tmp_path / "chroot-resolv.conf"
    path.write_text("nameserver 127.0.0.1\n")
    copy.write_text("nameserver 192.0.2.1\n")
    first, stale = check_resolv_conf(path, copy)
    assert first.status == "pass"
    assert stale.status == "warn" and stale.subject == str(copy)
    assert "192.0.2.1" in stale.message and stale.fix and "restart" in stale.fix
    copy.write_text("# same servers, other comments\nnameserver 127.0.0.1\n")
    assert [f.status for f in check_resolv_conf(path, copy)] == ["pass"]
    assert [f.status for f in check_resolv_conf(path, tmp_path / "none")] == ["pass"]


# wildcard and MX, against named ---------------------------------------------------------------


@needs_named
def test_clean_zone_passes(tmp_path: Path, home: NamedServer) -> None:
    cfg = config(tmp_path, (zone("clean.example", home, ("@", "mail", "www")),))
    found = check_domains(cfg, options(tmp_path, resolver=home.address))
    assert [(f.check, f.status) for f in found] == [("wildcard", "pass"), ("mx", "pass")]
    wildcard, mx = found
    assert wildcard.subject == f"clean.example. at zone server {home.address}"
    assert f"{PROBE}.clean.example. does not exist (NXDOMAIN)" in wildcard.message
    assert "MX 10 mail.clean.example." in mx.message


@needs_named
def test_wildcard_zone_fails(tmp_path: Path, home: NamedServer) -> None:
    cfg = config(tmp_path, (zone("wild.example", home, ("@", "www")),))
    found = check_domains(cfg, options(tmp_path, resolver=home.address))
    assert statuses(found, "wildcard") == ["fail"]
    [wildcard] = by(found, "wildcard")
    assert "A 192.0.2.20" in wildcard.message
    assert wildcard.fix is not None and "remove the wildcard" in wildcard.fix
    assert "publish MX only at the apex" in wildcard.fix
    # MX at the apex is fine; the wildcard MX is not; www is not reported on top of it
    assert statuses(found, "mx") == ["pass", "fail"]
    wild_mx = by(found, "mx")[1]
    assert wild_mx.subject == "*.wild.example."
    assert "MX 10 mail.wild.example." in wild_mx.message


@needs_named
def test_wildcard_mx_alone_is_found(tmp_path: Path, home: NamedServer) -> None:
    """`* MX` without `* A`: the probe exists without an A record."""
    cfg = config(tmp_path, (zone("mxonly.example", home),))
    found = check_domains(cfg, options(tmp_path, resolver=home.address))
    [wildcard] = by(found, "wildcard")
    assert wildcard.status == "fail"
    assert "no A record: a wildcard of another type" in wildcard.message
    assert statuses(found, "mx") == ["pass", "fail"]


@needs_named
def test_mx_at_other_managed_name_warns(tmp_path: Path, home: NamedServer) -> None:
    cfg = config(tmp_path, (zone("clean.example", home, ("@", "shop", "www")),))
    found = check_domains(cfg, options(tmp_path, resolver=home.address))
    assert statuses(found, "mx") == ["pass", "warn"]
    shop = by(found, "mx")[1]
    assert shop.subject == "shop.clean.example."
    assert shop.fix is not None and "remove the MX at shop.clean.example." in shop.fix


@needs_named
def test_no_mx_at_apex_warns(tmp_path: Path, home: NamedServer) -> None:
    found = check_domains(
        config(tmp_path, (zone("nomx.example", home),)), options(tmp_path, resolver=home.address)
    )
    assert statuses(found, "wildcard") == ["pass"]
    [mx] = by(found, "mx")
    assert mx.status == "warn" and "no MX at the apex" in mx.message
    assert mx.fix is not None and "IN MX 10 mail.nomx.example." in mx.fix


@needs_named
def test_domains_option_and_resolver_view(tmp_path: Path, home: NamedServer) -> None:
    """A domain without a [[zone]] is probed through the resolver alone."""
    opts = options(tmp_path, resolver=home.address, domains=("Wild.Example.",))
    found = check_domains(config(tmp_path), opts)
    [wildcard] = by(found, "wildcard")
    assert wildcard.subject == f"wild.example. at resolver {home.address}"
    assert wildcard.status == "fail"


@needs_named
def test_resolver_that_misses_the_local_zone(
    tmp_path: Path, home: NamedServer, provider: NamedServer
) -> None:
    """The zone server is clean, but the resolver Postfix asks sees the provider's wildcard."""
    cfg = config(tmp_path, (zone("clean.example", home, ("@", "www")),))
    found = check_domains(cfg, options(tmp_path, resolver=provider.address))
    zone_view, resolver_view = by(found, "wildcard")
    assert zone_view.status == "pass"
    assert resolver_view.status == "fail"
    assert resolver_view.subject == f"clean.example. at resolver {provider.address}"
    assert resolver_view.fix is not None and "does not use your local zone" in resolver_view.fix
    # the MX layout is judged as Postfix sees it: through that resolver
    assert statuses(found, "mx") == ["pass", "fail"]


@needs_named
def test_public_resolvers(tmp_path: Path, home: NamedServer, provider: NamedServer) -> None:
    """A wildcard in public DNS warns (the provider's, often not ours to remove); an
    unreachable public resolver is skipped."""
    silent = f"127.0.0.1:{closed_port()}"
    opts = options(
        tmp_path,
        resolver=home.address,
        public_resolvers=(provider.address, home.address, silent),
    )
    found = check_domains(config(tmp_path, (zone("clean.example", home),)), opts)
    views = by(found, "wildcard")
    assert [f.status for f in views] == ["pass", "warn", "pass", "skip"]
    assert views[1].subject == f"clean.example. at public resolver {provider.address}"
    assert "to the world" in views[1].message
    assert views[3].message.startswith("not reachable (no answer")
    assert statuses(found, "mx") == ["pass"]


@needs_named
def test_silent_local_server_fails(tmp_path: Path, home: NamedServer) -> None:
    dead = ("127.0.0.1", closed_port())
    settings = zone("clean.example", None)
    settings = ZoneCommon(**{**settings.__dict__, "verify": dead})
    found = check_domains(config(tmp_path, (settings,)), options(tmp_path, resolver=home.address))
    dead_view, resolver_view = by(found, "wildcard")
    assert dead_view.status == "fail" and "no answer within 0.5s" in dead_view.message
    assert dead_view.fix is not None and "start the local DNS server" in dead_view.fix
    assert resolver_view.status == "pass"
    assert statuses(found, "mx") == ["pass"]


@needs_named
def test_server_that_refuses(tmp_path: Path, home: NamedServer) -> None:
    """named answers REFUSED for a zone it does not serve: warn (skip when public), and no
    MX check there."""
    opts = options(
        tmp_path,
        resolver=home.address,
        public_resolvers=(home.address,),
        domains=("elsewhere.example",),
    )
    found = check_domains(config(tmp_path), opts)
    assert [(f.check, f.status) for f in found] == [
        ("wildcard", "warn"),
        ("wildcard", "skip"),  # a public resolver's refusal says nothing about the domain
        ("mx", "skip"),
    ]
    assert "answered REFUSED" in found[0].message


def test_judge_probe_on_plain_values() -> None:
    resolver = Server("127.0.0.1", 5353, "resolver")
    wildcard = Answer("NOERROR", ("A 192.0.2.1",))
    probe = "p.example.net."
    plain = judge_probe("example.net.", resolver, probe, wildcard, clean_zone=False)
    assert plain.status == "fail" and plain.subject == "example.net. at resolver 127.0.0.1:5353"
    assert plain.fix is not None and "remove the wildcard" in plain.fix
    behind = judge_probe("example.net.", resolver, probe, wildcard, clean_zone=True)
    assert behind.fix is not None and "does not use your local zone" in behind.fix
    public = Server("::1", 53, "public resolver")
    silent = judge_probe("example.net.", public, probe, Answer("", error="no answer"), False)
    assert (silent.status, silent.subject) == ("skip", "example.net. at public resolver [::1]")


def test_judge_mx_on_plain_values() -> None:
    mx = Answer("NOERROR", ("MX 10 mail.example.net.",))
    found = judge_mx(
        "example.net.",
        "(asked resolver 127.0.0.1)",
        "p.example.net.",
        mx,
        Answer("NXDOMAIN"),
        {"shop.example.net.": mx, "www.example.net.": Answer("NOERROR")},
    )
    assert [(f.status, f.subject) for f in found] == [
        ("pass", "example.net."),
        ("warn", "shop.example.net."),
    ]
    assert "mail for @shop.example.net is accepted too" in found[1].message
    # a wildcard MX is reported once; an apex that did not answer is not judged
    found = judge_mx("example.net.", "", "p.example.net.", Answer("", error="x"), mx, {})
    assert [(f.status, f.subject) for f in found] == [("fail", "*.example.net.")]


def test_bad_resolver_addresses_are_reported(tmp_path: Path) -> None:
    opts = options(
        tmp_path, resolver="localhost:53", public_resolvers=("dns.google",), domains=("x.example",)
    )
    found = check_domains(config(tmp_path), opts)
    assert [(f.subject, f.status) for f in found] == [
        ("resolver", "fail"),
        ("public resolver", "fail"),
        ("x.example.", "skip"),
    ]


def test_no_domain_warns(tmp_path: Path) -> None:
    found = check_domains(config(tmp_path), options(tmp_path, resolver="127.0.0.1:9"))
    assert [(f.check, f.status) for f in found] == [("wildcard", "warn")]
    assert found[0].fix is not None and "[[zone]]" in found[0].fix


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.1.1.1", ("1.1.1.1", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("::1", ("::1", 53)),
        ("[::1]:5353", ("::1", 5353)),
    ],
)
def test_parse_server(text: str, expected: tuple[str, int]) -> None:
    assert parse_server(text) == expected


@pytest.mark.parametrize("text", ["dns.google", "127.0.0.1:x", "[::1]5353", "127.0.0.1:70000"])
def test_parse_server_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_server(text)


# Postfix --------------------------------------------------------------------------------------

BEFORE = (  # the incident's configuration before the fix
    "smtpd_sender_restrictions =\n"
    "smtpd_recipient_restrictions = permit_sasl_authenticated, permit_mynetworks,\n"
    "    reject_unauth_destination\n"
)
AFTER = (
    "smtpd_sender_restrictions = reject_unknown_sender_domain\n"
    "smtpd_recipient_restrictions = permit_sasl_authenticated, permit_mynetworks,\n"
    "    reject_unauth_destination, reject_unknown_recipient_domain\n"
)


def postfix_dir(tmp_path: Path, main_cf: str) -> Path:
    d = tmp_path / "postfix"
    d.mkdir(exist_ok=True)
    write_main_cf(d, main_cf)
    (d / "master.cf").write_text("")
    return d


def write_main_cf(d: Path, text: str) -> None:
    """Dated a minute back: Postfix waits (up to 2 s) for a main.cf younger than that to
    settle before it reads it."""
    path = d / "main.cf"
    path.write_text("compatibility_level = 3.6\n" + text)
    past = time.time() - 60
    os.utime(path, (past, past))


def run_postconf(d: Path, mail_server: bool = True) -> list[Finding]:
    assert POSTCONF is not None
    return check_postfix((POSTCONF, "-c", str(d)), 10.0, mail_server)


@needs_postconf
def test_postfix_with_the_fix(tmp_path: Path) -> None:
    found = run_postconf(postfix_dir(tmp_path, AFTER))
    assert [(f.subject, f.status) for f in found] == [
        ("reject_unauth_destination", "pass"),
        ("reject_unknown_recipient_domain", "pass"),
        ("reject_unknown_sender_domain", "pass"),
    ]


@needs_postconf
def test_postfix_before_the_fix_and_its_lines_work(tmp_path: Path) -> None:
    d = postfix_dir(tmp_path, BEFORE)
    found = run_postconf(d)
    assert [f.status for f in found] == ["pass", "fail", "fail"]
    recipient, sender = found[1].fix, found[2].fix
    assert recipient is not None and sender is not None
    assert (
        "`smtpd_recipient_restrictions = permit_sasl_authenticated, permit_mynetworks, "
        "reject_unauth_destination, reject_unknown_recipient_domain`" in recipient
    )
    assert "`smtpd_sender_restrictions = reject_unknown_sender_domain`" in sender
    # the lines, as given, make the checks pass
    lines = [fix.split("`")[1] for fix in (recipient, sender)]
    write_main_cf(d, "\n".join(lines) + "\n")
    assert [f.status for f in run_postconf(d)] == ["pass", "pass", "pass"]


@needs_postconf
def test_postfix_defaults_only_defer(tmp_path: Path) -> None:
    """Postfix's default relay restrictions end in defer_unauth_destination: warned."""
    found = run_postconf(postfix_dir(tmp_path, ""))
    assert [f.status for f in found] == ["warn", "fail", "fail"]
    assert found[0].fix is not None
    assert (
        "`smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, "
        "reject_unauth_destination`" in found[0].fix
    )


def test_postconf_missing(tmp_path: Path) -> None:
    absent = (str(tmp_path / "postconf"),)
    [finding] = check_postfix(absent, 5.0, mail_server=False)
    assert finding.status == "skip" and "not installed" in finding.message
    [finding] = check_postfix(absent, 5.0, mail_server=True)
    assert finding.status == "warn"


@needs_postconf
def test_postconf_failing(tmp_path: Path) -> None:
    assert POSTCONF is not None
    [finding] = check_postfix((POSTCONF, "-c", str(tmp_path / "nope")), 5.0, True)
    assert finding.status == "warn" and "main.cf" in finding.message


def test_postconf_not_executable(tmp_path: Path) -> None:
    """A postconf that exists but cannot be started is not "not installed": warned always."""
    script = tmp_path / "postconf"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o644)
    [finding] = check_postfix((str(script),), 5.0, mail_server=False)
    assert finding.status == "warn" and "could not be started" in finding.message


def test_postconf_missing_a_parameter(tmp_path: Path) -> None:
    """A parameter postconf does not print (it warns on stderr instead) is not judged."""
    script = tmp_path / "postconf"
    script.write_text(
        "#!/bin/sh\n"
        f"echo '{RECIPIENT} = reject_unauth_destination'\n"
        f"echo '{RELAY} ='\n"
        f"echo 'postconf: warning: {SENDER}: unknown parameter' >&2\n"
    )
    script.chmod(0o755)
    [finding] = check_postfix((str(script),), 5.0, mail_server=True)
    assert finding.status == "warn"
    assert finding.message.endswith(f"postconf: warning: {SENDER}: unknown parameter")


def test_postconf_output_keeps_empty_values() -> None:
    output = f"{RECIPIENT} = permit_mynetworks, reject_unauth_destination\n{SENDER} =\n"
    assert parameters(output) == {
        RECIPIENT: "permit_mynetworks, reject_unauth_destination",
        SENDER: "",
    }


def test_judge_restrictions_nothing_at_all() -> None:
    found = judge_restrictions({})
    assert [f.status for f in found] == ["fail", "fail", "fail"]
    assert found[0].fix == found[1].fix  # both go into smtpd_recipient_restrictions, one line
    assert found[0].fix is not None and (
        "`smtpd_recipient_restrictions = reject_unauth_destination, "
        "reject_unknown_recipient_domain`" in found[0].fix
    )


def test_judge_restrictions_places_words_before_a_final_permit() -> None:
    found = judge_restrictions(
        {
            RELAY: "permit_mynetworks reject_unauth_destination",
            RECIPIENT: "permit_mynetworks, permit",
            SENDER: "permit_mynetworks,permit",
        }
    )
    assert [f.status for f in found] == ["pass", "fail", "fail"]
    assert found[1].fix is not None and (
        "= permit_mynetworks, reject_unknown_recipient_domain, permit`" in found[1].fix
    )
    assert found[2].fix is not None and (
        "= permit_mynetworks, reject_unknown_sender_domain, permit`" in found[2].fix
    )


def test_judge_restrictions_accepts_any_place_that_works() -> None:
    found = judge_restrictions(
        {
            RELAY: "reject_unauth_destination, reject_unknown_recipient_domain",
            RECIPIENT: "reject_unknown_sender_domain",
            SENDER: "",
        }
    )
    assert [f.status for f in found] == ["pass", "pass", "pass"]


# the relay ------------------------------------------------------------------------------------


def test_relay_greets(tmp_path: Path) -> None:
    with Greeter(b"220 relay.test ESMTP\r\n") as relay:
        [finding] = check_relay(
            config(tmp_path, relay="127.0.0.1"),
            options(tmp_path, resolver="127.0.0.1:9", relay_port=relay.port),
        )
    assert finding.status == "pass"
    assert finding.subject == f"127.0.0.1:{relay.port}"
    assert "220 relay.test ESMTP" in finding.message
    assert b"QUIT\r\n" in b"".join(relay.received)


def test_relay_port_from_the_host(tmp_path: Path) -> None:
    with Greeter(b"220 relay.test ESMTP\r\n") as relay:
        cfg = config(tmp_path, relay=f"[127.0.0.1]:{relay.port}")
        [finding] = check_relay(cfg, options(tmp_path, resolver="127.0.0.1:9"))
    assert finding.status == "pass"


def test_relay_closed_port(tmp_path: Path) -> None:
    opts = options(tmp_path, resolver="127.0.0.1:9", relay_port=closed_port())
    [finding] = check_relay(config(tmp_path, relay="127.0.0.1"), opts)
    assert finding.status == "fail"
    assert "cannot connect" in finding.message and "refused" in finding.message.lower()


def test_relay_silent_and_refusing(tmp_path: Path) -> None:
    with Greeter(None) as relay:
        opts = options(tmp_path, resolver="127.0.0.1:9", relay_port=relay.port)
        [finding] = check_relay(config(tmp_path, relay="127.0.0.1"), opts)
    assert finding.status == "warn" and "no greeting within 0.5s" in finding.message
    with Greeter(b"421 4.7.0 too much mail from 192.0.2.7\r\n") as relay:
        opts = options(tmp_path, resolver="127.0.0.1:9", relay_port=relay.port)
        [finding] = check_relay(config(tmp_path, relay="127.0.0.1"), opts)
    assert finding.status == "fail" and "too much mail" in finding.message


def test_no_relay_configured(tmp_path: Path) -> None:
    [finding] = check_relay(config(tmp_path), options(tmp_path, resolver="127.0.0.1:9"))
    assert finding.status == "skip"


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("auth.gate-on.net", None, ("auth.gate-on.net", 587)),
        ("[auth.gate-on.net]:2525", None, ("auth.gate-on.net", 2525)),
        ("auth.gate-on.net:465", None, ("auth.gate-on.net", 465)),
        ("[auth.gate-on.net]:2525", 587, ("auth.gate-on.net", 587)),
        ("2001:db8::25", None, ("2001:db8::25", 587)),
        ("[ipv6:2001:db8::25]:2525", None, ("2001:db8::25", 2525)),
        ("[IPv6:2001:db8::25]", None, ("2001:db8::25", 587)),
    ],
)
def test_relay_address(host: str, port: int | None, expected: tuple[str, int]) -> None:
    assert relay_address(host, port) == expected


# the whole command ----------------------------------------------------------------------------


@needs_named
@needs_postconf
def test_main_all_pass(tmp_path: Path, home: NamedServer) -> None:
    # the bounce guard is on with [relay] (bounce_limit 30): bounces get README's transport
    d = postfix_dir(
        tmp_path,
        AFTER + "sender_dependent_default_transport_maps = inline:{<>=bounce-relay:}\n"
        "bounce-relay_destination_rate_delay = 30s\n",
    )
    (d / "master.cf").write_text("bounce-relay unix - - n - - smtp\n")
    assert POSTCONF is not None
    with Greeter(b"220 relay.test ESMTP\r\n") as relay:
        cfg = config(tmp_path, (zone("clean.example", home),), relay="127.0.0.1")
        opts = options(
            tmp_path,
            resolver=home.address,
            public_resolvers=(home.address,),
            postconf=(POSTCONF, "-c", str(d)),
            relay_port=relay.port,
        )
        out = io.StringIO()
        code = doctor.main(cfg, False, out, opts)
    text = out.getvalue()
    assert code == 0, text
    lines = text.splitlines()
    assert (
        lines[0]
        == f"pass  resolv.conf {tmp_path / 'resolv.conf'}: nameserver 127.0.0.1 is on this machine"
    )
    assert all(line.startswith("pass  ") for line in lines[:-1])
    # 9: issue 12 item 5 added the soft_bounce hint (a pass while no mail has bounced);
    # 10: the bounce guard's transport (issue 14)
    assert lines[-1] == "10 pass, 0 warn, 0 fail, 0 skip"
    assert "fix:" not in text


@needs_named
def test_main_json_and_exit_code(tmp_path: Path, home: NamedServer) -> None:
    cfg = config(tmp_path, (zone("wild.example", home),))
    out = io.StringIO()
    code = doctor.main(cfg, True, out, options(tmp_path, resolver=home.address))
    assert code == 1
    data = json.loads(out.getvalue())
    assert set(data) == {"ok", "counts", "checks"}
    assert data["ok"] is False
    assert set(data["counts"]) == {"pass", "warn", "fail", "skip"}
    assert sum(data["counts"].values()) == len(data["checks"])
    for item in data["checks"]:
        assert set(item) == {"check", "status", "subject", "message", "fix"}
        assert item["status"] in STATUSES
        assert item["check"] in ("resolv.conf", "wildcard", "mx", "postfix", "relay")
    checks = [(c["check"], c["status"]) for c in data["checks"]]
    assert checks == [
        ("resolv.conf", "pass"),
        ("wildcard", "fail"),
        ("mx", "pass"),
        ("mx", "fail"),
        ("postfix", "skip"),
        ("relay", "skip"),
    ]
    assert data["counts"] == {"pass": 2, "warn": 0, "fail": 2, "skip": 2}


def test_main_human_output_shows_fixes(tmp_path: Path) -> None:
    (tmp_path / "resolv.conf").write_text("nameserver 192.0.2.1\n")
    out = io.StringIO()
    code = doctor.main(config(tmp_path), False, out, options(tmp_path, resolver="127.0.0.1:9"))
    assert code == 1
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("FAIL  resolv.conf ")
    assert lines[1].startswith("      fix: write `nameserver 127.0.0.1`")
    assert lines[2].startswith("WARN  wildcard domains: no managed domain to check")
    assert lines[-1] == "0 pass, 1 warn, 1 fail, 2 skip"


def test_default_options_are_for_real_use() -> None:
    """The defaults name the real machine's files and the public resolvers; tests never use
    them (see `options()`)."""
    opts = Options()
    assert opts.resolv_conf == Path("/etc/resolv.conf")
    assert opts.public_resolvers == ("1.1.1.1", "8.8.8.8")
    assert opts.relay_port is None
    assert opts.probe_label.startswith("ddnsagent-probe-")
    assert opts.probe_label != Options().probe_label


# soft_bounce (issue 12 item 5) ------------------------------------------------------------------

BOUNCED = RelaySignal(
    1_800_000_000.0,
    "relay_denied",
    "postfix/smtp[9856]: 3B2A9821F1: host relay[192.0.2.30] said: 554 5.7.1 <me@example.com>: "
    "Relay access denied (in reply to RCPT TO command)",
)
DEFAULTS = {"soft_bounce": "no", "smtp_sasl_auth_soft_bounce": "yes", "default_transport": "smtp"}


def test_soft_bounce_off_is_a_hint_until_the_relay_bounces_mail() -> None:
    [hint] = judge_soft_bounce(DEFAULTS, {}, None)
    assert (hint.check, hint.subject, hint.status) == ("postfix", "soft_bounce", "pass")
    assert "bounces the mail to its sender for good" in hint.message
    assert "-o soft_bounce=yes" in hint.message and "senders are then not told" in hint.message
    [warned] = judge_soft_bounce(DEFAULTS, {}, BOUNCED)
    assert warned.status == "warn" and "Relay access denied" in warned.message
    fix = warned.fix or ""
    assert "-o soft_bounce=yes" in fix and "`smtp unix … smtp`" in fix
    assert "soft_bounce = yes" in fix and "smtp_delivery_status_filter" in fix
    assert "senders are not told" in fix and "maximal_queue_lifetime" in fix


@pytest.mark.parametrize(
    ("values", "overrides", "where"),
    [
        ({**DEFAULTS, "soft_bounce": "yes"}, {}, "main.cf"),
        (DEFAULTS, {"smtp/unix/soft_bounce": "yes"}, "smtp transport in master.cf"),
        (
            {**DEFAULTS, "default_transport": "relayout:[relay.example]:587"},
            {"relayout/unix/soft_bounce": "yes"},
            "relayout transport",
        ),
    ],
)
def test_soft_bounce_on(values: dict[str, str], overrides: dict[str, str], where: str) -> None:
    [finding] = judge_soft_bounce(values, overrides, BOUNCED)
    assert finding.status == "pass" and where in finding.message
    assert "senders are not told" in finding.message  # the risk, said even when it is on


def test_soft_bounce_on_another_transport_does_not_count() -> None:
    [finding] = judge_soft_bounce(DEFAULTS, {"relay/unix/soft_bounce": "yes"}, BOUNCED)
    assert finding.status == "warn"


def test_sasl_soft_bounce_turned_off_is_warned() -> None:
    found = judge_soft_bounce({**DEFAULTS, "smtp_sasl_auth_soft_bounce": "no"}, {}, None)
    assert [(f.subject, f.status) for f in found] == [
        ("soft_bounce", "pass"),
        ("smtp_sasl_auth_soft_bounce", "warn"),
    ]


@needs_postconf
def test_soft_bounce_asked_of_real_postconf(tmp_path: Path) -> None:
    d = postfix_dir(tmp_path, AFTER)
    assert POSTCONF is not None
    postconf = (POSTCONF, "-c", str(d))
    [finding] = check_soft_bounce(postconf, 10.0, BOUNCED)
    assert finding.status == "warn"
    # The fix's master.cf form, as written, is what postconf -P reports and the check accepts.
    (d / "master.cf").write_text(
        "smtp      unix  -       -       n       -       -       smtp\n  -o soft_bounce=yes\n"
    )
    [finding] = check_soft_bounce(postconf, 10.0, BOUNCED)
    assert finding.status == "pass" and "master.cf" in finding.message


def test_soft_bounce_says_nothing_without_postfix(tmp_path: Path) -> None:
    assert check_soft_bounce((str(tmp_path / "no-postconf"),), 5.0, BOUNCED) == []


@needs_postconf
def test_doctor_warns_when_the_watchdog_saw_a_hard_bounce(tmp_path: Path) -> None:
    """The watchdog records the relay's last 5xx bounce in the state; the doctor reads it."""
    assert POSTCONF is not None
    cfg = config(tmp_path, relay="127.0.0.1")
    with Store.of(cfg.agent).edit() as state:
        state.relay.last_bounced = BOUNCED
    opts = options(
        tmp_path,
        resolver="127.0.0.1:9",
        postconf=(POSTCONF, "-c", str(postfix_dir(tmp_path, AFTER))),
        relay_port=closed_port(),
    )
    [finding] = [f for f in doctor.run(cfg, opts) if f.subject == "soft_bounce"]
    assert finding.status == "warn" and "554 5.7.1" in finding.message
