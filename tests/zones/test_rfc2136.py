"""RFC 2136 updates, signed with TSIG, against a real BIND and a real Knot: the zone backend and
the `rfc2136` provider; wrong keys and refusing policies give errors that say what to fix."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from ddnsagent import config, dnsclient, providers
from ddnsagent.errors import (
    ConfigError,
    FatalAnswer,
    SecretUnavailable,
    TransientError,
    UpdateFailure,
    ZoneApplyError,
)
from ddnsagent.providers import rfc2136 as provider
from ddnsagent.secrets import redact
from ddnsagent.sync import Agent, SyncOptions
from ddnsagent.table import Table
from ddnsagent.zones import registry, rfc2136
from ddnsagent.zones.base import desired
from tests.zones.servers import (
    KNOTD,
    MISSING_BIND,
    MISSING_KNOT,
    NAMED,
    RNDC,
    Knot,
    Named,
    TsigKey,
    Zone,
    free_port,
)

needs_bind = pytest.mark.skipif(NAMED is None or RNDC is None, reason=MISSING_BIND)
needs_knot = pytest.mark.skipif(KNOTD is None, reason=MISSING_KNOT)

V4 = ipaddress.IPv4Address("198.51.100.7")
V6 = ipaddress.IPv6Address("2001:db8:1::7")
NAS = str(ipaddress.IPv6Address("2001:db8:1::11:22ff:fe33:4455"))

ZONE = """\
$TTL 300
@\tIN\tSOA\tns1 hostmaster 2024010100 3600 600 86400 300
\tIN\tNS\tns1
ns1\tIN\tA\t127.0.0.1
mail\tIN\tA\t192.0.2.1
"""


def private(path: Path, text: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, 0o600)
    return path


def zone_settings(tmp_path: Path, server: str, **extra: Any) -> rfc2136.Settings:
    data: dict[str, Any] = {
        "name": "dyn",
        "type": "rfc2136",
        "origin": "example.net",
        "names": ["@", "mail"],
        "server": server,
        "timeout": "3s",
        **extra,
    }
    result: rfc2136.Settings = registry.parse_settings(
        Table(data, "zone.dyn", tmp_path / "config.toml")
    )
    return result


def provider_settings(tmp_path: Path, server: str, **extra: Any) -> provider.Settings:
    data: dict[str, Any] = {
        "name": "public",
        "type": "rfc2136",
        "server": server,
        "zone": "example.net",
        "hostnames": ["home.example.net"],
        "ipv6": True,
        "timeout": "2s",
        **extra,
    }
    result: provider.Settings = providers.parse_settings(
        Table(data, "provider.public", tmp_path / "config.toml")
    )
    return result


def apply(s: rfc2136.Settings, addresses: dict[int, Any] | None = None) -> str:
    want = desired(s, addresses if addresses is not None else {4: V4, 6: V6})
    return asyncio.run(rfc2136.Backend(s).apply(want))


def send(s: provider.Settings, family: int, address: Any) -> str:
    return asyncio.run(provider.Client(s).update(family, address, None))  # type: ignore[arg-type]


# --- pure parts -----------------------------------------------------------------------------


def test_parse_key_file_bind_format() -> None:
    text = """
    # written by tsig-keygen
    key "ddns-key" {
        algorithm hmac-sha256;   // the default
        secret "c2Vj//cmV0LXNlY3JldC1zZWNyZXQ="; # a comment

    };
    /* another */ key other { algorithm HMAC-SHA512; secret "b3RoZXI="; };
    """
    assert dnsclient.parse_key_file(text) == [
        dnsclient.KeyEntry("ddns-key", "hmac-sha256", "c2Vj//cmV0LXNlY3JldC1zZWNyZXQ="),
        dnsclient.KeyEntry("other", "hmac-sha512", "b3RoZXI="),
    ]


def test_judge_rcodes() -> None:
    dnsclient.judge(0, "s", "k")
    for rcode, fatal, words in (
        (5, True, "REFUSED"),
        (9, True, "NOTAUTH"),
        (10, True, "NOTZONE"),
        (2, False, "SERVFAIL"),
        (1, True, "FORMERR"),
    ):
        with pytest.raises(UpdateFailure) as failed:
            dnsclient.judge(rcode, "server", "ddns-key")
        assert failed.value.fatal is fatal and words in str(failed.value)
    with pytest.raises(UpdateFailure) as failed:
        dnsclient.judge(5, "server", "ddns-key")
    assert "update-policy { grant ddns-key zonesub ANY; }" in failed.value.fix


def test_tsig_configuration_mistakes(tmp_path: Path) -> None:
    key_file = TsigKey.new("k").write(tmp_path / "k.key")
    with pytest.raises(ConfigError, match="conflicts"):
        zone_settings(tmp_path, "127.0.0.1:53", tsig_key_file=str(key_file), tsig_secret_env="X")
    with pytest.raises(ConfigError, match="required with tsig_secret"):
        zone_settings(tmp_path, "127.0.0.1:53", tsig_secret_env="X")
    with pytest.raises(ConfigError, match="no secret"):
        zone_settings(tmp_path, "127.0.0.1:53", tsig_name="k")
    with pytest.raises(ConfigError, match="valid: hmac-md5"):
        zone_settings(
            tmp_path, "127.0.0.1:53", tsig_name="k", tsig_algorithm="rsa", tsig_secret_env="X"
        )
    os.chmod(key_file, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        zone_settings(tmp_path, "127.0.0.1:53", tsig_key_file=str(key_file))
    with pytest.raises(ConfigError, match="does not contain origin"):
        zone_settings(tmp_path, "127.0.0.1:53", zone="example.org")
    with pytest.raises(ConfigError, match="not an IP address"):
        zone_settings(tmp_path, "ns1.example.net")
    with pytest.raises(ConfigError, match="not inside the zone"):
        provider_settings(tmp_path, "127.0.0.1:53", hostnames=["home.example.org"])
    with pytest.raises(ConfigError, match="not both"):
        provider_settings(tmp_path, "127.0.0.1:53", names=["home"])


def test_key_problems_are_apply_errors_without_the_secret(tmp_path: Path) -> None:
    two = TsigKey.new("a").bind_text() + TsigKey.new("b").bind_text()
    s = zone_settings(tmp_path, "127.0.0.1:9", tsig_key_file=str(private(tmp_path / "2.key", two)))
    with pytest.raises(ZoneApplyError, match="set tsig_name to choose"):
        apply(s)
    bad = private(tmp_path / "bad.secret", "not base64!")
    s = zone_settings(tmp_path, "127.0.0.1:9", tsig_name="k", tsig_secret_file=str(bad))
    with pytest.raises(ZoneApplyError, match="not base64"):
        apply(s)


# --- BIND -----------------------------------------------------------------------------------


@needs_bind
def test_bind_update_with_key_file(tmp_path: Path) -> None:
    with Named(tmp_path / "named", [Zone("example.net", ZONE, dynamic=True)]) as named:
        s = zone_settings(
            tmp_path,
            named.address,
            tsig_key_file=str(named.key_file),
            hosts={"nas": "::11:22ff:fe33:4455"},
        )
        message = apply(s)
        assert message.startswith("updated") and f"verified at {named.address}" in message
        assert named.addresses("example.net", "A") == {str(V4)}
        assert named.addresses("mail.example.net", "AAAA") == {str(V6)}
        assert named.addresses("nas.example.net", "AAAA") == {NAS}
        assert named.key.secret not in message + s.__repr__() + rfc2136.Backend(s).describe(
            desired(s, {4: V4})
        )
        assert apply(s) == f"already up to date at {named.address}"
        # A new TTL is a change too; only IPv6 known: A records stay.
        s600 = zone_settings(tmp_path, named.address, tsig_key_file=str(named.key_file), ttl=600)
        assert apply(s600, {6: ipaddress.IPv6Address("2001:db8:2::1")}).startswith("updated")
        assert named.addresses("mail.example.net", "A") == {str(V4)}
        assert named.addresses("mail.example.net", "AAAA") == {"2001:db8:2::1"}


@needs_bind
def test_bind_wrong_keys_and_policy(tmp_path: Path) -> None:
    zones = [Zone("example.net", ZONE, dynamic=True, grant="name mail.example.net. A")]
    with Named(tmp_path / "named", zones) as named:
        wrong = TsigKey("ddns-key", TsigKey.new("x").secret)
        s = zone_settings(
            tmp_path, named.address, tsig_key_file=str(wrong.write(tmp_path / "wrong.key"))
        )
        with pytest.raises(ZoneApplyError) as failed:
            apply(s)
        assert "BADSIG" in str(failed.value) and "copy the key again" in str(failed.value)
        assert wrong.secret not in str(failed.value) and wrong.secret not in redact(wrong.secret)

        unknown = TsigKey("nobody", named.key.secret).write(tmp_path / "nobody.key")
        with pytest.raises(ZoneApplyError, match=r"does not know the TSIG key 'nobody' \(BADKEY\)"):
            apply(zone_settings(tmp_path, named.address, tsig_key_file=str(unknown)))

        # The key is fine, but the policy only lets it change mail's A record.
        secret = private(tmp_path / "ddns.secret", named.key.secret + "\n")
        s = zone_settings(
            tmp_path, named.address, tsig_name="ddns-key", tsig_secret_file=str(secret)
        )
        with pytest.raises(ZoneApplyError) as failed:
            apply(s, {4: V4})
        assert "REFUSED" in str(failed.value) and "update-policy" in str(failed.value)
        assert apply(
            zone_settings(
                tmp_path,
                named.address,
                names=["mail"],
                tsig_name="ddns-key",
                tsig_secret_file=str(secret),
            ),
            {4: V4},
        ).startswith("updated")


@needs_bind
def test_provider_against_bind_stops_on_a_wrong_key(tmp_path: Path) -> None:
    with Named(tmp_path / "named", [Zone("example.net", ZONE, dynamic=True)]) as named:
        s = provider_settings(tmp_path, named.address, tsig_key_file=str(named.key_file))
        assert send(s, 4, V4) == f"home.example.net. A set to {V4}"
        assert send(s, 6, V6) == f"home.example.net. AAAA set to {V6}"
        assert named.addresses("home.example.net", "A") == {str(V4)}
        assert named.addresses("home.example.net", "AAAA") == {str(V6)}

        os.environ["DDNSAGENT_TEST_TSIG"] = base64.b64encode(b"w" * 32).decode()
        try:
            bad = provider_settings(
                tmp_path, named.address, tsig_name="ddns-key", tsig_secret_env="DDNSAGENT_TEST_TSIG"
            )
            with pytest.raises(FatalAnswer, match="BADSIG"):
                send(bad, 4, V4)
            # Through the agent: the target is stopped, and says how to get going again.
            cfg = config.parse(
                {
                    "agent": {"state_dir": str(tmp_path / "state")},
                    "provider": [
                        {
                            "name": "public",
                            "type": "rfc2136",
                            "server": named.address,
                            "zone": "example.net",
                            "names": ["home"],
                            "tsig_name": "ddns-key",
                            "tsig_secret_env": "DDNSAGENT_TEST_TSIG",
                        }
                    ],
                },
                tmp_path / "config.toml",
            )
            report = asyncio.run(Agent(cfg).sync(SyncOptions(addresses={4: V4})))
        finally:
            del os.environ["DDNSAGENT_TEST_TSIG"]
        [target] = report.targets
        assert target.action == "stopped" and "BADSIG" in target.message
        assert "ddnsagent reset public" in (target.fix or "")


def test_no_answer_is_transient(tmp_path: Path) -> None:
    """A server that accepts the connection and never answers; and one that is not there."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        s = provider_settings(tmp_path, address, timeout="0.5s")
        with pytest.raises(TransientError, match="no answer"):
            send(s, 4, V4)
        with pytest.raises(ZoneApplyError, match="no answer"):
            apply(zone_settings(tmp_path, address, timeout="0.5s"))
    with pytest.raises(TransientError, match="cannot reach"):
        send(provider_settings(tmp_path, f"127.0.0.1:{free_port()}"), 4, V4)
    with pytest.raises(SecretUnavailable):
        send(
            provider_settings(tmp_path, "127.0.0.1:9", tsig_name="k", tsig_secret_env="UNSET_X"),
            4,
            V4,
        )


