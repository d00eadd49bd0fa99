"""doctor's bounce-guard check (doctor/bouncewait.py): with the guard on, do bounces take a
transport of their own with a rate delay, so that they wait where the hold finds them? Asked of
Postfix's own postconf and postmap on throwaway configuration directories (`-c DIR`), as
tests/test_doctor.py's Postfix checks are."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

from ddnsagent.config import AgentConfig, Config, DetectConfig
from ddnsagent.doctor.bouncewait import check_bounce_wait, postfix_seconds, split_maps
from ddnsagent.doctor.finding import Finding
from ddnsagent.relay.settings import RelayConfig

POSTCONF = shutil.which("postconf", path=os.environ.get("PATH", "") + ":/usr/sbin")
needs_postfix = pytest.mark.skipif(
    POSTCONF is None or shutil.which("postmap", path=os.path.dirname(POSTCONF or "/")) is None,
    reason="needs postconf and postmap (Debian package postfix)",
)
SMTP = "smtp      unix  -       -       n       -       -       smtp\n"
README = Path(__file__).resolve().parent.parent / "README.md"


def config(tmp_path: Path, bounce_limit: int = 30, relay: bool = True) -> Config:
    relay_cfg = (
        RelayConfig(log=str(tmp_path / "mail.log"), host="relay.example", bounce_limit=bounce_limit)
        if relay
        else None
    )
    agent = AgentConfig(state_dir=tmp_path / "state")
    return Config(tmp_path / "config.toml", agent, DetectConfig(), (), relay_cfg, None, ())


def postfix_dir(tmp_path: Path, main_cf: str, master_cf: str = SMTP) -> Path:
    """main.cf dated a minute back: Postfix waits for a younger one to settle."""
    d = tmp_path / "postfix"
    d.mkdir(exist_ok=True)
    (d / "main.cf").write_text("compatibility_level = 3.6\n" + main_cf)
    past = time.time() - 60
    os.utime(d / "main.cf", (past, past))
    (d / "master.cf").write_text(master_cf)
    return d


def doctor(tmp_path: Path, d: Path, bounce_limit: int = 30) -> list[Finding]:
    assert POSTCONF is not None
    return check_bounce_wait(config(tmp_path, bounce_limit), (POSTCONF, "-c", str(d)), 10.0)


@needs_postfix
def test_without_a_bounce_transport_it_warns_and_its_lines_work(tmp_path: Path) -> None:
    d = postfix_dir(tmp_path, "")
    [warned] = doctor(tmp_path, d)
    assert (warned.check, warned.status, warned.subject) == ("postfix", "warn", "bounce guard")
    assert "sender_dependent_default_transport_maps is empty" in warned.message
    assert "bounces leave before the bounce guard can hold them" in warned.message
    # the fix names main.cf's and master.cf's lines: written as given, they pass
    assert warned.fix is not None
    main_lines = re.findall(r"`([a-z_-]+ = [^`]+)`", warned.fix)
    [master_line] = re.findall(r"`(bounce-relay unix [^`]+)`", warned.fix)
    assert len(main_lines) == 2
    d = postfix_dir(tmp_path, "\n".join(main_lines) + "\n", SMTP + master_line + "\n")
    [passed] = doctor(tmp_path, d)
    assert passed.status == "pass", passed
    assert "bounce-relay_destination_rate_delay = 30s" in passed.message
    assert "at most one bounce leaves every 30s" in passed.message


@needs_postfix
def test_the_readmes_set_up_passes(tmp_path: Path) -> None:
    """README "The race, and what is guaranteed": its main.cf block and master.cf line."""
    text = README.read_text()
    block = text.split("sender_dependent_default_transport_maps = inline:", 1)[1]
    main_cf = "sender_dependent_default_transport_maps = inline:" + block.split("```", 1)[0]
    [master_line] = re.findall(r"`(bounce-relay unix [^`]+)`", text)
    d = postfix_dir(tmp_path, main_cf, SMTP + master_line + "\n")
    [passed] = doctor(tmp_path, d)
    assert passed.status == "pass" and "with bounce-relay_destination_rate_delay = 30s" in (
        passed.message
    )


@needs_postfix
def test_a_transport_master_cf_lacks_warns(tmp_path: Path) -> None:
    d = postfix_dir(
        tmp_path,
        "sender_dependent_default_transport_maps = inline:{<>=slowbounce:}\n"
        "slowbounce_destination_rate_delay = 30s\n",
    )
    [warned] = doctor(tmp_path, d)
    assert warned.status == "warn"
    assert "sends bounces to transport slowbounce, which master.cf does not have" in warned.message
    assert warned.fix is not None and "`slowbounce unix - - n - - smtp`" in warned.fix


@needs_postfix
def test_a_transport_without_a_rate_delay_warns(tmp_path: Path) -> None:
    maps = "sender_dependent_default_transport_maps = inline:{<>=bounce-relay:}\n"
    master = SMTP + "bounce-relay unix - - n - - smtp\n"
    [warned] = doctor(tmp_path, postfix_dir(tmp_path, maps, master))
    assert warned.status == "warn"
    assert "bounce-relay_destination_rate_delay is 0s: they leave at once" in warned.message
    assert warned.fix is not None
    assert warned.fix.startswith("add `bounce-relay_destination_rate_delay = 30s` to main.cf")
    # default_destination_rate_delay counts too (it is the transport's default)
    d = postfix_dir(tmp_path, maps + "default_destination_rate_delay = 1m\n", master)
    [passed] = doctor(tmp_path, d)
    assert passed.status == "pass" and "at most one bounce leaves every 1m" in passed.message


@needs_postfix
def test_a_delay_per_recipient_warns(tmp_path: Path) -> None:
    """postconf(5): with a recipient limit of 1 the rate delay is per recipient."""
    main_cf = (
        "sender_dependent_default_transport_maps = inline:{<>=bounce-relay:}\n"
        "bounce-relay_destination_rate_delay = 30s\n"
    )
    master = SMTP + "bounce-relay unix - - n - - smtp\n"
    d = postfix_dir(tmp_path, main_cf + "bounce-relay_destination_recipient_limit = 1\n", master)
    [warned] = doctor(tmp_path, d)
    assert warned.status == "warn" and "makes the delay per recipient" in warned.message
    d = postfix_dir(tmp_path, main_cf + "bounce-relay_destination_recipient_limit = 2\n", master)
    assert [f.status for f in doctor(tmp_path, d)] == ["pass"]


@needs_postfix
def test_other_senders_only_and_another_lookup_key(tmp_path: Path) -> None:
    """A map that routes someone else's mail is no bounce transport; the null sender is looked
    up under empty_address_default_transport_maps_lookup_key, in any table type (texthash)."""
    master = SMTP + "slow unix - - n - - smtp\n"
    d = postfix_dir(
        tmp_path,
        "sender_dependent_default_transport_maps = inline:{alice@example.net=slow:}\n"
        "slow_destination_rate_delay = 20s\n",
        master,
    )
    [warned] = doctor(tmp_path, d)
    assert "has no entry for the null sender (<>)" in warned.message
    table = tmp_path / "senders"
    table.write_text("alice@example.net smtp:\n<null> slow:\n")
    d = postfix_dir(
        tmp_path,
        f"sender_dependent_default_transport_maps = inline:{{a@b=smtp:}}, texthash:{table}\n"
        "empty_address_default_transport_maps_lookup_key = <null>\n"
        "slow_destination_rate_delay = 20s\n",
        master,
    )
    [passed] = doctor(tmp_path, d)
    assert passed.status == "pass", passed
    assert "the null sender (<null>) takes transport slow" in passed.message


@needs_postfix
def test_the_guard_off_or_no_postfix_means_no_finding(tmp_path: Path) -> None:
    d = postfix_dir(tmp_path, "")
    assert doctor(tmp_path, d, bounce_limit=0) == []
    assert POSTCONF is not None
    no_relay = config(tmp_path, relay=False)
    assert check_bounce_wait(no_relay, (POSTCONF, "-c", str(d)), 10.0) == []
    absent = (str(tmp_path / "no-postconf"),)
    assert check_bounce_wait(config(tmp_path), absent, 10.0) == []  # check_postfix says why
    assert len(doctor(tmp_path, d)) == 1  # and on: it is judged


def test_split_maps_keeps_braces_together() -> None:
    assert split_maps("inline:{<>=bounce-relay:}, hash:/etc/postfix/x texthash:/y") == [
        "inline:{<>=bounce-relay:}",
        "hash:/etc/postfix/x",
        "texthash:/y",
    ]
    assert split_maps("inline:{ {a b=smtp:}, c=d }") == ["inline:{ {a b=smtp:}, c=d }"]
    assert split_maps("") == []


def test_postfix_seconds() -> None:
    assert [postfix_seconds(v) for v in ("30s", "1m", "2h", "0s", "0", "", "5", "x")] == [
        30.0,
        60.0,
        7200.0,
        0.0,
        0.0,
        0.0,
        5.0,
        0.0,
    ]
