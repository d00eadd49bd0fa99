"""The worked example packaging/examples/flets-mydns/ (issue 13, item 10): a FLET'S PPPoE line,
MyDNS.JP, MyDNS's submission relay and a local BIND zone, put together.

Each file of the example is used as the user is told to use it: the ddnsagent configuration goes
through `ddnsagent check-config` (with the MyDNS password as the systemd credential the drop-in
loads), the zone through `named-checkzone` and a real named, the Postfix lines through the real
`postconf`, and the doctor judges the three together. The systemd drop-ins are verified against
the shipped units with `systemd-analyze`, and the reconnect script is run with stand-ins for
`poff`/`pon`. Only what the test must move is changed: the paths of the zone, the mail log and
the state go into tmp_path, the zone server's port is the test's named, and the relay is a
greeter on loopback (the doctor never leaves 127.0.0.1).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dns.rdatatype
import dns.zone
import pytest

from ddnsagent import config, doctor
from ddnsagent.doctor import Options, bouncewait
from tests.doctor_servers import NAMED, Greeter, NamedServer

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "packaging" / "examples" / "flets-mydns"
CONFIG = EXAMPLE / "config.toml"
ZONE = EXAMPLE / "bind" / "db.example.net"
MAIN_CF = EXAMPLE / "postfix" / "main.cf"
MASTER_CF = EXAMPLE / "postfix" / "master.cf"
RECONNECT_SCRIPT = EXAMPLE / "ppp" / "ppp-reconnect"
SERVICE_DROPIN = EXAMPLE / "systemd" / "ddnsagent.service.d" / "flets-mydns.conf"
RECONNECT_DROPIN = EXAMPLE / "systemd" / "ddnsagent-reconnect.service.d" / "flets.conf"
UNITS = ROOT / "packaging" / "systemd"
ORIGIN = "example.net"
POSTCONF = shutil.which("postconf") or (
    "/usr/sbin/postconf" if Path("/usr/sbin/postconf").exists() else None
)
CHECKZONE = shutil.which("named-checkzone") or (
    "/usr/bin/named-checkzone" if Path("/usr/bin/named-checkzone").exists() else None
)
SECRET = "example-password-for-the-test"


def run(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, env=env)


def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def installed(tmp_path: Path, zone_port: int = 53) -> Path:
    """The example configuration as installed on the server, with the machine's paths moved
    into tmp_path (each replacement must match, so the example cannot drift from the test)."""
    if not user_exists("bind"):
        pytest.skip("needs the user bind (Debian package bind9), which owners names")
    text = CONFIG.read_text(encoding="utf-8")
    zones = tmp_path / "bind"
    zones.mkdir(exist_ok=True)
    shutil.copy(ZONE, zones / ZONE.name)
    log = tmp_path / "mail.log"
    log.touch()
    replacements = {
        "[agent]\n": f'[agent]\nstate_dir = "{tmp_path / "state"}"\n',
        '"/var/lib/bind/db.example.net"': f'"{zones / ZONE.name}"',
        '"/var/log/mail.log"': f'"{log}"',
        'verify = "127.0.0.1:53"': f'verify = "127.0.0.1:{zone_port}"',
    }
    if not user_exists("ddnsagent"):
        # the package's sysusers.d makes this user; on a machine without the package the user
        # running the test stands in for it
        me = pwd.getpwuid(os.geteuid()).pw_name
        replacements['owners = ["bind", "ddnsagent"]'] = f'owners = ["bind", "{me}"]'
    for old, new in replacements.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def credentials(tmp_path: Path) -> Path:
    """What systemd's LoadCredential=mydns:… of the drop-in gives the service."""
    d = tmp_path / "credentials"
    d.mkdir(mode=0o700)
    (d / "mydns").write_text(SECRET + "\n")
    return d


def check_config(path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "ddnsagent", "check-config", str(path)], env=env)


# -- the ddnsagent configuration -----------------------------------------------------------------


def test_check_config_accepts_the_example_under_its_credential(tmp_path: Path) -> None:
    path = installed(tmp_path)
    base = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}
    r = check_config(path, {**base, "CREDENTIALS_DIRECTORY": str(credentials(tmp_path))})
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{path}: configuration is valid" in r.stdout
    assert "[[provider]] mydns mydns, IPv4" in r.stdout
    assert "warning" not in r.stdout + r.stderr
    assert SECRET not in r.stdout + r.stderr
    # without the credential (run by hand, outside the unit) the secret is named as missing
    bare = check_config(path, base)
    assert "cred:mydns is read from systemd's $CREDENTIALS_DIRECTORY" in bare.stdout
    assert "LoadCredential=mydns:" in bare.stdout


