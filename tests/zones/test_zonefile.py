"""The zonefile backend against a real BIND: edit, check, replace, reload, verify; roll back a
failed reload; refuse or freeze a dynamic zone; survive kill -9 at any moment."""

from __future__ import annotations

import asyncio
import datetime
import difflib
import ipaddress
import os
import random
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import dns.rdatatype
import dns.zone
import pytest

from ddnsagent import dnsclient, process
from ddnsagent.errors import ConfigError, UpdateFailure, ZoneApplyError
from ddnsagent.table import Table
from ddnsagent.zones import registry, zonefile
from ddnsagent.zones.base import desired
from ddnsagent.zones.edit.serial import next_serial
from tests.zones.servers import CHECKZONE, MISSING_BIND, NAMED, RNDC, Named, Zone

needs_bind = pytest.mark.skipif(NAMED is None or RNDC is None, reason=MISSING_BIND)
needs_checkzone = pytest.mark.skipif(CHECKZONE is None, reason="named-checkzone not installed")

OLD4, NEW4 = ipaddress.IPv4Address("192.0.2.1"), ipaddress.IPv4Address("198.51.100.7")
OLD6, NEW6 = ipaddress.IPv6Address("2001:db8::1"), ipaddress.IPv6Address("2001:db8:1::7")
NAS_IID = "::11:22ff:fe33:4455"
NAS_NEW = str(ipaddress.IPv6Address("2001:db8:1::11:22ff:fe33:4455"))

ZONE = """\
$TTL 300
$ORIGIN example.net.
@\tIN\tSOA\tns1 hostmaster 2024010100 3600 600 86400 300
\tIN\tNS\tns1
ns1\tIN\tA\t127.0.0.1
@\tIN\tA\t192.0.2.1
mail\tIN\tA\t192.0.2.1
mail\tIN\tAAAA\t2001:db8::1
nas\tIN\tAAAA\t2001:db8::11:22ff:fe33:4455
"""

# Comments everywhere, a multi-line SOA, a relative $INCLUDE, a blank-owner continuation.
COMMENTED = """\
; example.net — kept by hand, except the WAN records
$TTL 1h   ; default
$ORIGIN example.net.
@   IN  SOA ns1.example.net. hostmaster.example.net. (
            2024010100 ; serial: ddnsagent advances this
            3h         ; refresh
            1h         ; retry
            1w         ; expire
            5m )       ; negative caching
    IN  NS  ns1        ; the only server
ns1 IN  A   127.0.0.1

; --- WAN ---
@       300 IN A    192.0.2.1    ; apex follows the WAN
mail    300 IN A    192.0.2.1
            IN MX   10 mail      ; continuation line keeps its owner
            IN AAAA 2001:db8::1

$INCLUDE static.inc               ; LAN-only names
; end
"""
STATIC_INC = "www IN CNAME mail\nprinter IN A 10.0.0.5\n"


def settings(path: Path, **extra: Any) -> zonefile.Settings:
    data: dict[str, Any] = {
        "name": "local",
        "type": "zonefile",
        "path": str(path),
        "origin": "example.net",
        "names": ["@", "mail"],
        "hosts": {"nas": NAS_IID},
        **extra,
    }
    result: zonefile.Settings = registry.parse_settings(
        Table(data, "zone.local", path.parent / "config.toml")
    )
    return result


def apply(s: zonefile.Settings, four: Any = NEW4, six: Any = NEW6) -> str:
    want = desired(s, {4: four, 6: six})
    return asyncio.run(zonefile.Backend(s).apply(want))


def expected_serial(old: int, policy: str = "date") -> int:
    return next_serial(old, policy, today=datetime.date.today(), now=int(time.time()))  # type: ignore[arg-type]


# --- without a server ---------------------------------------------------------------------


def test_settings_defaults_and_derived_freeze_thaw(tmp_path: Path) -> None:
    s = settings(
        tmp_path / "db",
        reload=["rndc", "-p", "953", "reload", "example.net"],
    )
    assert s.freeze == ("rndc", "-p", "953", "freeze", "example.net")
    assert s.thaw == ("rndc", "-p", "953", "thaw", "example.net")
    assert s.dynamic == "freeze" and s.serial == "date" and s.include_dir == str(tmp_path)
    if CHECKZONE is not None:
        assert s.check[1:] == ("example.net", "{path}")
    assert settings(tmp_path / "db", reload=["knotc", "zone-reload"]).freeze == ()


