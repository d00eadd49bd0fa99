"""check-config's pre-flight of `[relay] bounce_hold`, the bounce guard's root half: checked the
way `[reconnect] command` is (the same code, `checks.root_command`) — sudo under
NoNewPrivileges=, the sudoers file or its line missing, the oneshot or its polkit rule not
installed, a program that needs root run as the service's user; nothing while the guard is off.
"""

from __future__ import annotations

import io
import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from ddnsagent import config, preflight
from ddnsagent.preflight import unit as units
from ddnsagent.preflight.checks import BOUNCE_HOLD_WAIT, Context, Finding, check
from ddnsagent.relay import watch

ROOT = Path(__file__).resolve().parent.parent
MAIN_UNIT = ROOT / "packaging/systemd/ddnsagent.service"
HOLD_UNIT = ROOT / "packaging/systemd/ddnsagent-bounce-hold.service"
SUDO_DROPIN = ROOT / "packaging/systemd/ddnsagent.service.d/sudo-reconnect.conf"
SUDOERS = ROOT / "packaging/sudoers/ddnsagent"
DEFAULT = '["systemctl", "start", "ddnsagent-bounce-hold.service"]'
SUDO = '["sudo", "-n", "/usr/bin/systemctl", "start", "ddnsagent-bounce-hold.service"]'
BOTH = frozenset({"ddnsagent-reconnect.service", "ddnsagent-bounce-hold.service"})

needs_systemctl = pytest.mark.skipif(
    shutil.which("systemctl") is None, reason="needs systemctl (Debian package systemd)"
)


@pytest.fixture
def tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ddnsagent-guardcheck-"))
    path.chmod(0o755)
    (path / "secret").write_text("pw-guardcheck-1")
    (path / "secret").chmod(0o600)
    (path / "mail.log").write_text("")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def config_file(tmp: Path, relay: str = "") -> Path:
    path = tmp / "c.toml"
    path.write_text(
        f'[agent]\nstate_dir = "{tmp / "state"}"\n'
        '[detect]\nipv4 = ["web:http://127.0.0.1:9/"]\nipv6 = []\naccept = "any"\n'
        "insecure_http = true\n"
        '[[provider]]\nname = "home"\ntype = "mydns"\nmaster_id = "mydns424242"\n'
        f'password_file = "{tmp / "secret"}"\n'
        f'[relay]\nlog = "{tmp / "mail.log"}"\nhost = "auth.gate-on.net"\n' + relay
    )
    return path


def installed(**changes: object) -> dict[str, object]:
    """The context of a machine with the oneshot and its polkit rule installed."""
    return {
        "bounce_hold_unit": str(HOLD_UNIT),
        "bounce_hold_timeout": 60.0,
        "bounce_polkit_rule": True,
        **changes,
    }


def guard_findings(
    tmp: Path, relay: str = "", by_hand: bool = False, **ctx: object
) -> list[Finding]:
    """The [relay] findings about bounce_hold, as the shipped unit's user (or by hand)."""
    cfg = config.load(config_file(tmp, relay))
    unit = replace(units.SHIPPED, settings={**units.SHIPPED.settings, "PrivateTmp": "no"})
    context = Context(user="ddnsagent", path=os.environ["PATH"], unit=None if by_hand else unit)
    context = replace(context, **ctx)  # type: ignore[arg-type]
    found = check(cfg, context)
    return [f for f in found if f.section == "[relay]" and _about_the_guard(f)]


def _about_the_guard(f: Finding) -> bool:
    text = f"{f.message} {f.fix or ''}"
    return "bounce" in text


def fails(found: list[Finding]) -> list[Finding]:
    return [f for f in found if f.status == "fail"]


