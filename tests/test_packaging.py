"""The service packaging: systemd units, sysusers, sudoers and polkit files, and the .deb built
from them by packaging/build-deb.

The tools are the real ones (systemd-analyze, systemd-sysusers, visudo, sudo, dpkg-buildpackage,
lintian); a test skips, naming the missing package, where one is absent. Nothing here touches
the network. The sudo tests need root: they create a throwaway system user and sudoers drop-in,
and remove both whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
UNITS = PACKAGING / "systemd"
MAIN_UNIT = UNITS / "ddnsagent.service"
RECONNECT_UNIT = UNITS / "ddnsagent-reconnect.service"
SUDO_DROPIN = UNITS / "ddnsagent.service.d" / "sudo-reconnect.conf"
SUDOERS = PACKAGING / "sudoers" / "ddnsagent"
SYSUSERS = PACKAGING / "sysusers" / "ddnsagent.conf"
POLKIT = PACKAGING / "polkit" / "50-ddnsagent-reconnect.rules"
CHANGELOG = PACKAGING / "debian" / "changelog"
CONTROL = PACKAGING / "debian" / "control"
EXAMPLE = PACKAGING / "examples" / "flets-mydns"
# What Debian 12 (bookworm) ships of the libraries ddnsagent needs (its package pages and
# `apt-cache policy` on bookworm): the .deb and pyproject.toml must accept these (issue 13).
BOOKWORM = {
    "python3-httpx": "0.23.3-1",
    "python3-tenacity": "8.2.1-1",
    "python3-apscheduler": "3.9.1-2",
    "python3-platformdirs": "2.6.0-1",
    "python3-dnspython": "2.3.0-1+deb12u1",
}
PYPI_NAMES = {
    "httpx": "python3-httpx",
    "tenacity": "python3-tenacity",
    "apscheduler": "python3-apscheduler",
    "platformdirs": "python3-platformdirs",
    "dnspython": "python3-dnspython",
}
HOST_UNITS = next(
    (
        p
        for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))
        if (p / "sysinit.target").exists()
    ),
    None,
)

# Settings that make systemd set no_new_privs for a non-root service, whatever NoNewPrivileges=
# says (systemd.exec(5), NoNewPrivileges=). The sudo drop-in has to turn off each one that the
# main unit turns on.
NNP_IMPLYING = (
    "NoNewPrivileges",
    "DynamicUser",
    "LockPersonality",
    "MemoryDenyWriteExecute",
    "PrivateDevices",
    "ProtectClock",
    "ProtectHostname",
    "ProtectKernelLogs",
    "ProtectKernelModules",
    "ProtectKernelTunables",
    "RestrictAddressFamilies",
    "RestrictNamespaces",
    "RestrictRealtime",
    "RestrictSUIDSGID",
    "SystemCallArchitectures",
    "SystemCallFilter",
    "SystemCallLog",
)
# The capabilities sudo needs after its setuid execution, as the drop-in grants them: without
# setgid it cannot become root, without audit_write it warns on every run.
SUDO_CAPS = ("setuid", "setgid", "audit_write")


def tool(name: str, package: str) -> str:
    path = shutil.which(name) or next(
        (f"{d}/{name}" for d in ("/usr/sbin", "/sbin") if os.access(f"{d}/{name}", os.X_OK)),
        None,
    )
    if path is None:
        pytest.skip(f"needs {name} (Debian package {package})")
    return path


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (creates a system user and a sudoers drop-in)")


def run(
    argv: list[str], env: dict[str, str] | None = None, stdin: int | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=600, check=False, env=env, stdin=stdin
    )


def unit_settings(*paths: Path) -> dict[str, list[str]]:
    """Key → values in order, as systemd reads them: an empty assignment clears the list."""
    out: dict[str, list[str]] = {}
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if not line or line.startswith(("#", ";", "[")):
                continue
            key, _, value = line.partition("=")
            if value.strip():
                out.setdefault(key.strip(), []).append(value.strip())
            else:
                out[key.strip()] = []
    return out


def sections(path: Path) -> list[str]:
    return re.findall(r"^\[(\w+)\]", path.read_text(encoding="utf-8"), re.M)


# -- systemd units -------------------------------------------------------------------------------


@pytest.fixture
def unit_root(tmp_path: Path) -> Path:
    """A file-system root for `systemd-analyze --root`: the host's own units (sysinit.target and
    friends), ours in /etc/systemd/system, and stub executables for the commands they run."""
    tool("systemd-analyze", "systemd")
    if HOST_UNITS is None:
        pytest.skip("no systemd unit directory with sysinit.target on this machine")
    root = tmp_path / "root"
    shutil.copytree(HOST_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    for stub in ("usr/bin/ddnsagent", "usr/local/sbin/ppp-reconnect", "bin/kill"):
        path = root / stub
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    etc = root / "etc/systemd/system"
    etc.mkdir(parents=True)
    shutil.copy(MAIN_UNIT, etc)
    shutil.copy(RECONNECT_UNIT, etc)
    return root


def analyze(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run(
        ["systemd-analyze", *args, f"--root={root}"], env={**os.environ, "SYSTEMD_PAGER": ""}
    )


def test_units_verify_without_a_warning(unit_root: Path) -> None:
    r = analyze(unit_root, "verify", "--man=no", "ddnsagent.service", "ddnsagent-reconnect.service")
    assert r.returncode == 0, r.stderr
    assert r.stdout + r.stderr == ""  # an unknown key or a bad value is only a warning


def test_sudo_dropin_verifies_without_a_warning(unit_root: Path) -> None:
    dropins = unit_root / "etc/systemd/system/ddnsagent.service.d"
    dropins.mkdir()
    shutil.copy(SUDO_DROPIN, dropins)
    r = analyze(unit_root, "verify", "--man=no", "ddnsagent.service")
    assert r.returncode == 0, r.stderr
    assert r.stdout + r.stderr == ""


def exposure(root: Path, unit: str) -> float:
    r = analyze(root, "security", "--offline=yes", unit)
    if "--offline" in r.stderr and "unrecognized" in r.stderr:
        pytest.skip("systemd-analyze security --offline needs systemd 250 or later")
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", r.stdout)
    assert found, r.stdout + r.stderr
    return float(found.group(1))


def test_main_unit_exposure_is_low(unit_root: Path) -> None:
    """1.3 with systemd 252 ("OK"); what is left is the network, adm and the host's root."""
    assert exposure(unit_root, "ddnsagent.service") <= 2.0


