"""check-config for issue 14's sections: [heartbeat] (the URL's source readable as the service,
its preset known, the URL never printed) and [dnsbl] (the resolver, large public resolvers,
`reconnect = true` without [reconnect]) — each finding seen failing with its fix, then passing
once the fix is applied; by hand, and as a real throwaway user with `--as-service`. No network:
check-config asks no list and pings nothing, and loads no DNS, HTTP or asyncio code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ddnsagent.preflight import monitoring
from tests import test_preflight as pf
from tests.test_preflight import (
    ROOT,
    base,
    cli,
    needs_root,
    preflight_of,
    problems,
    serviceable,
    unit_file,
    write,
)

# issue 13's fixtures: a directory every user may traverse, a real throwaway system user
tmp = pf.tmp
service_user = pf.service_user

UUID = "0f3b7f7e-1234-4bcd-9abc-0123456789ab"
HC_URL = f"https://hc-ping.com/{UUID}"
TOKEN = "kumaPushToken4242"
SECRET_PARTS = (UUID, TOKEN, "secret-path-4711")


def hb_config(tmp: Path, heartbeat: str, extra: str = "") -> Path:
    return write(tmp / "c.toml", base(tmp, f"[heartbeat]\n{heartbeat}\n{extra}"))


def assert_no_url(text: str) -> None:
    """The URL authorises the pings: no part of it that does is ever printed."""
    for part in SECRET_PARTS:
        assert part not in text, (part, text)


def lines_of(text: str, section: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.lstrip().startswith(section)]


# -- [heartbeat] -----------------------------------------------------------------------------------


def test_unset_sections_say_what_is_off(tmp: Path) -> None:
    code, out = preflight_of(write(tmp / "c.toml", base(tmp)))
    assert code == 0, out
    assert "[heartbeat] not configured: no monitoring service is pinged" in out
    assert "[dnsbl] not configured: new addresses are not checked" in out


def test_heartbeat_url_file_mode_then_preset_never_the_url(tmp: Path) -> None:
    url = write(tmp / "hb.url", HC_URL + "\n", 0o644)
    path = hb_config(tmp, f'url_file = "{url}"')
    code, out = preflight_of(path)
    assert code == 2, out
    found = "\n".join(problems(out))
    assert f"{url} holds a secret (heartbeat.url_file)" in found and "mode 0644" in found, out
    assert f"chmod 600 {url}" in out
    assert_no_url(out)
    url.chmod(0o600)
    code, out = preflight_of(path)
    assert code == 0 and problems(out) == [], out
    assert "[heartbeat] preset read from the URL, timeout 10s; the URL is a secret" in out
    assert f"heartbeat.url_file: readable from file {url}" in out
    assert "[heartbeat] pings healthchecks at hc-ping.com (preset read from the URL)" in out
    assert_no_url(out)
    write(url, f"http://127.0.0.1:3001/api/push/{TOKEN}?status=up&msg=OK&ping=\n", 0o600)
    code, out = preflight_of(path)
    assert code == 0 and "pings uptime-kuma at 127.0.0.1" in out, out
    assert_no_url(out)


def test_a_url_the_daemon_would_refuse_fails_with_its_fix(tmp: Path) -> None:
    url = write(tmp / "hb.url", "https://monitor.example.net/secret-path-4711\n", 0o600)
    path = hb_config(tmp, f'url_file = "{url}"')
    code, out = preflight_of(path)
    assert code == 2, out
    (fail,) = [ln for ln in problems(out) if "[heartbeat]" in ln]
    assert "the preset cannot be told from the URL" in fail and "without a heartbeat" in fail
    assert 'add preset = "healthchecks", "uptime-kuma" or "plain"' in out
    assert_no_url(out)
    path.write_text(path.read_text() + 'preset = "plain"\n')
    code, out = preflight_of(path)
    assert code == 0 and "[heartbeat] pings plain at monitor.example.net" in out, out
    assert "preset read from the URL" not in out
    assert_no_url(out)
    # a copied signal URL, and plain http to a remote host
    write(url, HC_URL + "/fail\n", 0o600)
    code, out = preflight_of(hb_config(tmp, f'url_file = "{url}"'))
    assert code == 2 and "the URL ends in /fail, a signal of its own" in out, out
    assert "ddnsagent adds /start and /fail itself" in out
    write(url, "http://monitor.example.net/ping/" + UUID + "\n", 0o600)
    code, out = preflight_of(path)
    assert code == 2 and "the URL is plain HTTP to a remote host" in out, out
    assert "use https://, or set insecure_http = true" in out
    assert_no_url(out)


def test_url_env_by_hand(tmp: Path) -> None:
    path = hb_config(tmp, 'url_env = "PF14_HEARTBEAT_URL"')
    p = cli("check-config", str(path), env={"PF14_HEARTBEAT_URL": ""})
    assert p.returncode == 0, p.stdout + p.stderr
    assert "warning: [heartbeat]: heartbeat.url_env: $PF14_HEARTBEAT_URL is not set here" in (
        p.stdout
    )
    assert 'there use url_file = "cred:NAME" with LoadCredential=' in p.stdout
    assert "note: [heartbeat]: the preset is read from the URL when the daemon starts" in p.stdout
    p = cli("check-config", str(path), env={"PF14_HEARTBEAT_URL": HC_URL})
    assert p.returncode == 0 and "pings healthchecks at hc-ping.com" in p.stdout, p.stdout
    assert "warning" not in p.stdout and "note" not in p.stdout
    assert_no_url(p.stdout + p.stderr)


def test_cred_by_hand_is_explained_and_checked_inside_a_unit(tmp: Path) -> None:
    path = hb_config(tmp, 'url_file = "cred:heartbeat"')
    p = cli("check-config", str(path), env={"CREDENTIALS_DIRECTORY": ""})
    assert p.returncode == 0, p.stdout + p.stderr
    (cred,) = [ln for ln in p.stdout.splitlines() if "cred:heartbeat" in ln]
    assert "$CREDENTIALS_DIRECTORY" in cred and "note" in cred
    assert "the preset is read from the URL when the daemon starts" in p.stdout
    # what systemd-run -p LoadCredential= gives the process: the directory with the file
    creds = tmp / "creds"
    creds.mkdir()
    write(creds / "heartbeat", HC_URL + "\n", 0o600)
    p = cli("check-config", str(path), env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert p.returncode == 0 and "credential heartbeat is there" in p.stdout, p.stdout
    assert "pings healthchecks at hc-ping.com" in p.stdout
    write(creds / "heartbeat", HC_URL + "/start\n", 0o600)
    p = cli("check-config", str(path), env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert p.returncode == 2 and "the URL ends in /start" in p.stdout, p.stdout
    assert_no_url(p.stdout + p.stderr)


@needs_root
def test_heartbeat_as_the_service(tmp: Path, service_user: tuple[str, str]) -> None:
    """A root-only url_file cannot be read by the service; cred: needs its LoadCredential=
    line, and root judges the URL in the file that line names; url_env needs Environment=."""
    user, _ = service_user
    url = write(tmp / "hb.url", HC_URL + "\n", 0o600)
    state = serviceable(tmp, user)
    unit = unit_file(tmp, user, state)
    path = hb_config(tmp, f'url_file = "{url}"')
    p = cli("check-config", str(path), "--as-service", "--unit", str(unit))
    assert p.returncode == 2, p.stdout + p.stderr
    assert f"cannot read {url}: permission denied" in p.stdout
    assert f'url_file = "cred:NAME" with LoadCredential=NAME:{url}' in p.stdout
    assert_no_url(p.stdout + p.stderr)
    path = hb_config(tmp, 'url_file = "cred:heartbeat"')
    p = cli("check-config", str(path), "--as-service", "--unit", str(unit))
    assert p.returncode == 2, p.stdout + p.stderr
    assert "cred:heartbeat, but the unit has no LoadCredential=heartbeat:" in p.stdout
    unit = unit_file(tmp, user, state + f"LoadCredential=heartbeat:{url}\n")
    p = cli("check-config", str(path), "--as-service", "--unit", str(unit))
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"systemd hands over {url} as credential heartbeat" in p.stdout
    assert "[heartbeat] pings healthchecks at hc-ping.com (preset read from the URL)" in p.stdout
    write(url, "https://monitor.example.net/secret-path-4711\n", 0o600)
    p = cli("check-config", str(path), "--as-service", "--unit", str(unit))
    assert p.returncode == 2 and "the preset cannot be told from the URL" in p.stdout, p.stdout
    assert f"url (from file {url}, through LoadCredential=)" in p.stdout
    assert_no_url(p.stdout + p.stderr)
    path = hb_config(tmp, 'url_env = "PF14_HEARTBEAT_URL"')
    p = cli("check-config", str(path), "--as-service", "--unit", str(unit))
    assert p.returncode == 2 and "$PF14_HEARTBEAT_URL never reaches the service" in p.stdout
    assert 'write url_file = "cred:NAME"' in p.stdout


# -- [dnsbl] ---------------------------------------------------------------------------------------


def dnsbl_config(tmp: Path, dnsbl: str, extra: str = "") -> Path:
    return write(tmp / "c.toml", base(tmp, f"[dnsbl]\n{dnsbl}\n{extra}"))


@pytest.mark.parametrize(
    ("resolver", "operator"),
    [
        ("8.8.8.8", "Google Public DNS"),
        ("1.1.1.1", "Cloudflare's 1.1.1.1"),
        ("9.9.9.9:53", "Quad9"),
        ("[2606:4700:4700::1111]:53", "Cloudflare's 1.1.1.1"),
        ("2001:4860:4860::8888", "Google Public DNS"),
    ],
)
def test_a_large_public_resolver_is_a_warning(tmp: Path, resolver: str, operator: str) -> None:
    code, out = preflight_of(dnsbl_config(tmp, f'resolver = "{resolver}"'))
    assert code == 0, out
    (warning,) = [ln for ln in out.splitlines() if ln.lstrip().startswith("warning")]
    assert f"is {operator}, a large public resolver: Spamhaus refuses" in warning, out
    assert 'resolver = "127.0.0.1"' in out  # the fix
    assert out.rstrip().endswith("ready, with 1 warning(s) above")


def test_an_own_resolver_is_named_and_fine(tmp: Path) -> None:
    code, out = preflight_of(dnsbl_config(tmp, 'resolver = "[::1]:5353"\ntimeout = "2s"'))
    assert code == 0 and problems(out) == [] and "warning" not in out, out
    assert (
        "[dnsbl] asks zen.spamhaus.org, bl.spamcop.net, bl.mailspike.net, psbl.surriel.com "
        "through the resolver ::1 port 5353 (timeout 2s); on a listing: warn only"
    ) in out


def test_the_system_resolvers_from_resolv_conf(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    resolv = tmp / "resolv.conf"
    monkeypatch.setattr(monitoring, "RESOLV_CONF", resolv)
    path = dnsbl_config(tmp, "")
    code, out = preflight_of(path)
    assert code == 2, out
    (fail,) = problems(out)
    assert f'resolver = "system": {resolv} does not exist for user' in fail
    assert "would go to 127.0.0.1" in fail and "mode 0644" in out
    write(resolv, "# no servers\nnameserver localhost\nsearch example.net\n")
    code, out = preflight_of(path)
    assert code == 0 and f"{resolv} names no nameserver (as an IP address)" in out, out
    write(resolv, "nameserver 192.0.2.53\nnameserver 9.9.9.9\n")
    code, out = preflight_of(path)
    assert code == 0, out
    (warning,) = lines_of(out, "warning:")
    assert f"{resolv}'s nameserver 9.9.9.9 is Quad9, a large public resolver" in warning
    write(resolv, "nameserver 127.0.0.53\noptions edns0 trust-ad\n")
    code, out = preflight_of(path)
    assert code == 0 and "warning" not in out, out
    assert "127.0.0.53 is systemd-resolved's stub" in out and "resolvectl status" in out
    write(resolv, "nameserver 127.0.0.1\n")
    code, out = preflight_of(path)
    assert code == 0 and out.rstrip().endswith("\nready"), out
    assert f"through the system's resolvers ({resolv})" in out


def test_glibc_reads_three_nameservers_only() -> None:
    text = "nameserver 192.0.2.1\nnameserver fe80::1%eth0\nnameserver x\nnameserver 192.0.2.2\n"
    text += "nameserver 8.8.8.8\n"
    assert monitoring.nameservers(text) == ["192.0.2.1", "fe80::1", "192.0.2.2"]


def test_reconnect_without_a_reconnect_section(tmp: Path) -> None:
    path = dnsbl_config(tmp, 'resolver = "127.0.0.1"\nreconnect = true')
    code, out = preflight_of(path)
    assert code == 2, out
    (fail,) = problems(out)
    assert "reconnect = true, but there is no [reconnect] section" in fail
    assert 'add [reconnect] (README, "Reconnecting the link"), or set reconnect = false' in out
    script = write(tmp / "reconnect", "#!/bin/sh\nexit 0\n", 0o755)
    path.write_text(path.read_text() + f'[reconnect]\ncommand = ["{script}"]\n')
    code, out = preflight_of(path)
    assert code == 0 and problems(out) == [] and "on a listing: reconnect" in out, out
    path = dnsbl_config(tmp, "enabled = false\nreconnect = true")
    code, out = preflight_of(path)
    assert code == 0 and "[dnsbl] enabled = false: no blocklist is asked" in out, out


@needs_root
def test_resolv_conf_as_the_service(
    tmp: Path,
    service_user: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The forked child, dropped to the unit's user, reads resolv.conf as the daemon would."""
    user, _ = service_user
    resolv = write(tmp / "resolv.conf", "nameserver 127.0.0.1\n", 0o600)
    monkeypatch.setattr(monitoring, "RESOLV_CONF", resolv)
    path = dnsbl_config(tmp, "")
    unit = unit_file(tmp, user, serviceable(tmp, user))
    code, out = preflight_of(path, as_service=True, unit_file=unit)
    assert f"checked as user {user}" in out, out
    assert code == 2 and f"{resolv} is not readable for user {user} under the unit" in out, out
    resolv.chmod(0o644)
    code, out = preflight_of(path, as_service=True, unit_file=unit)
    assert code == 0 and problems(out) == [], out


