"""The bounce guard's privilege split, as shipped: the root oneshot, its polkit rule and its
sudoers line — mirroring the reconnect's tests in tests/test_packaging.py. The polkit and sudo
tests run the real polkitd and sudo (root needed, skipped without)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.test_packaging import (
    PACKAGING,
    SUDOERS,
    analyze,
    as_user,
    check_polkit_rule,
    polkit_judging,
    run,
    sections,
    sudoers_rules,
    tool,
    unit_settings,
)
from tests.test_packaging import throwaway_user as throwaway_user  # the fixture

HOLD_UNIT = PACKAGING / "systemd" / "ddnsagent-bounce-hold.service"
HOLD_POLKIT = PACKAGING / "polkit" / "50-ddnsagent-bounce-hold.rules"
HOLD_RULE = "ddnsagent ALL=(root) NOPASSWD: /usr/bin/systemctl start ddnsagent-bounce-hold.service"


def test_hold_unit_is_a_root_oneshot_that_takes_nothing_from_the_daemon() -> None:
    s = unit_settings(HOLD_UNIT)
    assert s["Type"] == ["oneshot"]
    # fixed arguments: the unit selects what to hold itself (relay/guard.py hold_now)
    assert s["ExecStart"] == ["/usr/bin/ddnsagent bounces hold --config /etc/ddnsagent/config.toml"]
    assert "User" not in s and "DynamicUser" not in s  # root, for postsuper
    assert s["PrivateNetwork"] == ["yes"] and s["ProtectSystem"] == ["strict"]
    assert s["ReadWritePaths"] == ["-/var/spool/postfix"]
    assert "Install" not in sections(HOLD_UNIT)


def test_hold_unit_verifies_without_a_warning(tmp_path: Path) -> None:
    tool("systemd-analyze", "systemd")
    host_units = next(
        (
            p
            for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))
            if (p / "sysinit.target").exists()
        ),
        None,
    )
    if host_units is None:
        pytest.skip("no systemd unit directory with sysinit.target on this machine")
    root = tmp_path / "root"
    shutil.copytree(host_units, root / "usr/lib/systemd/system", symlinks=True)
    stub = root / "usr/bin/ddnsagent"
    stub.parent.mkdir(parents=True, exist_ok=True)
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(HOLD_UNIT, root / "etc/systemd/system")
    r = analyze(root, "verify", "--man=no", "ddnsagent-bounce-hold.service")
    assert r.returncode == 0, r.stderr
    assert r.stdout + r.stderr == ""


def test_the_install_file_ships_the_unit_and_the_rule() -> None:
    install = (PACKAGING / "debian" / "ddnsagent.install").read_text().splitlines()
    assert "packaging/systemd/ddnsagent-bounce-hold.service lib/systemd/system/" in install
    assert "packaging/polkit/50-ddnsagent-bounce-hold.rules usr/share/polkit-1/rules.d/" in install


# -- sudoers: fixed arguments, never a wildcard --------------------------------------------------


def wildcards(rule: str) -> list[str]:
    """What in a sudoers rule's command part would let the user choose arguments: sudo
    matches `*`, `?`, `[…]` as wildcards, `,` lists more commands, `\\` escapes, and a command
    with no arguments at all allows any. `postsuper -h *` would also allow `postsuper -h x -d
    ALL` (sudoers(5), "Wildcards")."""
    command = rule.split("NOPASSWD:", 1)[1].strip()
    found = re.findall(r"[*?\[\]\\,]", command)
    if len(command.split()) < 2:
        found.append("no arguments (any allowed)")
    return found


@pytest.mark.parametrize(
    "rule",
    [
        "ddnsagent ALL=(root) NOPASSWD: /usr/sbin/postsuper -h *",
        "ddnsagent ALL=(root) NOPASSWD: /usr/sbin/postsuper",
        "ddnsagent ALL=(root) NOPASSWD: /usr/bin/systemctl start ddnsagent-*.service",
        "ddnsagent ALL=(root) NOPASSWD: /usr/bin/systemctl start a.service, /bin/sh",
    ],
)
def test_the_check_refuses_a_rule_with_wildcards(rule: str) -> None:
    assert wildcards(rule)


def test_the_shipped_sudoers_lines_have_fixed_arguments() -> None:
    visudo = tool("visudo", "sudo")
    r = run([visudo, "-cf", str(SUDOERS)])
    assert r.returncode == 0, r.stdout + r.stderr
    rules = sudoers_rules(SUDOERS.read_text())
    assert HOLD_RULE in rules
    for rule in rules:
        assert not wildcards(rule), rule
    assert "postsuper" not in "".join(rules)  # root selects the ids; the daemon never names one


def test_sudoers_allows_the_hold_and_refuses_the_rest(throwaway_user: tuple[str, Path]) -> None:
    name, stub = throwaway_user
    marker = stub.parent / "marker"
    ok = as_user(name, "sudo", "-n", str(stub), "start", "ddnsagent-bounce-hold.service")
    assert ok.returncode == 0, ok.stderr
    assert marker.read_text() == "0 start ddnsagent-bounce-hold.service\n"  # ran as root
    marker.unlink()
    for argv in (
        [str(stub), "stop", "ddnsagent-bounce-hold.service"],
        [str(stub), "start", "ddnsagent-bounce-hold.service", "postfix.service"],
        [str(stub), "start", "ddnsagent-bounce-hold.service", "--", "-d", "ALL"],
        ["/usr/sbin/postsuper", "-d", "ALL"],
        ["/usr/sbin/postsuper", "-h", "ALL"],
    ):
        refused = as_user(name, "sudo", "-n", *argv)
        assert refused.returncode != 0, argv
        assert not marker.exists(), argv


# -- polkit --------------------------------------------------------------------------------------


def test_polkit_rule_names_exactly_the_user_the_unit_and_start() -> None:
    check_polkit_rule(HOLD_POLKIT, "ddnsagent-bounce-hold.service")


def test_polkit_lets_the_user_start_the_hold_unit_and_nothing_else() -> None:
    """The real polkitd judges the shipped rule (user name substituted) on a private bus, as
    the reconnect's rule is judged in tests/test_packaging.py."""
    with polkit_judging(HOLD_POLKIT) as polkit:
        subject = polkit.subject
        assert polkit.allowed(subject, "ddnsagent-bounce-hold.service", "start")
        assert not polkit.allowed(subject, "ddnsagent-bounce-hold.service", "stop")
        assert not polkit.allowed(subject, "ddnsagent-bounce-hold.service", "restart")
        assert not polkit.allowed(subject, "postfix.service", "start")
        assert not polkit.allowed(subject, "ddnsagent-reconnect.service", "start")  # the other's