def test_settings_mistakes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not name the file"):
        settings(tmp_path / "db", check=["named-checkzone", "example.net"])
    with pytest.raises(ConfigError, match="thaw"):
        settings(tmp_path / "db", freeze=["x"])
    with pytest.raises(ConfigError, match="dynamic"):
        settings(tmp_path / "db", dynamic="ignore")


def test_commands_timeout_kills_the_group_and_reports() -> None:
    started = time.monotonic()
    slow = process.run(["sh", "-c", "echo waiting; sleep 30 & sleep 30"], 0.3)
    assert time.monotonic() - started < 5
    assert not slow.ok and slow.returncode is None
    assert (
        slow.describe() == "`sh -c echo waiting; sleep 30 & sleep 30` did not finish within "
        "0.3s and was killed: waiting"
    )
    missing = process.run(["/nonexistent/rndc", "reload"], 1)
    assert "could not be started" in missing.describe()
    failed = process.run(["sh", "-c", "echo out; echo err >&2; exit 4"], 5)
    assert failed.returncode == 4 and failed.describe().endswith("exited 4: out err")
    assert process.expand(["x", "{path}", "{other}"], {"path": "/p"}) == ("x", "/p", "{other}")


def test_one_serial_step_for_names_and_hosts_without_server(tmp_path: Path) -> None:
    """Names and LAN hosts hold different sets (two edit_zone calls) but the serial moves once."""
    path = tmp_path / "db.example.net"
    path.write_text(ZONE)
    s = settings(path, check=[], serial="increment")
    message = apply(s)
    assert "serial 2024010100 -> 2024010101" in message and "not reloaded" in message
    zone = dns.zone.from_file(str(path), "example.net.", relativize=False)
    assert zone.get_soa().serial == 2024010101
    nas = zone.get_rdataset("nas.example.net.", "AAAA")
    assert nas is not None and [ipaddress.ip_address(r.address) for r in nas] == [
        ipaddress.ip_address("2001:db8:1::11:22ff:fe33:4455")
    ]
    assert apply(s).endswith("already up to date")


def test_edit_refused_leaves_file(tmp_path: Path) -> None:
    path = tmp_path / "db.example.net"
    text = ZONE + "www IN CNAME mail\n"
    path.write_text(text)
    s = settings(path, check=[], names=["www"], hosts={})
    with pytest.raises(ZoneApplyError, match=r"CNAME.*left as it is"):
        apply(s)
    assert path.read_text() == text and not Path(f"{path}.bak").exists()


# --- with BIND ------------------------------------------------------------------------------


@needs_bind
def test_apply_reload_verify_then_up_to_date(tmp_path: Path) -> None:
    with Named(tmp_path / "named", [Zone("example.net", ZONE)]) as named:
        path = named.path("example.net")
        s = settings(
            path,
            reload=named.rndc("reload", "example.net"),
            verify=named.address,
        )
        message = apply(s)
        assert "reloaded" in message and f"verified at {named.address}" in message
        assert named.addresses("example.net", "A") == {str(NEW4)}
        assert named.addresses("example.net", "AAAA") == {str(NEW6)}
        assert named.addresses("mail.example.net", "A") == {str(NEW4)}
        assert named.addresses("mail.example.net", "AAAA") == {str(NEW6)}
        assert named.addresses("nas.example.net", "AAAA") == {NAS_NEW}
        assert named.soa_serial("example.net") == expected_serial(2024010100)
        assert Path(f"{path}.bak").read_text() == ZONE

        # Nothing to do: no write, no reload (a reload of `false` would fail), still verified.
        before = path.stat().st_mtime_ns
        quiet = settings(path, reload=["false"], verify=named.address)
        assert apply(quiet) == f"{path} already up to date"
        assert path.stat().st_mtime_ns == before