def test_the_guard_off_means_no_bounce_hold_checks(tmp: Path) -> None:
    """bounce_limit = 0: even a bounce_hold that could never work is not looked at."""
    found = guard_findings(tmp, 'bounce_limit = 0\nbounce_hold = ["/nonexistent/hold"]\n')
    assert found == []
    found = guard_findings(tmp, 'bounce_hold = ["/nonexistent/hold"]\n')  # on: it is
    [fail] = fails(found)
    assert fail.message == "bounce_hold: /nonexistent/hold does not exist"
    assert fail.fix is not None and DEFAULT in fail.fix


@needs_systemctl
def test_the_oneshot_and_its_polkit_rule_must_be_installed(tmp: Path) -> None:
    found = guard_findings(tmp)  # nothing installed
    messages = [f.message for f in fails(found)]
    assert messages == [
        "ddnsagent-bounce-hold.service is not installed",
        "user ddnsagent may start ddnsagent-bounce-hold.service only through polkit's rule "
        "50-ddnsagent-bounce-hold.rules, which is not installed",
    ]
    fixes = " | ".join(str(f.fix) for f in fails(found))
    assert "packaging/systemd/ddnsagent-bounce-hold.service into /etc/systemd/system/" in fixes
    assert "packaging/polkit/50-ddnsagent-bounce-hold.rules into /etc/polkit-1/rules.d/" in fixes
    # the reconnect's rule does not stand in for the guard's
    found = guard_findings(tmp, **installed(bounce_polkit_rule=False), polkit_rule=True)
    assert [f.message for f in fails(found)] == messages[1:]
    found = guard_findings(tmp, **installed())
    assert [f.status for f in found] == ["ok"]
    assert "past 30 bounces an hour, the bounce guard runs `systemctl start" in found[0].message


@needs_systemctl
def test_a_oneshot_slower_than_the_watch_waits_fails(tmp: Path) -> None:
    """The watch gives up on `systemctl start` after BOUNCE_HOLD_WAIT (90 s)."""
    [fail] = fails(guard_findings(tmp, **installed(bounce_hold_timeout=120.0)))
    assert "not above ddnsagent-bounce-hold.service's TimeoutStartSec=2m" in fail.message
    assert fail.fix == (
        "keep ddnsagent-bounce-hold.service's TimeoutStartSec= under 1m30s "
        "(the shipped unit has 60)"
    )
    assert not fails(guard_findings(tmp, **installed(bounce_hold_timeout=60.0)))


def test_the_wait_is_the_watchs_and_above_the_shipped_units_limit() -> None:
    assert BOUNCE_HOLD_WAIT == watch.HOLD_TIMEOUT
    limit = units.timeout_start(HOLD_UNIT, (HOLD_UNIT.parent,))
    assert limit is not None and limit < BOUNCE_HOLD_WAIT


@pytest.mark.skipif(
    shutil.which("sudo") is None or shutil.which("systemctl") is None,
    reason="needs sudo and systemctl",
)
def test_sudo_under_no_new_privileges_without_sudoers_or_its_line(tmp: Path) -> None:
    relay = f"bounce_hold = {SUDO}\n"
    [fail] = fails(guard_findings(tmp, relay, sudoers=True, **installed()))
    assert fail.message.startswith("bounce_hold: sudo cannot become root under the unit's")
    assert fail.fix is not None and "sudo-reconnect.conf" in fail.fix and DEFAULT in fail.fix
    # the drop-in lets sudo work; then the sudoers file and its line count
    etc = tmp / "etc"
    (etc / "ddnsagent.service.d").mkdir(parents=True)
    shutil.copy(MAIN_UNIT, etc)
    shutil.copy(SUDO_DROPIN, etc / "ddnsagent.service.d")
    unit = units.read(etc / "ddnsagent.service", dirs=(etc,))
    [fail] = fails(guard_findings(tmp, relay, unit=unit, sudoers=False, **installed()))
    assert fail.message == "bounce_hold: sudo, but /etc/sudoers.d/ddnsagent is not installed"
    old = frozenset({"ddnsagent-reconnect.service"})  # a sudoers file from before the guard
    [fail] = fails(
        guard_findings(tmp, relay, unit=unit, sudoers=True, sudoers_units=old, **installed())
    )
    assert "has no line for `systemctl start ddnsagent-bounce-hold.service`" in fail.message
    found = guard_findings(
        tmp,
        relay,
        unit=unit,
        sudoers=True,
        sudoers_units=BOTH,
        **installed(bounce_polkit_rule=False),
    )
    assert [f.status for f in found] == ["ok"], found  # sudo needs no polkit rule