def test_main_unit_settings() -> None:
    s = unit_settings(MAIN_UNIT)
    for key, value in {
        "Type": "notify",
        "WatchdogSec": "120",
        "User": "ddnsagent",
        "Group": "ddnsagent",
        "SupplementaryGroups": "adm postdrop",  # issue 11: postqueue -j confirms a block
        "StateDirectory": "ddnsagent",
        "RuntimeDirectory": "ddnsagent",
        "ConfigurationDirectory": "ddnsagent",
        "Restart": "on-failure",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
        "UMask": "0077",
    }.items():
        assert s.get(key) == [value], key
    assert s["ExecStart"] == ["/usr/bin/ddnsagent run --config /etc/ddnsagent/config.toml"]
    assert s["ExecReload"][-1] == "/bin/kill -HUP $MAINPID"
    assert s["CapabilityBoundingSet"] == []  # present and empty: no capability at all
    assert s["SystemCallFilter"][0] == "@system-service"
    assert "#LoadCredential=mydns:/etc/ddnsagent/mydns.secret" in MAIN_UNIT.read_text()
    assert sections(MAIN_UNIT) == ["Unit", "Service", "Install"]


def test_sudo_dropin_lifts_every_setting_that_forces_no_new_privs() -> None:
    main = unit_settings(MAIN_UNIT)
    merged = unit_settings(MAIN_UNIT, SUDO_DROPIN)
    on_in_main = [k for k in NNP_IMPLYING if main.get(k, ["no"])[-1:] not in ([], ["no"])]
    assert "SystemCallFilter" in on_in_main and "PrivateDevices" in on_in_main
    still_on = [k for k in on_in_main if merged[k][-1:] not in ([], ["no"])]
    assert still_on == []
    caps = {
        c.lower().removeprefix("cap_") for c in " ".join(merged["CapabilityBoundingSet"]).split()
    }
    assert caps == set(SUDO_CAPS)
    assert merged["ProtectSystem"] == ["strict"]  # the file-system sandbox stays


def test_reconnect_unit_is_a_root_oneshot_started_on_demand() -> None:
    s = unit_settings(RECONNECT_UNIT)
    assert s["Type"] == ["oneshot"]
    assert s["ExecStart"] == ["/usr/local/sbin/ppp-reconnect"]
    assert s["TimeoutStartSec"] == ["150"]
    assert s["KillMode"] == ["process"]  # pppd started by `pon` must outlive the script
    assert "User" not in s and "DynamicUser" not in s
    assert "Install" not in sections(RECONNECT_UNIT)


# -- sysusers ------------------------------------------------------------------------------------


