"""The bounce guard's privilege split, as shipped: the root oneshot, its polkit rule and its
sudoers line — mirroring the reconnect's tests in tests/test_packaging.py. The polkit and sudo
tests run the real polkitd and sudo (root needed, skipped without)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.test_packaging import (
    BUS_CONFIG,
    PACKAGING,
    SUDOERS,
    analyze,
    as_user,
    needs_root,
    run,
    sections,
    sudoers_rules,
    tool,
    unit_settings,
    wait_for,
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
    text = HOLD_POLKIT.read_text()
    conditions = re.findall(r'([\w.]+(?:\("\w+"\))?) === "([^"]+)"', text)
    assert sorted(conditions) == sorted(
        [
            ("action.id", "org.freedesktop.systemd1.manage-units"),
            ('action.lookup("unit")', "ddnsagent-bounce-hold.service"),
            ('action.lookup("verb")', "start"),
            ("subject.user", "ddnsagent"),
        ]
    )
    assert text.count("polkit.Result.YES") == 1
    assert "AUTH_" not in text


def test_polkit_lets_the_user_start_the_hold_unit_and_nothing_else() -> None:
    """The real polkitd judges the shipped rule (user name substituted) on a private bus, as
    the reconnect's rule is judged in tests/test_packaging.py."""
    needs_root()
    polkitd = "/usr/lib/polkit-1/polkitd"
    if not os.access(polkitd, os.X_OK):
        pytest.skip("needs polkitd (Debian package polkitd)")
    pkcheck = tool("pkcheck", "polkitd")
    dbus_daemon, dbus_send = tool("dbus-daemon", "dbus-daemon"), tool("dbus-send", "dbus-bin")
    useradd, userdel = tool("useradd", "passwd"), tool("userdel", "passwd")
    busdir = Path(tempfile.mkdtemp(prefix="ddnsagent-bus-"))
    busdir.chmod(0o755)
    bus = busdir / "bus"
    (busdir / "bus.conf").write_text(BUS_CONFIG.format(socket=bus))
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={bus}"}
    name = f"ddnsagent-test-{uuid.uuid4().hex[:6]}"
    rule = Path("/etc/polkit-1/rules.d") / f"49-{name}.rules"
    started: list[subprocess.Popen[bytes]] = []
    created = False
    try:
        assert run([useradd, "--system", "--no-create-home", name]).returncode == 0
        created = True
        text = HOLD_POLKIT.read_text().replace(
            'subject.user === "ddnsagent"', f'subject.user === "{name}"'
        )
        assert name in text
        rule.write_text(text)
        started.append(
            subprocess.Popen([dbus_daemon, f"--config-file={busdir / 'bus.conf'}", "--nofork"])
        )
        wait_for(bus.exists)
        started.append(
            subprocess.Popen(
                [polkitd, "--no-debug"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        owner = [
            dbus_send,
            "--system",
            "--print-reply",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.NameHasOwner",
            "string:org.freedesktop.PolicyKit1",
        ]
        wait_for(lambda: "boolean true" in run(owner, env=env).stdout)
        subject = subprocess.Popen(
            ["setpriv", f"--reuid={name}", f"--regid={name}", "--init-groups", "sleep", "60"]
        )
        started.append(subject)

        def allowed(unit: str, verb: str) -> bool:
            argv = [
                pkcheck,
                "--action-id",
                "org.freedesktop.systemd1.manage-units",
                "--process",
                str(subject.pid),
                "--detail",
                "unit",
                unit,
                "--detail",
                "verb",
                verb,
            ]
            r = run(argv, env=env)
            assert r.returncode in (0, 1, 2), r.stderr
            return r.returncode == 0

        wait_for(lambda: Path(f"/proc/{subject.pid}").stat().st_uid != 0)
        assert allowed("ddnsagent-bounce-hold.service", "start")
        assert not allowed("ddnsagent-bounce-hold.service", "stop")
        assert not allowed("ddnsagent-bounce-hold.service", "restart")
        assert not allowed("postfix.service", "start")
        assert not allowed("ddnsagent-reconnect.service", "start")  # that is the other rule's
    finally:
        for proc in reversed(started):
            proc.kill()
            proc.wait()
        rule.unlink(missing_ok=True)
        if created:
            run([userdel, name])
        shutil.rmtree(busdir, ignore_errors=True)