def test_the_shipped_sudoers_file_allows_both_oneshots(tmp: Path) -> None:
    assert preflight.sudoers_units(SUDOERS) == BOTH
    assert preflight.sudoers_units(tmp / "absent") is None


def test_postsuper_or_a_script_as_the_service_needs_root(tmp: Path) -> None:
    postsuper = shutil.which("postsuper", path=os.environ["PATH"] + ":/usr/sbin")
    if postsuper is None:
        pytest.skip("needs postsuper (Debian package postfix)")
    [fail] = fails(guard_findings(tmp, f'bounce_hold = ["{postsuper}", "-h", "ALL"]\n'))
    assert fail.message.startswith(f"bounce_hold: {postsuper} needs root, but the daemon runs as")
    assert fail.fix is not None and fail.fix.startswith("use the root oneshot: bounce_hold = [")
    # any program: holding mail always needs root (a reconnect command only warns)
    script = tmp / "hold"
    script.write_text("#!/bin/sh\nexec ddnsagent bounces hold\n")
    script.chmod(0o755)
    [fail] = fails(guard_findings(tmp, f'bounce_hold = ["{script}"]\n'))
    assert "needs root" in fail.message
    # by hand as root (no unit), the same command is fine
    assert not fails(
        guard_findings(tmp, f'bounce_hold = ["{script}"]\n', by_hand=True, user="root")
    )


@needs_systemctl
def test_by_hand_the_installed_units_are_not_judged(tmp: Path) -> None:
    """Without a unit (check-config by hand, not as root on the unit's file) only the program
    is looked at, as for [reconnect] command."""
    found = guard_findings(tmp, by_hand=True)
    assert [f.status for f in found] == ["ok"]
    found = guard_findings(tmp, 'bounce_hold = ["/opt/nothing/systemctl", "start"]\n', by_hand=True)
    assert [f.message for f in fails(found)] == [
        "bounce_hold: /opt/nothing/systemctl does not exist"
    ]


@needs_systemctl
def test_check_config_as_the_service_finds_the_installed_oneshot(tmp: Path) -> None:
    """Through preflight.run with a unit file: the oneshot is looked up in the unit directories
    (`dirs`), as root gathers it before checking as the unit's user (here: this user)."""
    me = pwd.getpwuid(os.getuid()).pw_name
    path = config_file(tmp)
    (tmp / "state").mkdir()
    text = MAIN_UNIT.read_text().replace("User=ddnsagent", f"User={me}")
    text = text.replace("Group=ddnsagent", "").replace("SupplementaryGroups=adm postdrop", "")
    text = text.replace("[Install]", f"PrivateTmp=no\nReadWritePaths={tmp}\n[Install]")
    unit = tmp / "ddnsagent.service"
    unit.write_text(text)
    empty = tmp / "units"
    empty.mkdir()
    out = io.StringIO()
    preflight.run(config.load(path), out, as_service=True, unit_file=unit, dirs=(empty,))
    assert "FAIL: [relay]: ddnsagent-bounce-hold.service is not installed" in out.getvalue()
    shutil.copy(HOLD_UNIT, empty)
    out = io.StringIO()
    preflight.run(config.load(path), out, as_service=True, unit_file=unit, dirs=(empty,))
    assert "bounce-hold.service is not installed" not in out.getvalue(), out.getvalue()
    assert "[relay] past 30 bounces an hour, the bounce guard runs" in out.getvalue()