def test_example_settings_agree_with_the_units_and_main_cf(tmp_path: Path) -> None:
    cfg = config.load(installed(tmp_path))
    assert cfg.relay is not None and cfg.reconnect is not None
    # the relay the watchdog watches is the one Postfix sends through
    relayhost = re.search(r"^relayhost = \[([^\]]+)\]:(\d+)$", MAIN_CF.read_text(), re.M)
    assert relayhost, "main.cf sets no relayhost = [HOST]:PORT"
    assert (relayhost.group(1), relayhost.group(2)) == (cfg.relay.host, "587")
    # the reconnect: the root oneshot, waited for longer than the oneshot may take
    assert list(cfg.reconnect.command) == ["systemctl", "start", "ddnsagent-reconnect.service"]
    unit = (UNITS / "ddnsagent-reconnect.service").read_text()
    limit = re.search(r"^TimeoutStartSec=(\d+)$", unit, re.M)
    assert limit and cfg.reconnect.timeout > int(limit.group(1))
    # the keepalive that keeps MyDNS's relay accepting the address (README.md of the example)
    (mydns,) = cfg.providers
    assert mydns.type == "mydns" and mydns.keepalive <= 24 * 3600
    (zone,) = cfg.zones
    assert zone.origin == ORIGIN + "."
    assert set(zone.names) == {"@", "mail"}


# -- the BIND zone -------------------------------------------------------------------------------


def test_zone_passes_named_checkzone_and_has_mx_at_the_apex_only(tmp_path: Path) -> None:
    if CHECKZONE is None:
        pytest.skip("needs named-checkzone (Debian package bind9-utils)")
    r = run([CHECKZONE, ORIGIN, str(ZONE)])
    assert r.returncode == 0, r.stdout + r.stderr
    zone = dns.zone.from_text(ZONE.read_text(), origin=ORIGIN, relativize=True)
    mx_at = sorted(str(name) for name, node in zone.nodes.items() if node.get_rdataset(1, 15))
    assert mx_at == ["@"]
    assert not any(str(name).startswith("*") for name in zone.nodes)
    assert zone.get_rdataset("mail", dns.rdatatype.A) is not None


# -- the doctor on the example's Postfix and BIND ------------------------------------------------


@pytest.fixture
def named_with_the_zone(tmp_path: Path) -> Iterator[NamedServer]:
    if NAMED is None:
        pytest.skip("needs BIND's named (Debian bind9)")
    with NamedServer(tmp_path / "named", {ORIGIN: ZONE.read_text()}) as server:
        yield server


def postfix_with_the_example(tmp_path: Path, extra: str = "") -> Path:
    """A Postfix configuration directory: a fresh main.cf and master.cf with the example's lines
    added."""
    d = tmp_path / "postfix"
    d.mkdir()
    main = d / "main.cf"
    main.write_text("compatibility_level = 3.6\n" + MAIN_CF.read_text() + extra)
    past = time.time() - 60  # postconf waits for a main.cf younger than a minute to settle
    os.utime(main, (past, past))
    (d / "master.cf").write_text(MASTER_CF.read_text())
    return d


def run_doctor(tmp_path: Path, server: NamedServer, postfix: Path) -> list[doctor.Finding]:
    assert POSTCONF is not None
    cfg = config.load(installed(tmp_path, zone_port=server.port))
    with Greeter(b"220 auth.gate-on.net ESMTP\r\n", hold=0.5) as relay:
        options = Options(
            resolv_conf=EXAMPLE / "resolv.conf",
            postfix_resolv_conf=None,
            resolver=server.address,  # the example's resolv.conf: the local named
            public_resolvers=(),
            postconf=(POSTCONF, "-c", str(postfix)),
            relay_host="127.0.0.1",
            relay_port=relay.port,
            dns_timeout=2.0,
            connect_timeout=2.0,
            probe_label="ddnsagent-probe-example",
        )
        return doctor.run(cfg, options)


def test_doctor_passes_the_examples_postfix_and_bind(
    tmp_path: Path, named_with_the_zone: NamedServer
) -> None:
    if POSTCONF is None:
        pytest.skip("needs postconf (Debian package postfix)")
    findings = run_doctor(tmp_path, named_with_the_zone, postfix_with_the_example(tmp_path))
    shown = "\n".join(f"{f.check} {f.status} {f.subject}: {f.message}" for f in findings)
    checks = {f.check for f in findings}
    assert {"resolv.conf", "wildcard", "mx", "postfix", "relay"} <= checks, shown
    assert [f for f in findings if f.status not in ("pass", "skip")] == [], shown
    postfix = {f.subject for f in findings if f.check == "postfix" and f.status == "pass"}
    assert {"reject_unknown_recipient_domain", "reject_unknown_sender_domain"} <= postfix
    assert bouncewait.SUBJECT in postfix, shown  # bounces wait where the bounce guard holds them


