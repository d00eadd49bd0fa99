"""check-config as a pre-flight (issue 13 items 1–4): every section summarised, the starter's
placeholders named, every path, command and secret checked — by hand as this user, and with
`--as-service` as a real throwaway system user with the unit's groups — each check seen failing
and then passing once the fix it names is applied."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from ddnsagent import config, preflight
from ddnsagent.preflight import unit as units
from ddnsagent.preflight.checks import Context, Finding, check, placeholders

ROOT = Path(__file__).resolve().parent.parent
MAIN_UNIT = ROOT / "packaging/systemd/ddnsagent.service"
RECONNECT_UNIT = ROOT / "packaging/systemd/ddnsagent-reconnect.service"
SUDO_DROPIN = ROOT / "packaging/systemd/ddnsagent.service.d/sudo-reconnect.conf"
ZONE = """$TTL 300
@ IN SOA ns.example.net. hostmaster.example.net. ( 2024010101 3600 600 86400 300 )
@ IN NS ns.example.net.
ns IN A 192.0.2.1
"""


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ddnsagent", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def base(tmp: Path, extra: str = "", provider: str | None = None) -> str:
    if provider is None:
        provider = (
            '[[provider]]\nname = "home"\ntype = "mydns"\nmaster_id = "mydns424242"\n'
            f'password_file = "{tmp / "secret"}"\n'
        )
    return (
        f'[agent]\nstate_dir = "{tmp / "state"}"\n'
        '[detect]\nipv4 = ["web:http://127.0.0.1:9/"]\nipv6 = []\naccept = "any"\n'
        "insecure_http = true\n" + provider + extra
    )


def preflight_of(path: Path, **kw: object) -> tuple[int, str]:
    out = io.StringIO()
    code = preflight.run(config.load(path), out, **kw)  # type: ignore[arg-type]
    return code, out.getvalue()


def problems(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.lstrip().startswith(("FAIL", "PLACEHOLDER"))]


@pytest.fixture
def tmp() -> Iterator[Path]:
    """A directory every user may traverse (pytest's own tmp_path is root's alone, 0700)."""
    path = Path(tempfile.mkdtemp(prefix="ddnsagent-preflight-"))
    path.chmod(0o755)
    write(path / "secret", "pw-preflight-1", 0o600)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# -- by hand: this user, this environment --------------------------------------------------------


def test_the_starters_placeholders_are_named_and_cred_is_explained(tmp: Path) -> None:
    path = tmp / "config.toml"
    assert cli("init", str(path)).returncode == 0
    p = cli("check-config", str(path))
    assert p.returncode == 0, p.stdout + p.stderr  # a draft, not broken: "not ready"
    found = problems(p.stdout)
    for key in ("master_id", "hostnames", "username"):
        assert any(f"{key} = " in ln and "placeholder" in ln for ln in found), (key, p.stdout)
    assert "not ready: 3 placeholder(s)" in p.stdout
    # cred:NAME outside the unit: where it comes from and how to try it, never "a placeholder"
    cred = [ln for ln in p.stdout.splitlines() if "cred:mydns" in ln]
    assert cred and all("placeholder" not in ln for ln in cred)
    assert "$CREDENTIALS_DIRECTORY" in cred[0]
    assert "systemd-run -p LoadCredential=mydns:" in p.stdout and "--as-service" in p.stdout
    # replaced: the placeholders are gone
    text = path.read_text()
    text = text.replace('"mydns123456"', '"mydns778899"').replace('"home.example.net"', '"a.b.c"')
    path.write_text(text.replace('username = "me"', 'username = "alice"'))
    p = cli("check-config", str(path))
    assert p.returncode == 0 and problems(p.stdout) == [], p.stdout


def test_a_placeholder_is_found_by_its_value_too(tmp: Path) -> None:
    path = write(tmp / "c.toml", base(tmp).replace("mydns424242", "mydns123456"))
    found = placeholders(config.load(path))
    assert [f.status for f in found] == ["placeholder"] and "master_id" in found[0].message
    path.write_text(base(tmp))
    assert placeholders(config.load(path)) == []


def test_every_section_is_summarised(tmp: Path) -> None:
    write(tmp / "mail.log", "")
    write(tmp / "db.example.net", ZONE)
    write(tmp / "reconnect", "#!/bin/sh\nexit 0\n", 0o755)
    path = write(
        tmp / "c.toml",
        base(
            tmp,
            f'[relay]\nlog = "{tmp / "mail.log"}"\nhost = "auth.gate-on.net"\n'
            f'[reconnect]\ncommand = ["{tmp / "reconnect"}"]\ntimeout = "170s"\n'
            f'[[zone]]\nname = "local"\ntype = "zonefile"\npath = "{tmp / "db.example.net"}"\n'
            'origin = "example.net"\nnames = ["@", "mail"]\ncheck = []\n',
        ),
    )
    code, out = preflight_of(path)
    assert code == 0, out
    for expected in (
        "[agent] every 5m ± 30s",
        "[detect] IPv4: web:http://127.0.0.1:9/",
        "[detect] IPv6: off",
        "[[provider]] home mydns, IPv4",
        f"[relay] reads {tmp / 'mail.log'} for relay auth.gate-on.net",
        f"[reconnect] runs `{tmp / 'reconnect'}` (timeout 2m50s",
        "[[zone]] local zonefile for example.net. (@, mail)",
    ):
        assert expected in out, (expected, out)
    assert out.rstrip().endswith("ready")


def test_unset_sections_say_what_is_off(tmp: Path) -> None:
    code, out = preflight_of(write(tmp / "c.toml", base(tmp)))
    assert code == 0
    assert "[relay] not configured" in out and "[reconnect] not configured" in out


def test_mail_log_reconnect_command_zone_file_and_reload_checked(tmp: Path) -> None:
    """Each seen failing with its fix, then passing once the fix is applied."""
    log, script, zone = tmp / "mail.log", tmp / "reconnect", tmp / "db.example.net"
    path = write(
        tmp / "c.toml",
        base(
            tmp,
            f'[relay]\nlog = "{log}"\nhost = "auth.gate-on.net"\n'
            f'[reconnect]\ncommand = ["{script}"]\n'
            f'[[zone]]\nname = "local"\ntype = "zonefile"\npath = "{zone}"\n'
            'origin = "example.net"\ncheck = []\nreload = ["ddnsagent-no-such-rndc", "reload"]\n',
        ),
    )
    code, out = preflight_of(path)
    assert code == 2, out
    found = "\n".join(problems(out))
    assert f"the mail log {log} does not exist" in found
    assert f"command: {script} does not exist" in found
    assert f"zone file {zone} does not exist" in found
    assert "reload: 'ddnsagent-no-such-rndc' is not found in PATH" in found
    assert out.count("fix: ") >= 4 and "not ready: 4 problem(s)" in out
    write(log, "")
    write(script, "#!/bin/sh\nexit 0\n", 0o644)  # there, but not executable
    write(zone, ZONE)
    code, out = preflight_of(path)
    assert code == 2 and any(f"{script} is not executable" in ln for ln in problems(out)), out
    script.chmod(0o755)
    path.write_text(path.read_text().replace("ddnsagent-no-such-rndc", "true"))
    code, out = preflight_of(path)
    assert code == 0 and problems(out) == [], out


def test_hosts_without_ipv6_detection(tmp: Path) -> None:
    write(tmp / "db.example.net", ZONE)
    zone = (
        f'[[zone]]\nname = "local"\ntype = "zonefile"\npath = "{tmp / "db.example.net"}"\n'
        'origin = "example.net"\ncheck = []\nhosts = { nas = "::11:22ff:fe33:4455" }\n'
    )
    path = write(tmp / "c.toml", base(tmp, zone))
    code, out = preflight_of(path)
    assert code == 2 and "hosts = {nas} take the detected IPv6 prefix" in out, out
    assert '[detect] ipv6 = ["interface:ppp0"]' in out  # the fix
    path.write_text(path.read_text().replace("ipv6 = []", 'ipv6 = ["web:http://[::1]:9/"]'))
    code, out = preflight_of(path)
    assert code == 0, out


def test_an_unreadable_secret_file_fails(tmp: Path) -> None:
    (tmp / "secret").unlink()
    path = write(tmp / "c.toml", base(tmp))
    code, out = preflight_of(path)
    assert code == 2 and f"{tmp / 'secret'} does not exist" in out, out
    write(tmp / "secret", "pw-preflight-2", 0o600)
    code, out = preflight_of(path)
    assert code == 0 and f"readable from file {tmp / 'secret'}" in out


# -- the unit as the pre-flight reads it ---------------------------------------------------------


def test_the_shipped_defaults_are_the_shipped_unit() -> None:
    """`SHIPPED` (used when no unit is installed) says what packaging/systemd says."""
    read = units.read(MAIN_UNIT, dirs=())
    for attribute in (
        "user",
        "group",
        "groups",
        "no_new_privileges",
        "protect_system",
        "protect_home",
        "protect_proc",
        "writable",
        "config_file",
        "credentials",
        "environment",
    ):
        assert getattr(read, attribute) == getattr(units.SHIPPED, attribute), attribute
    for path in ("/tmp/x", "/home/x", "/var/lib/bind/x"):
        assert read.hidden_by(Path(path)) == units.SHIPPED.hidden_by(Path(path)), path
    assert units.timeout_start(RECONNECT_UNIT, dirs=()) == 150


def test_drop_ins_override_and_reset(tmp: Path) -> None:
    etc = tmp / "etc"
    (etc / "ddnsagent.service.d").mkdir(parents=True)
    shutil.copy(MAIN_UNIT, etc)
    write(
        etc / "ddnsagent.service.d/zone.conf",
        "[Service]\nSupplementaryGroups=\nSupplementaryGroups=bind\nReadWritePaths=/var/lib/bind\n"
        "LoadCredential=mydns:/etc/ddnsagent/mydns.secret\nProtectProc=default\n",
    )
    u = units.read(etc / "ddnsagent.service", dirs=(etc,))
    assert u.groups == ("bind",) and u.protect_proc == "default"
    assert u.may_write(Path("/var/lib/bind/db.example.net"))
    assert not u.may_write(Path("/etc/unbound/unbound.conf.d"))
    assert u.credentials == {"mydns": "/etc/ddnsagent/mydns.secret"}
    assert u.hidden_by(Path("/tmp/mail.log")) == "PrivateTmp=yes"
    assert u.hidden_by(Path("/home/me/secret")) == "ProtectHome=yes"
    assert u.hidden_by(Path("/var/log/mail.log")) is None
    shutil.copy(SUDO_DROPIN, etc / "ddnsagent.service.d")
    assert not units.read(etc / "ddnsagent.service", dirs=(etc,)).no_new_privileges


def _reconnect_findings(tmp: Path, command: str, timeout: str, **ctx: object) -> list[Finding]:
    path = write(
        tmp / "c.toml",
        base(tmp, f'[reconnect]\ncommand = {command}\ntimeout = "{timeout}"\n'),
    )
    unit = replace(units.SHIPPED, settings={**units.SHIPPED.settings, "PrivateTmp": "no"})
    context = Context(user="ddnsagent", path=os.environ["PATH"], unit=unit)
    context = replace(context, **ctx)  # type: ignore[arg-type]
    return [f for f in check(config.load(path), context) if f.section == "[reconnect]"]


def test_a_reconnect_script_that_needs_root_fails_under_the_unit(tmp: Path) -> None:
    """Item 1: the shipped pon/poff script as [reconnect] command cannot work as the service."""
    script = tmp / "ppp-reconnect"
    shutil.copy(ROOT / "packaging/reconnect/ppp-reconnect-pon", script)
    found = _reconnect_findings(tmp, f'["{script}"]', "120s")
    fails = [f for f in found if f.status == "fail"]
    assert len(fails) == 1 and "needs root" in fails[0].message
    assert "ddnsagent-reconnect.service" in str(fails[0].fix) and "170s" in str(fails[0].fix)
    # by hand as root (no unit), the same command is fine
    path = tmp / "c.toml"
    cfg = config.load(path)
    assert not [f for f in check(cfg, Context("root", os.environ["PATH"])) if f.status == "fail"]


def test_the_oneshot_command_is_checked_against_the_installed_units(tmp: Path) -> None:
    start = '["systemctl", "start", "ddnsagent-reconnect.service"]'
    if shutil.which("systemctl") is None:
        pytest.skip("needs systemctl")
    found = _reconnect_findings(
        tmp, start, "120s", reconnect_unit=None, reconnect_timeout=None, polkit_rule=False
    )
    messages = " | ".join(f.message for f in found if f.status == "fail")
    assert "ddnsagent-reconnect.service is not installed" in messages
    assert "polkit's rule" in messages
    found = _reconnect_findings(
        tmp,
        start,
        "120s",
        reconnect_unit=str(RECONNECT_UNIT),
        reconnect_timeout=150.0,
        polkit_rule=True,
    )
    fails = [f for f in found if f.status == "fail"]
    assert len(fails) == 1 and "TimeoutStartSec=2m30s" in fails[0].message
    assert fails[0].fix == 'set timeout = "2m50s"'
    found = _reconnect_findings(
        tmp,
        start,
        "170s",
        reconnect_unit=str(RECONNECT_UNIT),
        reconnect_timeout=150.0,
        polkit_rule=True,
    )
    assert [f.status for f in found] == ["ok"]


def test_sudo_fails_under_no_new_privileges_and_passes_with_the_drop_in(tmp: Path) -> None:
    if shutil.which("sudo") is None or shutil.which("systemctl") is None:
        pytest.skip("needs sudo and systemctl")
    command = '["sudo", "-n", "/usr/bin/systemctl", "start", "ddnsagent-reconnect.service"]'
    found = _reconnect_findings(tmp, command, "170s", sudoers=True)
    assert any("sudo cannot become root" in f.message for f in found if f.status == "fail")
    etc = tmp / "etc"
    (etc / "ddnsagent.service.d").mkdir(parents=True)
    shutil.copy(MAIN_UNIT, etc)
    shutil.copy(SUDO_DROPIN, etc / "ddnsagent.service.d")
    unit = units.read(etc / "ddnsagent.service", dirs=(etc,))
    found = _reconnect_findings(
        tmp,
        command,
        "170s",
        unit=unit,
        sudoers=True,
        reconnect_unit=str(RECONNECT_UNIT),
        reconnect_timeout=150.0,
    )
    assert [f.status for f in found] == ["ok"], found


# -- as the service: a real throwaway user and group (root only) ---------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (creates a system user)")


@pytest.fixture
def service_user() -> Iterator[tuple[str, str]]:
    """A system user and a group it is not in (the unit's SupplementaryGroups= adds it)."""
    useradd, userdel = shutil.which("useradd"), shutil.which("userdel")
    groupadd, groupdel = shutil.which("groupadd"), shutil.which("groupdel")
    if not (useradd and userdel and groupadd and groupdel):
        pytest.skip("needs useradd/groupadd (Debian package passwd)")
    name = f"ddnsagent-pf-{uuid.uuid4().hex[:6]}"
    group = f"{name}-g"
    made: list[list[str]] = []
    try:
        subprocess.run([groupadd, "--system", group], check=True, timeout=30)
        made.append([groupdel, group])
        subprocess.run(
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
            timeout=30,
        )
        made.insert(0, [userdel, name])
        yield name, group
    finally:
        for argv in made:
            subprocess.run(argv, timeout=30, check=False)


def serviceable(tmp: Path, user: str) -> str:
    """The state directory and the secret file made the user's (as systemd and the admin would
    make them); the unit line that lets the sandbox write that state directory."""
    state = tmp / "state"
    state.mkdir(exist_ok=True)
    shutil.chown(state, user)
    shutil.chown(tmp / "secret", user)
    return f"ReadWritePaths={state}\n"


def unit_file(tmp: Path, user: str, extra: str = "", config_file: Path | None = None) -> Path:
    text = MAIN_UNIT.read_text().replace("User=ddnsagent", f"User={user}")
    text = text.replace("Group=ddnsagent", f"Group={user}")
    text = text.replace("SupplementaryGroups=adm postdrop", "SupplementaryGroups=")
    if config_file is not None:
        text = text.replace("/etc/ddnsagent/config.toml", str(config_file))
    extra = "PrivateTmp=no\n" + extra  # the test's files are in the host's /tmp
    return write(tmp / "ddnsagent.service", text.replace("[Install]", extra + "\n[Install]"))


@needs_root
def test_as_service_checks_as_the_units_user_and_groups(
    tmp: Path, service_user: tuple[str, str]
) -> None:
    user, group = service_user
    log = write(tmp / "mail.log", "", 0o640)
    shutil.chown(log, "root", group)
    path = write(
        tmp / "c.toml",
        # bounce_limit = 0: the bounce guard's oneshot is tests/test_preflight_guard.py's
        base(
            tmp,
            f'[relay]\nlog = "{log}"\nhost = "auth.gate-on.net"\nbounce_limit = 0\n',
            provider="",
        )
        + '[[provider]]\nname = "home"\ntype = "mydns"\nmaster_id = "mydns424242"\n'
        'password_file = "cred:mydns"\n',
        0o600,
    )
    unit = unit_file(tmp, user, serviceable(tmp, user))
    p = cli("check-config", str(path), "--as-service", "--unit", str(unit))
    assert p.returncode == 2, p.stdout + p.stderr
    assert f"checked as user {user}" in p.stdout
    found = "\n".join(problems(p.stdout))
    assert f"{path} is not readable by user {user}" in found  # root's 0600 file
    assert f"the mail log {log} is not readable by user {user} under the unit" in found
    assert "cred:mydns, but the unit has no LoadCredential=mydns:" in found
    # the fixes the messages name: a readable file, the group, the credential
    path.chmod(0o644)
    unit = unit_file(
        tmp,
        user,
        serviceable(tmp, user) + f"SupplementaryGroups={group}\n"
        f"LoadCredential=mydns:{tmp / 'secret'}\n",
    )
    p = cli("check-config", str(path), "--as-service", "--unit", str(unit))
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"{log} is readable by user {user} under the unit" in p.stdout
    assert f"systemd hands over {tmp / 'secret'} as credential mydns" in p.stdout
    # an empty credential file: systemd would hand over nothing
    write(tmp / "secret", "", 0o600)
    p = cli("check-config", str(path), "--as-service", "--unit", str(unit))
    assert p.returncode == 2 and f"{tmp / 'secret'} is empty" in p.stdout


@needs_root
def test_password_env_never_reaches_the_service(tmp: Path, service_user: tuple[str, str]) -> None:
    user, _ = service_user
    provider = (
        '[[provider]]\nname = "home"\ntype = "mydns"\nmaster_id = "mydns424242"\n'
        'password_env = "PF_PASSWORD"\n'
    )
    path = write(tmp / "c.toml", base(tmp, provider=provider))
    unit = unit_file(tmp, user, serviceable(tmp, user))
    p = cli(
        "check-config",
        str(path),
        "--as-service",
        "--unit",
        str(unit),
        env={"PF_PASSWORD": "x1y2z3"},
    )
    assert p.returncode == 2 and "$PF_PASSWORD never reaches the service" in p.stdout, p.stdout
    assert 'password_file = "cred:NAME"' in p.stdout
    unit = unit_file(tmp, user, serviceable(tmp, user) + 'Environment="PF_PASSWORD=x1y2z3"')
    p = cli("check-config", str(path), "--as-service", "--unit", str(unit))
    assert p.returncode == 0, p.stdout


@needs_root
def test_zone_directory_under_the_sandbox_and_by_permission(
    tmp: Path, service_user: tuple[str, str]
) -> None:
    """The zone's directory needs ReadWritePaths= (ProtectSystem=strict) and write permission
    for the user (Debian: /var/lib/bind is root:bind 0775, so group bind)."""
    user, group = service_user
    zones = tmp / "bind"
    zones.mkdir()
    zones.chmod(0o775)
    shutil.chown(zones, "root", group)
    write(zones / "db.example.net", ZONE)
    path = write(
        tmp / "c.toml",
        base(
            tmp,
            f'[[zone]]\nname = "local"\ntype = "zonefile"\npath = "{zones / "db.example.net"}"\n'
            'origin = "example.net"\ncheck = []\n',
        ),
    )
    state = serviceable(tmp, user)
    unit = unit_file(tmp, user, state)
    p = cli("check-config", str(path), "--as-service", "--unit", str(unit))
    assert (
        p.returncode == 2
        and f"{zones} is read-only under the unit's ProtectSystem=strict" in p.stdout
    ), p.stdout
    assert f"ReadWritePaths={zones}" in p.stdout
    unit = unit_file(tmp, user, state + f"ReadWritePaths={zones}")
    p = cli("check-config", str(path), "--as-service", "--unit", str(unit))
    assert p.returncode == 2 and f"{zones} is not writable for user {user}" in p.stdout, p.stdout
    assert "SupplementaryGroups=bind" in p.stdout
    unit = unit_file(tmp, user, state + f"ReadWritePaths={zones}\nSupplementaryGroups={group}")
    p = cli("check-config", str(path), "--as-service", "--unit", str(unit))
    assert p.returncode == 2 and "the next apply refuses a file owned by" in p.stdout, p.stdout
    assert f'owners = ["{user}"]' in p.stdout
    path.write_text(path.read_text() + f'owners = ["{user}"]\n')
    p = cli("check-config", str(path), "--as-service", "--unit", str(unit))
    assert p.returncode == 0, p.stdout


@needs_root
def test_dnsmasq_of_another_user_cannot_be_signalled(
    tmp: Path, service_user: tuple[str, str]
) -> None:
    """kill(2) needs the same uid (or CAP_KILL); ProtectProc=invisible hides the /proc entry the
    pid check reads. A process of root's stands for Debian's dnsmasq (user dnsmasq)."""
    user, _ = service_user
    other = subprocess.Popen(["sleep", "60"])
    try:
        write(tmp / "dnsmasq.pid", f"{other.pid}\n")
        zone = (
            f'[[zone]]\nname = "lan"\ntype = "dnsmasq"\norigin = "example.net"\n'
            f'hosts_file = "{tmp / "hosts" / "dnsmasq.hosts"}"\npidfile = "{tmp / "dnsmasq.pid"}"\n'
        )
        (tmp / "hosts").mkdir()
        shutil.chown(tmp / "hosts", user)
        path = write(tmp / "c.toml", base(tmp, zone))
        unit = unit_file(tmp, user, serviceable(tmp, user) + f"ReadWritePaths={tmp / 'hosts'}")
        p = cli("check-config", str(path), "--as-service", "--unit", str(unit))
        assert p.returncode == 2, p.stdout
        assert f"may not signal dnsmasq (pid {other.pid}" in p.stdout
        assert "ProtectProc=invisible hides its /proc entry" in p.stdout
        assert "CAP_KILL" in p.stdout and "ProtectProc=default" in p.stdout
    finally:
        other.kill()
        other.wait()
    mine = subprocess.Popen(
        ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", "sleep", "60"]
    )
    try:
        write(tmp / "dnsmasq.pid", f"{mine.pid}\n")
        p = cli("check-config", str(path), "--as-service", "--unit", str(unit))
        assert p.returncode == 0, p.stdout
        # dnsmasq reads the hosts file as its own user: a 0700 directory hides it
        (tmp / "hosts").chmod(0o700)
        p = cli("check-config", str(path), "--as-service", "--unit", str(unit))
        assert p.returncode == 2 and f"{tmp / 'hosts'} is mode 0700" in p.stdout, p.stdout
    finally:
        mine.kill()
        mine.wait()


@needs_root
def test_root_checks_the_units_file_as_the_service_by_default(
    tmp: Path, service_user: tuple[str, str]
) -> None:
    user, _ = service_user
    path = write(tmp / "c.toml", base(tmp))
    units_dir = tmp / "units"
    units_dir.mkdir()
    shutil.copy(unit_file(tmp, user, config_file=path), units_dir / "ddnsagent.service")
    code, out = preflight_of(path, dirs=(units_dir,))
    assert f"checked as user {user}" in out and f"unit: {units_dir}" in out, out
    assert code == 2 and f"{tmp / 'secret'}: " in out  # root's 0600 secret: not the service's
    other = write(tmp / "other.toml", base(tmp))
    code, out = preflight_of(other, dirs=(units_dir,))
    assert code == 0 and "checked as user root, in this environment" in out, out


@needs_root
def test_a_missing_user_or_group_is_named(tmp: Path) -> None:
    path = write(tmp / "c.toml", base(tmp))
    unit = unit_file(tmp, "ddnsagent-no-such-user")
    p = cli("check-config", str(path), "--as-service", "--unit", str(unit))
    assert p.returncode == 2 and "User=ddnsagent-no-such-user does not exist" in p.stdout
    assert "systemd-sysusers" in p.stdout


@needs_root
def test_the_zone_owner_finding_is_what_a_real_apply_as_the_user_does(
    tmp: Path, service_user: tuple[str, str]
) -> None:
    """What README "Local zones under the sandbox" says, done for real: the user (in the zone
    directory's group, as ddnsagent in group bind) applies the zone twice with the real code;
    the second apply refuses the file the first one wrote unless `owners` names the user."""
    user, group = service_user
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (util-linux)")
    zones = tmp / "bind"
    zones.mkdir()
    zones.chmod(0o775)
    shutil.chown(zones, "root", group)
    state = serviceable(tmp, user)
    zone = (
        f'[[zone]]\nname = "local"\ntype = "zonefile"\npath = "{zones / "db.example.net"}"\n'
        'origin = "example.net"\ncheck = []\n'
    )

    def apply(address: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "ddnsagent", "notify-now", "--local", "--address", address]
        return subprocess.run(
            [
                "setpriv",
                f"--reuid={user}",
                f"--regid={user}",
                f"--groups={group}",
                *argv,
                "--config",
                str(path),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )

    for owners, second in (("", 1), (f'owners = ["{user}"]\n', 0)):
        write(zones / "db.example.net", ZONE)
        path = write(tmp / "c.toml", base(tmp, zone + owners, provider=""))
        unit = unit_file(tmp, user, state + f"ReadWritePaths={zones}\nSupplementaryGroups={group}")
        p = cli("check-config", str(path), "--as-service", "--unit", str(unit))
        assert ("the next apply refuses a file owned by" in p.stdout) == (second == 1), p.stdout
        first = apply("203.0.113.7")
        assert first.returncode == 0, first.stdout + first.stderr
        assert (zones / "db.example.net").stat().st_uid != 0  # the user's now
        again = apply("203.0.113.8")
        assert again.returncode == second, again.stdout + again.stderr
        if second:
            assert "which is not trusted here" in again.stdout


@needs_root
def test_rndc_key_needs_group_bind(tmp: Path, service_user: tuple[str, str]) -> None:
    """Debian's /etc/bind/rndc.key is bind:bind 0640: `rndc reload` as the service needs bind."""
    user, _ = service_user
    key = Path("/etc/bind/rndc.key")
    if not key.exists() or shutil.which("rndc", path=units.SERVICE_PATH) is None:
        pytest.skip("needs BIND's rndc and /etc/bind/rndc.key (Debian package bind9)")
    if key.stat().st_mode & 0o004:
        pytest.skip(f"{key} is world-readable here")
    write(tmp / "db.example.net", ZONE)
    zone = (
        f'[[zone]]\nname = "local"\ntype = "zonefile"\npath = "{tmp / "db.example.net"}"\n'
        'origin = "example.net"\ncheck = []\nreload = ["rndc", "reload", "example.net"]\n'
    )
    path = write(tmp / "c.toml", base(tmp, zone))
    state = serviceable(tmp, user)
    unit = unit_file(tmp, user, state)
    p = cli("check-config", str(path), "--as-service", "--unit", str(unit))
    assert f"rndc reads {key}, which is not readable by user {user}" in p.stdout, p.stdout
    assert "SupplementaryGroups=bind" in p.stdout
    unit = unit_file(tmp, user, state + "SupplementaryGroups=bind")
    p = cli("check-config", str(path), "--as-service", "--unit", str(unit))
    assert "rndc reads" not in p.stdout, p.stdout


def test_the_shipped_zone_drop_in_opens_what_bind_needs(tmp: Path) -> None:
    """packaging/systemd/ddnsagent.service.d/local-zone.conf, read over the shipped unit."""
    etc = tmp / "etc"
    (etc / "ddnsagent.service.d").mkdir(parents=True)
    shutil.copy(MAIN_UNIT, etc)
    u = units.read(etc / "ddnsagent.service", dirs=(etc,))
    assert not u.may_write(Path("/var/lib/bind")) and "bind" not in u.groups
    shutil.copy(
        MAIN_UNIT.parent / "ddnsagent.service.d/local-zone.conf", etc / "ddnsagent.service.d"
    )
    u = units.read(etc / "ddnsagent.service", dirs=(etc,))
    assert u.may_write(Path("/var/lib/bind")) and u.groups == ("adm", "postdrop", "bind")
    assert u.no_new_privileges and u.protect_proc == "invisible"  # the rest of the sandbox kept