# --- Knot -----------------------------------------------------------------------------------


@needs_knot
def test_knot_update_with_secret_file(tmp_path: Path) -> None:
    with Knot(tmp_path / "knot", [Zone("example.net", ZONE, dynamic=True)]) as knot:
        secret = private(tmp_path / "knot.secret", knot.key.secret)
        s = zone_settings(
            tmp_path, knot.address, tsig_name="ddns-key", tsig_secret_file=str(secret)
        )
        assert apply(s).startswith("updated")
        assert knot.addresses("example.net", "A") == {str(V4)}
        assert knot.addresses("mail.example.net", "AAAA") == {str(V6)}
        assert apply(s) == f"already up to date at {knot.address}"

        p = provider_settings(tmp_path, knot.address, tsig_key_file=str(knot.key_file))
        assert send(p, 4, V4).endswith(str(V4))
        assert knot.addresses("home.example.net", "A") == {str(V4)}

        wrong = TsigKey("ddns-key", TsigKey.new("x").secret).write(tmp_path / "wrong.key")
        with pytest.raises(FatalAnswer, match="BADSIG"):
            send(provider_settings(tmp_path, knot.address, tsig_key_file=str(wrong)), 4, V4)
        with pytest.raises(ZoneApplyError, match="BADSIG"):
            apply(
                zone_settings(tmp_path, knot.address, tsig_key_file=str(wrong)),
                {4: ipaddress.IPv4Address("192.0.2.55")},
            )
        other_zone = provider_settings(
            tmp_path,
            knot.address,
            zone="example.org",
            hostnames=["h.example.org"],
            tsig_key_file=str(knot.key_file),
        )
        with pytest.raises(FatalAnswer, match=r"does not serve zone example\.org"):
            send(other_zone, 4, V4)