# -- lean: no DNS, HTTP or asyncio code for the new sections -------------------------------------

WRAPPER = """
import json, sys
from ddnsagent.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def test_check_config_with_the_new_sections_stays_lean(tmp: Path) -> None:
    url = write(tmp / "hb.url", HC_URL + "\n", 0o600)
    path = hb_config(tmp, f'url_file = "{url}"', '[dnsbl]\nresolver = "127.0.0.1"\n')
    p = subprocess.run(
        [sys.executable, "-c", WRAPPER, "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=os.environ.copy(),
        stdin=subprocess.DEVNULL,
    )
    last = json.loads(p.stderr.strip().splitlines()[-1])
    assert last["code"] == 0, p.stdout + p.stderr
    modules = set(last["modules"])
    # the sections were read and checked (the test would pass vacuously otherwise)
    assert {"ddnsagent.preflight.monitoring", "ddnsagent.dnsbl.lists"} <= modules
    assert "pings healthchecks at hc-ping.com" in p.stdout
    heavy = {"asyncio", "httpx", "httpcore", "ssl", "dns", "ddnsagent.dnsclient"} & modules
    assert heavy == set(), heavy
    assert not any(m.startswith("dns.") for m in modules)


# -- the command list in README and the man page -------------------------------------------------


def _commands() -> dict[str, bool]:
    """Each subcommand of the real parser → whether it takes --json."""
    import argparse

    from ddnsagent.cli import build_parser

    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return {
        name: any("--json" in a.option_strings for a in parser._actions)
        for name, parser in sub.choices.items()
        if name != "bounces"  # issue 14 part 1: another helper documents it
    }


def test_readme_names_every_command_and_every_json_one() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Commands") : readme.index("### `status --json`")]
    rows = [ln for ln in table.splitlines() if ln.startswith("| `ddnsagent ")]
    commands = _commands()
    assert {"history", "dnsbl"} <= commands.keys()
    for name in commands:
        assert any(ln.startswith(f"| `ddnsagent {name}") for ln in rows), name
    said = table[table.index("for the\ncommands that print JSON") :].split(")", 1)[0]
    for name, takes_json in commands.items():
        assert (f"`{name}`" in said) == takes_json, (name, said)


def test_the_man_page_describes_history_and_dnsbl() -> None:
    page = (ROOT / "packaging/debian/ddnsagent.1").read_text()
    commands = page[page.index(".SH COMMANDS") : page.index(".SH EXIT STATUS")]
    for name, options in (
        ("history", ("\\-\\-family 4", "\\-\\-since \\fIDATE", "\\-\\-at \\fIDATETIME")),
        ("dnsbl", ("\\-\\-json", "\\fIADDRESS\\fR")),
    ):
        (entry,) = [e for e in commands.split(".TP\n") if e.startswith(f".BR {name} ")]
        assert all(o in entry.splitlines()[0] for o in options), entry
    assert "3 when the address is listed" in commands