def test_doctor_fails_the_example_without_its_restrictions(
    tmp_path: Path, named_with_the_zone: NamedServer
) -> None:
    """The same run with the restrictions taken back out: the doctor must notice."""
    if POSTCONF is None:
        pytest.skip("needs postconf (Debian package postfix)")
    undo = "smtpd_recipient_restrictions =\nsmtpd_sender_restrictions =\n"
    findings = run_doctor(tmp_path, named_with_the_zone, postfix_with_the_example(tmp_path, undo))
    failed = {f.subject for f in findings if f.check == "postfix" and f.status == "fail"}
    assert failed == {"reject_unknown_recipient_domain", "reject_unknown_sender_domain"}


# -- the systemd drop-ins and the reconnect script -----------------------------------------------


@pytest.fixture
def unit_root(tmp_path: Path) -> Path:
    """The host's units, ours in /etc/systemd/system with the example's drop-ins, and stubs for
    the commands they run, for `systemd-analyze --root`."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("needs systemd-analyze (Debian package systemd)")
    host = next(
        (
            p
            for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))
            if (p / "sysinit.target").exists()
        ),
        None,
    )
    if host is None:
        pytest.skip("no systemd unit directory with sysinit.target on this machine")
    root = tmp_path / "root"
    shutil.copytree(host, root / "usr/lib/systemd/system", symlinks=True)
    for stub in ("usr/bin/ddnsagent", "usr/local/sbin/ppp-reconnect", "bin/kill"):
        path = root / stub
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    etc = root / "etc/systemd/system"
    for unit, dropin in (
        ("ddnsagent.service", SERVICE_DROPIN),
        ("ddnsagent-reconnect.service", RECONNECT_DROPIN),
    ):
        (etc / f"{unit}.d").mkdir(parents=True)
        shutil.copy(UNITS / unit, etc)
        shutil.copy(dropin, etc / f"{unit}.d")
    return root


def test_dropins_verify_without_a_warning(unit_root: Path) -> None:
    r = run(
        [
            "systemd-analyze",
            "verify",
            "--man=no",
            f"--root={unit_root}",
            "ddnsagent.service",
            "ddnsagent-reconnect.service",
        ],
        env={**os.environ, "SYSTEMD_PAGER": ""},
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout + r.stderr == ""


def settings(*paths: Path) -> dict[str, list[str]]:
    """Key → values as systemd merges them: an empty assignment clears the list."""
    out: dict[str, list[str]] = {}
    for path in paths:
        for line in path.read_text().splitlines():
            if not line.strip() or line.lstrip().startswith(("#", ";", "[")):
                continue
            key, _, value = line.partition("=")
            if value.strip():
                out.setdefault(key.strip(), []).append(value.strip())
            else:
                out[key.strip()] = []
    return out


def test_dropins_add_to_the_units_and_take_nothing_away() -> None:
    main = settings(UNITS / "ddnsagent.service", SERVICE_DROPIN)
    assert " ".join(main["SupplementaryGroups"]).split() == ["adm", "postdrop", "bind"]
    assert main["ReadWritePaths"] == ["/var/lib/bind"]
    assert main["LoadCredential"] == ["mydns:/etc/ddnsagent/mydns.secret"]
    assert main["NoNewPrivileges"] == ["yes"] and main["ProtectSystem"] == ["strict"]
    oneshot = settings(UNITS / "ddnsagent-reconnect.service", RECONNECT_DROPIN)
    assert oneshot["ExecStart"] == ["/usr/local/sbin/ppp-reconnect flets"]  # replaced, not added


def test_reconnect_script_redials_the_peer(tmp_path: Path) -> None:
    """The script with stand-ins for poff, pon and sleep, as the oneshot runs it."""
    calls = tmp_path / "calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("poff", "pon", "sleep"):
        stub = bin_dir / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*" >> {calls}\n')
        stub.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    r = run(["/bin/sh", str(RECONNECT_SCRIPT), "flets"], env=env)
    assert r.returncode == 0, r.stderr
    assert calls.read_text().splitlines() == ["poff flets", "sleep 5", "pon flets"]
    assert os.access(RECONNECT_SCRIPT, os.X_OK)
    failing = bin_dir / "pon"
    failing.write_text("#!/bin/sh\nexit 1\n")
    assert run(["/bin/sh", str(RECONNECT_SCRIPT)], env=env).returncode != 0  # a failed dial shows


def test_ppp_peer_keeps_the_local_resolver() -> None:
    """`usepeerdns` would let pppd point resolv.conf at the ISP's servers, which the doctor
    fails: Postfix would then see the public answers."""
    peer = (EXAMPLE / "ppp" / "peers" / "flets").read_text()
    options = [ln.split("#")[0].split() for ln in peer.splitlines() if ln.split("#")[0].strip()]
    words = {o[0] for o in options}
    assert "usepeerdns" not in words
    assert {"plugin", "user", "persist", "mtu"} <= words