@needs_bind
def test_comments_include_and_multiline_soa_survive(tmp_path: Path) -> None:
    workdir = tmp_path / "named"
    workdir.mkdir()
    (workdir / "static.inc").write_text(STATIC_INC)
    with Named(workdir, [Zone("example.net", COMMENTED)]) as named:
        path = named.path("example.net")
        s = settings(
            path, hosts={}, reload=named.rndc("reload", "example.net"), verify=named.address
        )
        apply(s)
        new = path.read_text()
        changed = [
            line
            for line in difflib.unified_diff(COMMENTED.splitlines(), new.splitlines(), n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))
        ]
        assert changed == [
            "-            2024010100 ; serial: ddnsagent advances this",
            f"+            {expected_serial(2024010100)} ; serial: ddnsagent advances this",
            "-@       300 IN A    192.0.2.1    ; apex follows the WAN",
            "-mail    300 IN A    192.0.2.1",
            "+@       300 IN A    198.51.100.7    ; apex follows the WAN",
            "+@\t300\tIN\tAAAA\t2001:db8:1::7",
            "+mail    300 IN A    198.51.100.7",
            "-            IN AAAA 2001:db8::1",
            "+            IN AAAA 2001:db8:1::7",
        ]
        assert named.addresses("www.example.net", "A") == {str(NEW4)}  # CNAME from $INCLUDE
        assert named.addresses("printer.example.net", "A") == {"10.0.0.5"}
        assert named.addresses("example.net", "AAAA") == {str(NEW6)}


@needs_bind
def test_verify_reports_a_server_that_did_not_follow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`rndc reload` answers success even when the load fails later; verify is what notices."""
    monkeypatch.setattr(dnsclient, "VERIFY_WAIT", 0.5)
    with Named(tmp_path / "named", [Zone("example.net", ZONE)]) as named:
        path = named.path("example.net")
        s = settings(path, hosts={}, reload=["true"], verify=named.address)
        with pytest.raises(ZoneApplyError) as failed:
            apply(s)
        message = str(failed.value)
        assert f"verify at {named.address} failed" in message
        assert "mail.example.net. A is 192.0.2.1, not 198.51.100.7" in message
        assert "holds serial" in message


@needs_bind
def test_reload_failure_puts_previous_file_back(tmp_path: Path) -> None:
    with Named(tmp_path / "named", [Zone("example.net", ZONE)]) as named:
        path = named.path("example.net")
        wrong = named.rndc("reload", "example.net", port=named.rndc_port + 1)
        with pytest.raises(ZoneApplyError) as failed:
            apply(settings(path, reload=wrong))
        message = str(failed.value)
        assert "reload failed after the edit" in message
        assert "put back, but reload failed again" in message and "exited 1" in message
        assert path.read_text() == ZONE
        assert named.addresses("mail.example.net", "A") == {str(OLD4)}

        # The reload fails once, then works: the previous file is back and served.
        marker = tmp_path / "failed-once"
        flaky = ["sh", "-c", f'test -e "{marker}" || {{ touch "{marker}"; exit 3; }}']
        with pytest.raises(ZoneApplyError) as failed:
            apply(settings(path, reload=flaky))
        assert "exited 3" in str(failed.value)
        assert "the previous file was put back and reloaded" in str(failed.value)
        assert path.read_text() == ZONE


@needs_bind
@needs_checkzone
def test_check_failure_replaces_nothing(tmp_path: Path) -> None:
    broken = ZONE.replace("\tIN\tNS\tns1\n", "\tIN\tNS\tns1\n\tIN\tNS\tns2\n")
    with Named(tmp_path / "named", [Zone("example.net", ZONE)]) as named:
        path = named.path("example.net")
        path.write_text(broken)  # the operator broke it; named still serves the old copy
        s = settings(path, reload=named.rndc("reload", "example.net"))
        with pytest.raises(ZoneApplyError) as failed:
            apply(s)
        message = str(failed.value)
        assert "failed the check, so" in message and "was not replaced" in message
        assert "ns2.example.net' has no address records" in message
        assert path.read_text() == broken and not Path(f"{path}.bak").exists()
        assert named.addresses("mail.example.net", "A") == {str(OLD4)}


@needs_checkzone
def test_big_zone_scanned_and_checked(tmp_path: Path) -> None:
    """Above 20,000 lines the edit is validated by re-scanning; named-checkzone still sees the
    whole file, so a CNAME conflict elsewhere stops the replacement."""
    filler = "".join(
        f"h{i}\tIN\tA\t10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}\n" for i in range(20_001)
    )
    text = ZONE + filler + 'www\tIN\tCNAME\tmail\nwww\tIN\tTXT\t"x"\n'
    path = tmp_path / "db.example.net"
    path.write_text(text)
    with pytest.raises(ZoneApplyError, match="CNAME and other data"):
        apply(settings(path))
    assert path.read_text() == text
    path.write_text(ZONE + filler)
    assert "serial 2024010100 ->" in apply(settings(path))


@needs_bind
def test_dynamic_zone_freeze_thaw_and_refuse(tmp_path: Path) -> None:
    with Named(tmp_path / "named", [Zone("example.net", ZONE, dynamic=True)]) as named:
        path = named.path("example.net")
        server = ("127.0.0.1", named.port)
        key = dnsclient.tsig_key(_key_settings(named))

        def update(address: str) -> None:
            """An update from someone else; BIND refuses them until a thaw's load is done."""
            records = {"extra.example.net.": {4: [ipaddress.IPv4Address(address)]}}
            for _ in range(50):
                try:
                    dnsclient.send_update(server, "example.net.", records, 300, key, 5)
                    return
                except UpdateFailure:
                    time.sleep(0.1)
            raise AssertionError("BIND kept refusing the update")

        update("192.0.2.99")
        assert Path(f"{path}.jnl").exists()

        reload = named.rndc("reload", "example.net")
        with pytest.raises(ZoneApplyError, match='use type = "rfc2136"'):
            apply(settings(path, reload=reload, dynamic="refuse"))
        assert path.read_text() == ZONE

        s = settings(path, reload=reload, verify=named.address)
        assert s.freeze == tuple(named.rndc("freeze", "example.net"))
        message = apply(s)
        assert "thawed" in message and "verified" in message
        assert named.addresses("mail.example.net", "A") == {str(NEW4)}
        assert named.addresses("extra.example.net", "A") == {"192.0.2.99"}  # journal kept
        assert "192.0.2.99" in path.read_text()  # freeze wrote the journal into the file
        update("192.0.2.100")  # thawed: dynamic updates work again
        assert named.wait_for("extra.example.net", "A", {"192.0.2.100"})
        assert apply(s).endswith("already up to date")  # freeze, nothing to write, thaw

        # BIND drops the journal when it loads a newer file; then `rndc reload` says
        # "dynamic zone", and the backend takes the freeze/thaw path by itself.
        update("192.0.2.101")
        message = apply(s, OLD4)
        assert "thawed" in message, message
        assert named.addresses("mail.example.net", "A") == {str(OLD4)}
        assert named.addresses("extra.example.net", "A") == {"192.0.2.101"}
        Path(f"{path}.jnl").unlink(missing_ok=True)
        message = apply(s, NEW4)
        assert "thawed" in message, message
        assert named.addresses("mail.example.net", "A") == {str(NEW4)}
        assert "command 'reload example.net'" in named.log.read_text()