def test_sysusers_creates_the_user_in_groups_adm_and_postdrop(tmp_path: Path) -> None:
    sysusers = tool("systemd-sysusers", "systemd")
    etc = tmp_path / "etc"
    etc.mkdir()
    for name in ("passwd", "group", "shadow", "gshadow"):
        if Path("/etc", name).exists():
            shutil.copy(Path("/etc", name), etc / name)
    assert "adm" in (etc / "group").read_text()
    r = run([sysusers, f"--root={tmp_path}", str(SYSUSERS)])
    assert r.returncode == 0, r.stderr
    user = next(
        line.split(":")
        for line in (etc / "passwd").read_text().splitlines()
        if line.startswith("ddnsagent:")
    )
    assert int(user[2]) < 1000  # a system user
    assert user[4] == "ddnsagent dynamic-DNS agent"
    assert user[5] == "/var/lib/ddnsagent"
    assert user[6].endswith("nologin")
    groups = {g.split(":")[0]: g.split(":") for g in (etc / "group").read_text().splitlines()}
    assert groups["ddnsagent"][2] == user[3]  # its own primary group
    assert "ddnsagent" in groups["adm"][3].split(",")
    # postdrop: made when Postfix has not made it (the unit names it), and the user is in it
    assert int(groups["postdrop"][2]) < 1000
    assert "ddnsagent" in groups["postdrop"][3].split(",")


# -- sudoers and polkit --------------------------------------------------------------------------