def _key_settings(named: Named) -> Any:
    t = Table({"tsig_key_file": str(named.key_file)}, "zone.x", named.dir / "config.toml")
    return type("K", (), dnsclient.read_tsig(t))()


# --- crash safety ---------------------------------------------------------------------------


KILLS = 30
CHANGES = 100


@needs_checkzone
def test_kill_9_never_leaves_a_mix(tmp_path: Path) -> None:
    """A child applies alternating addresses; it is killed at random moments. After every
    kill the zone (and its backup) loads and holds one generation of addresses, not a mix."""
    path = tmp_path / "db.example.net"
    path.write_text(ZONE + "@\tIN\tAAAA\t2001:db8::1\n")
    s = settings(path, hosts={}, reload=["true"])
    generations = [(OLD4, OLD6), (NEW4, NEW6)]
    seen: set[tuple[str, str]] = set()
    rng = random.Random(2136)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    for _ in range(KILLS):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child never returns into pytest
            code = 1
            try:
                tempfile.tempdir = str(scratch)  # check copies a kill leaves behind
                backend = zonefile.Backend(s)
                for i in range(CHANGES):
                    four, six = generations[i % 2]
                    backend.apply_now(desired(s, {4: four, 6: six}))
                code = 0
            finally:
                os._exit(code)
        time.sleep(rng.uniform(0.0, 0.25))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        for candidate in (path, Path(f"{path}.bak")):
            if candidate.exists():
                seen.add(_generation(candidate))
    assert seen <= {(str(a), str(b)) for a, b in generations}
    assert len(seen) == 2, seen
    assert "->" in apply(s, NEW4 if _generation(path)[0] == str(OLD4) else OLD4)


def _generation(path: Path) -> tuple[str, str]:
    zone = dns.zone.from_file(str(path), "example.net.", relativize=False)
    values = set()
    for name in ("example.net.", "mail.example.net."):
        a = zone.get_rdataset(name, dns.rdatatype.A)
        aaaa = zone.get_rdataset(name, dns.rdatatype.AAAA)
        assert a is not None and len(a) == 1 and aaaa is not None and len(aaaa) == 1
        values.add((a[0].address, aaaa[0].address))
    assert len(values) == 1, f"a mix in {path}: {values}"
    return values.pop()