def sudoers_rules(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def test_sudoers_file_is_valid_and_allows_one_fixed_command() -> None:
    visudo = tool("visudo", "sudo")
    r = run([visudo, "-cf", str(SUDOERS)])
    assert r.returncode == 0, r.stdout + r.stderr
    rules = sudoers_rules(SUDOERS.read_text())
    assert rules == [
        "ddnsagent ALL=(root) NOPASSWD: /usr/bin/systemctl start ddnsagent-reconnect.service",
        # issue 14: the bounce guard's root oneshot (tests/relay/test_guard_packaging.py)
        "ddnsagent ALL=(root) NOPASSWD: /usr/bin/systemctl start ddnsagent-bounce-hold.service",
    ]
    for rule in rules:
        assert not re.search(r"[*?\[\]\\,]", rule.split("NOPASSWD:")[1])


def test_polkit_rule_names_exactly_the_user_the_unit_and_start() -> None:
    check_polkit_rule(POLKIT, "ddnsagent-reconnect.service")


def check_polkit_rule(path: Path, unit: str) -> None:
    """The rule says yes to exactly user ddnsagent starting `unit`, and to nothing else."""
    text = path.read_text()
    conditions = re.findall(r'([\w.]+(?:\("\w+"\))?) === "([^"]+)"', text)
    assert sorted(conditions) == sorted(
        [
            ("action.id", "org.freedesktop.systemd1.manage-units"),
            ('action.lookup("unit")', unit),
            ('action.lookup("verb")', "start"),
            ("subject.user", "ddnsagent"),
        ]
    )
    assert text.count("polkit.Result.YES") == 1
    assert "AUTH_" not in text


BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/><allow own="*"/><allow send_destination="*"/><allow receive_sender="*"/>
  </policy>
</busconfig>
"""


@dataclass
class Polkit:
    """The real polkitd on a private system bus, judging the processes started here."""

    pkcheck: str
    env: dict[str, str]
    started: list[subprocess.Popen[bytes]]
    subject: int = 0  # the pid of a process of the throwaway user the rule names

    def spawn(self, argv: list[str]) -> int:
        """Start `argv` (killed when the harness ends); its pid."""
        proc = subprocess.Popen(argv)
        self.started.append(proc)
        return proc.pid

    def allowed(self, pid: int, unit: str, verb: str) -> bool:
        """pkcheck asks what systemd asks when `systemctl start` comes from an unprivileged
        user: action org.freedesktop.systemd1.manage-units with the details unit and verb."""
        argv = [
            self.pkcheck,
            "--action-id",
            "org.freedesktop.systemd1.manage-units",
            "--process",
            str(pid),
            "--detail",
            "unit",
            unit,
            "--detail",
            "verb",
            verb,
        ]
        r = run(argv, env=self.env)
        assert r.returncode in (0, 1, 2), r.stderr  # 1 no, 2 needs authentication
        return r.returncode == 0


@contextlib.contextmanager
def polkit_judging(rules: Path) -> Iterator[Polkit]:
    """The shipped rule file `rules` installed with a throwaway system user in place of
    ddnsagent, and the real polkitd on a private bus; `subject` is a process of that user.
    User, rule, bus and processes removed after."""
    needs_root()
    polkitd = "/usr/lib/polkit-1/polkitd"
    if not os.access(polkitd, os.X_OK):
        pytest.skip("needs polkitd (Debian package polkitd)")
    pkcheck = tool("pkcheck", "polkitd")
    dbus_daemon, dbus_send = tool("dbus-daemon", "dbus-daemon"), tool("dbus-send", "dbus-bin")
    useradd, userdel = tool("useradd", "passwd"), tool("userdel", "passwd")
    setpriv = tool("setpriv", "util-linux")
    # polkitd drops to its own user: the bus socket must be outside pytest's 0700 tmp_path.
    busdir = Path(tempfile.mkdtemp(prefix="ddnsagent-bus-"))
    busdir.chmod(0o755)
    bus = busdir / "bus"
    (busdir / "bus.conf").write_text(BUS_CONFIG.format(socket=bus))
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={bus}"}
    name = f"ddnsagent-test-{uuid.uuid4().hex[:6]}"
    rule = Path("/etc/polkit-1/rules.d") / f"49-{name}.rules"
    polkit = Polkit(pkcheck, env, [])
    created = False
    try:
        assert run([useradd, "--system", "--no-create-home", name]).returncode == 0
        created = True
        text = rules.read_text().replace(
            'subject.user === "ddnsagent"', f'subject.user === "{name}"'
        )
        assert name in text
        rule.write_text(text)
        polkit.spawn([dbus_daemon, f"--config-file={busdir / 'bus.conf'}", "--nofork"])
        wait_for(bus.exists)
        polkit.started.append(
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
        polkit.subject = polkit.spawn(
            [setpriv, f"--reuid={name}", f"--regid={name}", "--init-groups", "sleep", "60"]
        )
        wait_for(lambda: Path(f"/proc/{polkit.subject}").stat().st_uid != 0)
        yield polkit
    finally:
        for proc in reversed(polkit.started):
            proc.kill()
            proc.wait()
        rule.unlink(missing_ok=True)
        if created:
            run([userdel, name])
        shutil.rmtree(busdir, ignore_errors=True)


def test_polkit_lets_the_user_start_the_reconnect_unit_and_nothing_else() -> None:
    """The real polkitd judges the shipped rule (user name substituted), on a private bus."""
    with polkit_judging(POLKIT) as polkit:
        outsider = polkit.spawn(
            ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "sleep", "60"]
        )
        subject = polkit.subject
        assert polkit.allowed(subject, "ddnsagent-reconnect.service", "start")
        assert not polkit.allowed(subject, "ddnsagent-reconnect.service", "stop")
        assert not polkit.allowed(subject, "ddnsagent-reconnect.service", "restart")
        assert not polkit.allowed(subject, "ddnsagent.service", "start")
        assert not polkit.allowed(subject, "ssh.service", "start")
        assert not polkit.allowed(outsider, "ddnsagent-reconnect.service", "start")


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def throwaway_user() -> Iterator[tuple[str, Path]]:
    """A system user, a stub for systemctl that records how it was run, and a sudoers drop-in
    that is the shipped one with the user and the command path substituted. All removed after."""
    needs_root()
    tool("sudo", "sudo")
    visudo = tool("visudo", "sudo")
    useradd, userdel = tool("useradd", "passwd"), tool("userdel", "passwd")
    name = f"ddnsagent-test-{uuid.uuid4().hex[:6]}"
    stubdir = Path(tempfile.mkdtemp(prefix="ddnsagent-sudo-"))
    dropin = Path("/etc/sudoers.d") / name
    created = False
    try:
        stubdir.chmod(0o755)
        marker = stubdir / "marker"
        stub = stubdir / "systemctl"
        stub.write_text(f'#!/bin/sh\necho "$(id -u) $*" > {marker}\n')
        stub.chmod(0o755)
        r = run([useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name])
        assert r.returncode == 0, r.stderr
        created = True
        text = SUDOERS.read_text().replace("ddnsagent ALL=", f"{name} ALL=")
        text = text.replace("/usr/bin/systemctl", str(stub))
        staged = stubdir / "sudoers"
        staged.write_text(text)
        assert run([visudo, "-cf", str(staged)]).returncode == 0
        shutil.copy(staged, dropin)
        dropin.chmod(0o440)
        yield name, stub
    finally:
        dropin.unlink(missing_ok=True)
        if created:
            run([userdel, name])
        shutil.rmtree(stubdir, ignore_errors=True)


def as_user(
    name: str, *argv: str, setpriv: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """Run argv as the user, like a service would: no terminal, no password."""
    if setpriv:
        prefix = [
            tool("setpriv", "util-linux"),
            f"--reuid={name}",
            f"--regid={name}",
            "--init-groups",
            *setpriv,
        ]
    else:
        prefix = ["sudo", "-u", name]
    return run([*prefix, *argv], stdin=subprocess.DEVNULL)


def test_sudoers_allows_the_reconnect_and_refuses_the_rest(
    throwaway_user: tuple[str, Path],
) -> None:
    name, stub = throwaway_user
    marker = stub.parent / "marker"
    ok = as_user(name, "sudo", "-n", str(stub), "start", "ddnsagent-reconnect.service")
    assert ok.returncode == 0, ok.stderr
    assert marker.read_text() == "0 start ddnsagent-reconnect.service\n"  # ran as root
    marker.unlink()
    for argv in (
        ["/bin/true"],
        [str(stub), "stop", "ddnsagent-reconnect.service"],
        [str(stub), "start", "ssh.service"],
        [str(stub), "start", "ddnsagent-reconnect.service", "other.service"],
        [str(stub)],
    ):
        refused = as_user(name, "sudo", "-n", *argv)
        assert refused.returncode != 0, argv
        assert not marker.exists(), argv


def test_sudo_needs_what_the_dropin_gives(throwaway_user: tuple[str, Path]) -> None:
    """What the unit does to a process, reproduced with setpriv: no_new_privs (the main unit)
    and an empty bounding set stop sudo; the drop-in's three capabilities let it work."""
    name, stub = throwaway_user
    marker = stub.parent / "marker"
    argv = ("sudo", "-n", str(stub), "start", "ddnsagent-reconnect.service")
    nnp = as_user(name, *argv, setpriv=("--no-new-privs",))
    assert nnp.returncode != 0 and "no new privileges" in nnp.stderr, nnp.stderr
    no_caps = as_user(name, *argv, setpriv=("--bounding-set=-all",))
    assert no_caps.returncode != 0
    assert not marker.exists()
    caps = ",".join(["-all", *(f"+{c}" for c in SUDO_CAPS)])
    ok = as_user(name, *argv, setpriv=(f"--bounding-set={caps}",))
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr == ""
    assert marker.read_text() == "0 start ddnsagent-reconnect.service\n"


# -- the Debian package --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for name, package in (
        ("dpkg-buildpackage", "dpkg-dev"),
        ("dh", "debhelper"),
        ("dh_python3", "dh-python"),
    ):
        tool(name, package)
    if not Path("/usr/share/dh-python/dhpython/build/plugin_pyproject.py").exists():
        pytest.skip("needs pybuild-plugin-pyproject")
    out = tmp_path_factory.mktemp("deb")
    env = {**os.environ, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    r = run([str(PACKAGING / "build-deb"), str(out)], env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    version = run(["dpkg-parsechangelog", "-l", str(CHANGELOG), "-S", "Version"]).stdout.strip()
    path = out / f"ddnsagent_{version}_all.deb"
    assert path.exists(), sorted(p.name for p in out.iterdir())
    return path


@pytest.fixture(scope="module")
def unpacked(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("unpacked")
    assert run(["dpkg-deb", "-x", str(deb), str(where)]).returncode == 0
    assert run(["dpkg-deb", "-e", str(deb), str(where / "DEBIAN")]).returncode == 0
    return where


# path in the package → (mode as dpkg-deb -c shows it, the source file it must equal)
PLACED = {
    "lib/systemd/system/ddnsagent.service": ("-rw-r--r--", MAIN_UNIT),
    "lib/systemd/system/ddnsagent-reconnect.service": ("-rw-r--r--", RECONNECT_UNIT),
    "usr/lib/sysusers.d/ddnsagent.conf": ("-rw-r--r--", SYSUSERS),
    "usr/share/polkit-1/rules.d/50-ddnsagent-reconnect.rules": ("-rw-r--r--", POLKIT),
    "lib/systemd/system/ddnsagent-bounce-hold.service": (
        "-rw-r--r--",
        UNITS / "ddnsagent-bounce-hold.service",
    ),
    "usr/share/polkit-1/rules.d/50-ddnsagent-bounce-hold.rules": (
        "-rw-r--r--",
        PACKAGING / "polkit" / "50-ddnsagent-bounce-hold.rules",
    ),
    "etc/sudoers.d/ddnsagent": ("-r--r-----", SUDOERS),
    "etc/ppp/ip-up.d/0ddnsagent": ("-rwxr-xr-x", PACKAGING / "ppp/0ddnsagent"),
    "etc/NetworkManager/dispatcher.d/50-ddnsagent": (
        "-rwxr-xr-x",
        PACKAGING / "NetworkManager/50-ddnsagent",
    ),
    "etc/networkd-dispatcher/routable.d/50-ddnsagent": (
        "-rwxr-xr-x",
        PACKAGING / "networkd-dispatcher/50-ddnsagent",
    ),
    "etc/ddnsagent/config.toml": ("-rw-r--r--", ROOT / "config.example.toml"),
    "usr/share/doc/ddnsagent/examples/sudo-reconnect.conf": ("-rw-r--r--", SUDO_DROPIN),
    # the worked example (README.md points there)
    **{
        f"usr/share/doc/ddnsagent/examples/flets-mydns/{name}": (mode, EXAMPLE / name)
        for name, mode in (
            ("config.toml", "-rw-r--r--"),
            ("ppp/ppp-reconnect", "-rwxr-xr-x"),
            ("systemd/ddnsagent.service.d/flets-mydns.conf", "-rw-r--r--"),
        )
    },
    **{
        f"usr/share/doc/ddnsagent/examples/{p.name}": ("-rwxr-xr-x", p)
        for p in sorted((PACKAGING / "reconnect").iterdir())
    },
}


def test_deb_places_every_file_with_its_mode(deb: Path, unpacked: Path) -> None:
    listing = run(["dpkg-deb", "-c", str(deb)]).stdout
    entries = {}
    for line in listing.splitlines():
        fields = line.split()
        entries[fields[5].removeprefix("./")] = (fields[0], fields[1])
    for path, (mode, source) in PLACED.items():
        assert entries.get(path) == (mode, "root/root"), path
        assert (unpacked / path).read_bytes() == source.read_bytes(), path
    for path in (
        "usr/bin/ddnsagent",
        "usr/lib/python3/dist-packages/ddnsagent/cli.py",
        "usr/lib/python3/dist-packages/ddnsagent/data/config.example.toml",
        "usr/share/man/man1/ddnsagent.1.gz",
    ):
        assert path in entries, path
    assert not any("__pycache__" in p or "/tests/" in p for p in entries)


def test_deb_control_data(unpacked: Path) -> None:
    conffiles = (unpacked / "DEBIAN/conffiles").read_text().split()
    assert "/etc/ddnsagent/config.toml" in conffiles
    assert "/etc/sudoers.d/ddnsagent" in conffiles
    control = (unpacked / "DEBIAN/control").read_text()
    depends = re.search(r"^Depends: (.*)$", control, re.M)
    assert depends
    names = {d.strip().split()[0] for d in depends.group(1).replace("|", ",").split(",")}
    for needed in (
        "python3",
        "python3-httpx",
        "python3-tenacity",
        "python3-apscheduler",
        "python3-platformdirs",
        "python3-dnspython",
        "procps",
        "systemd",
    ):
        assert needed in names, needed
    postinst = (unpacked / "DEBIAN/postinst").read_text()
    assert 'systemd-sysusers ${DPKG_ROOT:+--root="$DPKG_ROOT"} ddnsagent.conf' in postinst
    # Installed disabled (the configuration is a placeholder), and the reconnect oneshot is
    # never started, restarted or stopped by the package.
    assert "was-enabled 'ddnsagent.service'" in postinst
    assert "deb-systemd-helper enable 'ddnsagent.service'" not in postinst.split("was-enabled")[0]
    for script in ("postinst", "prerm", "postrm"):
        assert "ddnsagent-reconnect" not in (unpacked / "DEBIAN" / script).read_text(), script


def test_deb_sudoers_is_valid(unpacked: Path) -> None:
    visudo = tool("visudo", "sudo")
    r = run([visudo, "-cf", str(unpacked / "etc/sudoers.d/ddnsagent")])
    assert r.returncode == 0, r.stdout + r.stderr


def test_lintian_finds_no_error(deb: Path) -> None:
    lintian = tool("lintian", "lintian")
    r = run([lintian, "--display-info", str(deb)])
    tags = [ln for ln in r.stdout.splitlines() if re.match(r"[EWIXP]: ", ln)]
    errors = [t for t in tags if t.startswith("E: ")]
    assert errors == [], "\n".join(tags)
    for tag in tags:
        if tag.startswith("W: "):
            warnings.warn(f"lintian: {tag}", stacklevel=1)


def test_packaged_command_runs_on_debians_python(unpacked: Path) -> None:
    """The installed entry point, with Debian's python3 and its python3-* modules."""
    python = "/usr/bin/python3"
    modules = "import httpx, tenacity, apscheduler, platformdirs, dns"
    if not os.access(python, os.X_OK) or run([python, "-c", modules]).returncode != 0:
        pytest.skip(
            "needs python3-httpx python3-tenacity python3-apscheduler "
            "python3-platformdirs python3-dnspython"
        )
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(unpacked / "usr/lib/python3/dist-packages"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    config = unpacked / "etc/ddnsagent/config.toml"
    r = run([python, str(unpacked / "usr/bin/ddnsagent"), "check-config", str(config)], env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "configuration is valid" in r.stdout


# -- Debian 12's libraries (issue 13, item 11) ----------------------------------------------------


def upstream(version: str) -> tuple[int, ...]:
    """`2.3.0-1+deb12u1` → (2, 3, 0): the upstream part, as numbers."""
    return tuple(int(x) for x in version.split("-")[0].split("."))


def allows(installed: tuple[int, ...], op: str, bound: str) -> bool:
    b = upstream(bound)
    n = max(len(installed), len(b))
    a, b = installed + (0,) * (n - len(installed)), b + (0,) * (n - len(b))
    return {
        ">=": a >= b,
        "<": a < b,
        "<<": a < b,
        "<=": a <= b,
        ">": a > b,
        ">>": a > b,
        "==": a == b,
        "=": a == b,
        "!=": a != b,
    }[op]


def pyproject_bounds() -> dict[str, list[tuple[str, str]]]:
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    out: dict[str, list[tuple[str, str]]] = {}
    for dep in deps:
        found = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(.*)", dep)
        assert found, dep
        name, spec = found.groups()
        out[name.lower()] = [
            (m.group(1), m.group(2))
            for m in (
                re.fullmatch(r"\s*(>=|<=|==|!=|<|>)\s*([\d.]+)\s*", s) for s in spec.split(",")
            )
            if m
        ]
    return out


def control_bounds(text: str) -> dict[str, list[tuple[str, str]]]:
    """`Depends:` of a control file → package → [(operator, version)]."""
    found = re.search(r"^Depends:(.*(?:\n[ \t].*)*)", text, re.M)
    assert found, text
    out: dict[str, list[tuple[str, str]]] = {}
    for item in found.group(1).replace("\n", " ").split(","):
        for alt in item.split("|"):
            m = re.fullmatch(r"\s*([a-z0-9.+-]+)\s*(?:\((<<|<=|=|>=|>>)\s*([^)\s]+)\))?\s*", alt)
            if m and m.group(2):
                out.setdefault(m.group(1), []).append((m.group(2), m.group(3)))
            elif m:
                out.setdefault(m.group(1), [])
    return out


def test_pyproject_bounds_accept_debian_12() -> None:
    bounds = pyproject_bounds()
    for name, package in PYPI_NAMES.items():
        assert name in bounds, name
        assert any(op == ">=" for op, _ in bounds[name]), f"{name}: no lower bound"
        have = upstream(BOOKWORM[package])
        for op, version in bounds[name]:
            assert allows(have, op, version), f"{name}{op}{version} refuses bookworm's {have}"


def test_control_names_the_pyproject_lower_bounds() -> None:
    """packaging/debian/control and pyproject.toml say the same, both within Debian 12."""
    control = control_bounds(CONTROL.read_text())
    lower = {n: dict(b).get(">=") for n, b in pyproject_bounds().items()}
    for name, package in PYPI_NAMES.items():
        assert (">=", lower[name]) in control[package], (package, control[package])
        for op, version in control[package]:
            assert allows(upstream(BOOKWORM[package]), op, version), (package, op, version)


def test_deb_depends_are_met_by_debian_12(unpacked: Path) -> None:
    """What dh_python3 made of pyproject.toml and control, checked by dpkg's own comparison."""
    dpkg = tool("dpkg", "dpkg")
    ops = {">=": "ge", "<<": "lt", "<=": "le", ">>": "gt", "=": "eq"}
    depends = control_bounds((unpacked / "DEBIAN/control").read_text())
    for package, version in BOOKWORM.items():
        assert package in depends, package
        for op, bound in depends[package]:
            r = run([dpkg, "--compare-versions", version, ops[op], bound])
            assert r.returncode == 0, (
                f"Depends {package} ({op} {bound}) refuses bookworm's {version}"
            )


def debian_python() -> str:
    """/usr/bin/python3 with Debian's python3-* modules (not pip's copies in /usr/local)."""
    python = "/usr/bin/python3"
    probe = (
        "import httpx, tenacity, apscheduler, platformdirs, dns, sys\n"
        "for m in (httpx, tenacity, apscheduler, platformdirs, dns):\n"
        "    print(m.__file__)\n"
    )
    r = run([python, "-I", "-c", probe]) if os.access(python, os.X_OK) else None
    if r is None or r.returncode != 0:
        pytest.skip(
            "needs python3-httpx python3-tenacity python3-apscheduler "
            "python3-platformdirs python3-dnspython"
        )
    outside = [f for f in r.stdout.split() if not f.startswith("/usr/lib/python3/dist-packages/")]
    if outside:
        pytest.skip(f"modules from outside Debian's packages shadow them: {outside}")
    return python


def test_packaged_daemon_runs_on_debians_libraries(unpacked: Path, tmp_path: Path) -> None:
    """The installed files with Debian's python3 and python3-* modules only: `ddnsagent run`
    (APScheduler's scheduler) detects an address, notifies a local MyDNS emulator (httpx),
    keeps a zone file (dnspython), and stops on SIGTERM."""
    from tests.fakes import MyDNSServer

    python = debian_python()
    address = "203.0.113.7"
    secret = tmp_path / "mydns.secret"
    secret.write_text("debian-twelve\n")
    secret.chmod(0o600)
    zone = tmp_path / "db.example.test"
    zone.write_text(
        "$TTL 300\n@ IN SOA ns hostmaster 1 3600 600 86400 300\n@ IN NS ns\n"
        "ns IN A 127.0.0.1\n@ IN A 192.0.2.1\n"
    )
    with MyDNSServer({"mydns000001": "debian-twelve"}) as fake:
        fake.pretend_peer = address  # the request leaves from 127.0.0.1, not the WAN
        cfg = tmp_path / "config.toml"
        cfg.write_text(
            f'[agent]\nstate_dir = "{tmp_path / "state"}"\n'
            f'control_socket = "{tmp_path / "control.sock"}"\n'
            f'[detect]\nipv4 = ["command:/bin/echo {address}"]\naccept = "any"\n'
            f'[[provider]]\nname = "home"\ntype = "mydns"\nmaster_id = "mydns000001"\n'
            f'password_file = "{secret}"\nurl_ipv4 = "{fake.notify_url}"\n'
            f'[[zone]]\nname = "z"\ntype = "zonefile"\npath = "{zone}"\n'
            f'origin = "example.test"\nnames = ["@"]\ncheck = []\n'
        )
        env = {
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(unpacked / "usr/lib/python3/dist-packages"),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        log = tmp_path / "daemon.log"
        with log.open("wb") as out:
            daemon = subprocess.Popen(
                [python, str(unpacked / "usr/bin/ddnsagent"), "run", "--config", str(cfg)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        try:
            zone_done = re.compile(rf"^@\s+(?:\d+\s+)?(?:IN\s+)?A\s+{re.escape(address)}\s*$", re.M)

            def done() -> bool:
                notified = fake.address_of("mydns000001") == address
                return (notified and bool(zone_done.search(zone.read_text()))) or (
                    daemon.poll() is not None
                )

            wait_for(done, timeout=30.0)
            assert daemon.poll() is None, log.read_text()
            assert fake.address_of("mydns000001") == address, log.read_text()
        finally:
            daemon.terminate()
            try:
                code = daemon.wait(10)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait(10)
                code = None
    text = log.read_text()
    assert code == 0, text
    assert "Traceback" not in text, text
    assert zone_done.search(zone.read_text()), zone.read_text()


def test_a_raw_tls_failure_is_a_clean_http_failure() -> None:
    """httpx 0.23 with httpcore 0.16 (Debian 12) lets a failed TLS handshake out as a bare
    ssl.SSLError instead of httpx.ConnectError; it must end as HTTPFailure (a message, no
    traceback) like on newer versions."""
    import asyncio
    import ssl

    import httpx

    from ddnsagent import http
    from ddnsagent.errors import HTTPFailure

    def handshake(request: httpx.Request) -> httpx.Response:
        raise ssl.SSLCertVerificationError(  # as the ssl module raises it: (errno, text)
            1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed (_ssl.c:992)"
        )

    async def fetch() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handshake)) as client:
            await http.fetch(client, "GET", "https://127.0.0.1/")

    with pytest.raises(HTTPFailure, match=r"cannot connect: \[SSL: CERTIFICATE_VERIFY_FAILED\]"):
        asyncio.run(fetch())


ZONE_BIND_READS = (
    "$TTL 300\r\n@ IN SOA ns hostmaster 1 3600 600 86400 300\r\n@ IN NS ns\r\n"
    "ns IN 600 A 127.0.0.1\r\nwww IN 600 A 192.0.2.1\r\n"
)


def test_packaged_zone_editor_takes_what_bind_reads_on_debians_dnspython(unpacked: Path) -> None:
    """A zone BIND loads (CRLF line ends, the class before the TTL) that Debian 12's
    dnspython 2.3 cannot parse: the editor checks it by its own rescan instead of refusing it.
    A zone that parses but is wrong (no NS) is still refused."""
    python = debian_python()
    script = (
        "import datetime, ipaddress, sys\n"
        "from ddnsagent.errors import ZoneEditError\n"
        "from ddnsagent.zones.edit.editor import edit_zone\n"
        "def run(text):\n"
        "    return edit_zone(text, 'example.net.', ['www'],\n"
        "        {4: [ipaddress.ip_address('203.0.113.7')]},\n"
        "        today=datetime.date(2026, 11, 30), now=1_800_000_000)\n"
        "print(ascii(run(sys.argv[1]).text))\n"
        "try:\n"
        "    run(sys.argv[2])\n"
        "except ZoneEditError as exc:\n"
        "    print('REFUSED', exc)\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(unpacked / "usr/lib/python3/dist-packages"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    no_ns = "$TTL 300\n@ IN SOA ns hostmaster 1 3600 600 86400 300\nwww IN A 192.0.2.1\n"
    r = run([python, "-c", script, ZONE_BIND_READS, no_ns], env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "www IN 600 A 203.0.113.7\\r\\n" in r.stdout  # the line ends kept
    assert "REFUSED" in r.stdout and "NS" in r.stdout.split("REFUSED", 1)[1]


# -- README's test command (issue 13, item 12) ----------------------------------------------------


def test_readme_runs_ci_as_root_without_sudo() -> None:
    """A root machine may have no sudo: README says "as root", and .ci/run calls no sudo."""
    readme = (ROOT / "README.md").read_text()
    tests = readme.split("\n## Tests\n", 1)[1].split("\n## ", 1)[0]
    assert re.search(r"^bash \.ci/run\s+# as root$", tests, re.M), tests
    assert "sudo" not in tests
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [ln for ln in ci.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert not [ln for ln in commands if re.search(r"(^|[;&|(]\s*)sudo\s", ln.strip())]
