"""Prometheus metrics: the text we write is parsed by the reference parser (prometheus-client's),
scraped over loopback from the built-in endpoint, and written atomically as a textfile."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from ddnsagent.errors import ConfigError
from ddnsagent.outcome import Detection, ReconnectOutcome, SyncReport, TargetReport
from ddnsagent.outputs import exporter
from ddnsagent.outputs.exporter import CONTENT_TYPE, serve, textfile_loop, write_textfile
from ddnsagent.outputs.metrics import Metrics, escape_label_value, reconnect_result
from ddnsagent.outputs.metrics_settings import MetricsConfig, parse_listen, parse_metrics
from ddnsagent.table import Table

NOW = 1_700_000_000.0


def parse(text: str) -> dict[str, Any]:
    """name → {labels tuple → value}, through the reference parser."""
    parser = pytest.importorskip(
        "prometheus_client.parser", reason="prometheus-client (a test extra) is not installed"
    )
    out: dict[str, Any] = {}
    for family in parser.text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def report(
    address: str | None = "203.0.113.7",
    changed: bool = False,
    actions: tuple[tuple[str, str], ...] = (("mydns", "sent"), ("dynu", "unchanged")),
) -> SyncReport:
    r = SyncReport("schedule")
    r.detections[4] = Detection(4, ipaddress.ip_address(address) if address else None, "web")
    for name, action in actions:
        r.targets.append(TargetReport(name, "x", 4, address, action, "message"))
    if changed:
        r.changed.append(4)
    return r


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def sample(parsed: dict[str, Any], name: str, **labels: str) -> Any:
    return parsed[name][tuple(sorted(labels.items()))]


def test_counters_and_gauges_from_syncs_and_the_relay() -> None:
    clock = Clock()
    m = Metrics(version="9.9.9", clock=clock)
    m.observe_sync(report())
    clock.now += 300
    m.observe_sync(report(actions=(("mydns", "unchanged"), ("dynu", "unchanged"))))
    clock.now += 60
    m.observe_sync(report("203.0.113.8", changed=True, actions=(("mydns", "failed"),)))
    m.observe_reconnect("ok")
    m.observe_reconnect("unchanged")
    m.observe_reconnect("ok")
    m.observe_signal("rate_limited")
    m.observe_signal("connect_failed")
    m.observe_signal("connect_failed")
    m.set_bounce_rate(7)
    p = parse(m.render(now=clock.now + 42.5))

    assert sample(p, "ddnsagent_up") == 1
    assert sample(p, "ddnsagent_build_info", version="9.9.9", python=sys_version()) == 1
    updates = "ddnsagent_updates_total"
    assert sample(p, updates, provider="mydns", family="ipv4", outcome="sent") == 1
    assert sample(p, updates, provider="mydns", family="ipv4", outcome="unchanged") == 1
    assert sample(p, updates, provider="mydns", family="ipv4", outcome="failed") == 1
    assert sample(p, updates, provider="dynu", family="ipv4", outcome="unchanged") == 2
    assert p["ddnsagent_address_info"] == {(("address", "203.0.113.8"), ("family", "ipv4")): 1}
    changed_at = NOW + 360
    assert sample(p, "ddnsagent_last_change_timestamp_seconds", family="ipv4") == changed_at
    assert sample(p, "ddnsagent_seconds_since_last_change", family="ipv4") == 42.5
    assert sample(p, "ddnsagent_last_sync_timestamp_seconds") == changed_at
    assert sample(p, "ddnsagent_reconnects_total", result="ok") == 2
    assert sample(p, "ddnsagent_reconnects_total", result="unchanged") == 1
    assert sample(p, "ddnsagent_reconnects_total", result="skipped") == 0
    assert sample(p, "ddnsagent_relay_signals_total", kind="connect_failed") == 2
    assert sample(p, "ddnsagent_relay_signals_total", kind="rate_limited") == 1
    assert sample(p, "ddnsagent_bounces_last_hour") == 7


def sys_version() -> str:
    import platform

    return platform.python_version()


def test_a_fresh_daemon_says_what_it_knows_and_nothing_more() -> None:
    text = Metrics(clock=Clock()).render()
    p = parse(text)
    assert sample(p, "ddnsagent_up") == 1
    assert "ddnsagent_address_info" not in p
    assert "ddnsagent_bounces_last_hour" not in p  # no relay watch: no gauge
    assert "ddnsagent_last_sync_timestamp_seconds" not in p
    assert {v for v in p["ddnsagent_reconnects_total"].values()} == {0}
    # Every family is announced once, typed, even without samples.
    assert text.count("# TYPE ddnsagent_updates_total counter\n") == 1
    assert text.endswith("\n")


def test_a_restart_keeps_the_time_of_the_last_change_from_the_state() -> None:
    m = Metrics(clock=Clock(NOW + 1000))
    m.seed_addresses({4: ("203.0.113.9", NOW), 6: ("2001:db8::1", NOW - 50)})
    m.observe_sync(report("203.0.113.9"))  # same address, not a change
    p = parse(m.render())
    assert sample(p, "ddnsagent_last_change_timestamp_seconds", family="ipv4") == NOW
    assert sample(p, "ddnsagent_seconds_since_last_change", family="ipv4") == 1000
    assert sample(p, "ddnsagent_address_info", family="ipv6", address="2001:db8::1") == 1
    assert sample(p, "ddnsagent_last_change_timestamp_seconds", family="ipv6") == NOW - 50


def test_the_bounce_gauge_can_count_at_scrape_time() -> None:
    bounces = [3]
    m = Metrics(clock=Clock())
    m.set_bounce_rate(lambda: bounces[0])
    assert sample(parse(m.render()), "ddnsagent_bounces_last_hour") == 3
    bounces[0] = 0  # the hour passed, no new event
    assert sample(parse(m.render()), "ddnsagent_bounces_last_hour") == 0


def test_a_failed_detection_keeps_the_last_known_address() -> None:
    m = Metrics(clock=Clock())
    m.observe_sync(report("203.0.113.7"))
    m.observe_sync(report(None, actions=(("mydns", "no-address"),)))
    p = parse(m.render())
    assert sample(p, "ddnsagent_address_info", family="ipv4", address="203.0.113.7") == 1
    outcome = {"provider": "mydns", "family": "ipv4", "outcome": "no-address"}
    assert sample(p, "ddnsagent_updates_total", **outcome) == 1


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("plain", "plain"),
        ('say "hi"', 'say \\"hi\\"'),
        ("back\\slash", "back\\\\slash"),
        ("two\nlines", "two\\nlines"),
        ('all\\"\n', 'all\\\\\\"\\n'),
        ("日本語 ok", "日本語 ok"),
    ],
)
def test_label_values_are_escaped_as_the_format_says(raw: str, escaped: str) -> None:
    assert escape_label_value(raw) == escaped
    m = Metrics(clock=Clock())
    m.observe_sync(report(actions=((raw, "sent"),)))
    text = m.render()
    assert f'provider="{escaped}"' in text
    p = parse(text)
    assert sample(p, "ddnsagent_updates_total", provider=raw, family="ipv4", outcome="sent") == 1


def test_reconnect_result_labels() -> None:
    def outcome(done: bool, old: str | None, new: str | None) -> ReconnectOutcome:
        return ReconnectOutcome(done, "message", old, new)

    assert reconnect_result(outcome(False, "1.1.1.1", None)) == "skipped"
    assert reconnect_result(outcome(True, "1.1.1.1", "1.1.1.2")) == "ok"
    assert reconnect_result(outcome(True, "1.1.1.1", "1.1.1.1")) == "unchanged"
    assert reconnect_result(outcome(True, "1.1.1.1", None)) == "unchanged"


def test_importing_the_outputs_costs_no_client_library_nor_the_orchestrator() -> None:
    outputs = ", ".join(
        f"ddnsagent.outputs.{name}"
        for name in (
            *("metrics", "metrics_settings", "exporter", "sdnotify", "report"),
            *("notify", "notify_settings", "apprise_urls", "apprise_sender"),
        )
    )
    heavy = {"prometheus_client", "httpx", "apprise", "ddnsagent.sync"}
    heavy |= {"ddnsagent.config", "ddnsagent.daemon"}
    code = f"import sys, {outputs}; print(sorted(set({sorted(heavy)!r}) & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- the HTTP endpoint ---------------------------------------------------------------------------


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


async def started(m: Metrics, host: str = "127.0.0.1") -> tuple[asyncio.Server, str]:
    server = await serve(m, host, 0)
    port = server.sockets[0].getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return server, f"http://{shown}:{port}"


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_scrape_over_loopback(host: str) -> None:
    if host == "::1" and not has_ipv6_loopback():
        pytest.skip("no IPv6 loopback on this machine")
    m = Metrics(clock=Clock())
    m.observe_sync(report(changed=True))

    async def scenario() -> httpx.Response:
        server, base = await started(m, host)
        async with server, httpx.AsyncClient(trust_env=False) as client:
            return await client.get(base + "/metrics")

    response = asyncio.run(scenario())
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE
    assert response.headers["connection"] == "close"
    p = parse(response.text)
    assert sample(p, "ddnsagent_address_info", family="ipv4", address="203.0.113.7") == 1


def test_other_paths_and_methods() -> None:
    m = Metrics(clock=Clock())

    async def scenario() -> dict[str, httpx.Response]:
        server, base = await started(m)
        async with server, httpx.AsyncClient(trust_env=False) as client:
            return {
                "root": await client.get(base + "/"),
                "other": await client.get(base + "/metrics/x"),
                "query": await client.get(base + "/metrics?name[]=up"),
                "post": await client.post(base + "/metrics", content=b"x"),
                "head": await client.head(base + "/metrics"),
            }

    r = asyncio.run(scenario())
    assert r["root"].status_code == 404
    assert r["other"].status_code == 404
    assert r["query"].status_code == 200
    assert r["post"].status_code == 405
    assert r["post"].headers["allow"] == "GET, HEAD"
    assert r["head"].status_code == 200
    assert r["head"].content == b""
    assert int(r["head"].headers["content-length"]) == len(m.render().encode())


async def raw_exchange(base: str, data: bytes, wait: float = 5.0) -> bytes:
    host, port = base.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host.strip("[]"), int(port))
    writer.write(data)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), wait)
    writer.close()
    return answer


def test_oversized_garbled_and_silent_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exporter, "REQUEST_TIMEOUT", 0.3)
    m = Metrics(clock=Clock())

    async def scenario() -> dict[str, bytes]:
        server, base = await started(m)
        async with server:
            huge = b"GET /metrics HTTP/1.1\r\nX-Fill: " + b"a" * 20000 + b"\r\n\r\n"
            return {
                "huge": await raw_exchange(base, huge),
                "garbled": await raw_exchange(base, b"\x16\x03\x01 hello\r\n\r\n"),
                "http09": await raw_exchange(base, b"GET /metrics\r\n\r\n"),
                "silent": await raw_exchange(base, b"GET /metrics HTTP/1.1\r\n"),
                "second": await raw_exchange(
                    base, b"GET /metrics HTTP/1.1\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n"
                ),
            }

    r = asyncio.run(scenario())
    assert r["huge"].startswith(b"HTTP/1.1 431 ")
    assert r["garbled"].startswith(b"HTTP/1.1 400 ")
    assert r["http09"].startswith(b"HTTP/1.1 400 ")
    assert r["silent"].startswith(b"HTTP/1.1 408 ")
    assert r["second"].count(b"HTTP/1.1 200 OK") == 1  # one request per connection


def test_an_address_in_use_raises_oserror() -> None:
    async def scenario() -> None:
        with socket.socket() as other:
            other.bind(("127.0.0.1", 0))
            other.listen()
            with pytest.raises(OSError):
                await serve(Metrics(), "127.0.0.1", other.getsockname()[1])

    asyncio.run(scenario())


# -- the textfile --------------------------------------------------------------------------------


def test_textfile_is_written_whole_readable_and_without_leftovers(tmp_path: Path) -> None:
    m = Metrics(clock=Clock())
    m.observe_sync(report())
    path = tmp_path / "ddnsagent.prom"
    old_umask = os.umask(0o077)
    try:
        write_textfile(m, path)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # node_exporter runs as another user
    assert parse(path.read_text())["ddnsagent_up"] == {(): 1}
    inode = path.stat().st_ino
    m.observe_signal("sent")
    write_textfile(m, path)
    assert path.stat().st_ino != inode  # replaced by rename, never rewritten in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddnsagent.prom"]


def test_a_link_planted_in_the_collector_directory_is_not_followed(tmp_path: Path) -> None:
    """The textfile directory may be writable by node_exporter's user: a symlink planted at our
    file's name is replaced, its target never written."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    path = tmp_path / "ddnsagent.prom"
    path.symlink_to(victim)
    write_textfile(Metrics(clock=Clock()), path)
    assert victim.read_text() == "precious\n"
    assert not path.is_symlink() and "ddnsagent_up" in path.read_text()


def test_a_failed_textfile_write_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = Metrics(clock=Clock())
    path = tmp_path / "ddnsagent.prom"
    write_textfile(m, path)
    before = path.read_text()

    def no_rename(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_rename)
    m.observe_sync(report())
    with pytest.raises(OSError):
        write_textfile(m, path)
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddnsagent.prom"]


def test_textfile_loop_writes_on_change_and_says_down_at_the_end(tmp_path: Path) -> None:
    m = Metrics(clock=Clock())
    path = tmp_path / "ddnsagent.prom"

    async def scenario() -> None:
        task = asyncio.create_task(textfile_loop(m, path, every=30))
        await asyncio.sleep(0.05)
        assert "ddnsagent_up 1" in path.read_text()
        assert "ddnsagent_address_info{" not in path.read_text()
        m.observe_sync(report())  # wakes the writer long before `every`
        await asyncio.sleep(0.05)
        assert "ddnsagent_address_info{" in path.read_text()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    assert "ddnsagent_up 0" in path.read_text()


def test_textfile_loop_survives_an_unwritable_directory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "missing" / "ddnsagent.prom"
    m = Metrics(clock=Clock())

    async def scenario() -> None:
        task = asyncio.create_task(textfile_loop(m, path, every=0.05))
        await asyncio.sleep(0.3)
        assert not task.done()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    errors = [r for r in caplog.records if "cannot write the metrics textfile" in r.getMessage()]
    assert len(errors) == 1  # said once, not every 50 ms


# -- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9787", ("127.0.0.1", 9787)),
        ("[::1]:9787", ("::1", 9787)),
        ("localhost:1", ("localhost", 1)),
        ("0.0.0.0:9787", ("0.0.0.0", 9787)),
        ("[::]:65535", ("::", 65535)),
    ],
)
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize(
    "text",
    ["9787", ":9787", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "::1:9787", "[10.0.0.1]:1",
     "metrics.example.org:9787", "127.0.0.1:port"],
)  # fmt: skip
def test_parse_listen_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(text)


def table(data: dict[str, Any], tmp_path: Path) -> Table:
    return Table(data, "metrics", tmp_path / "config.toml")


def test_parse_metrics(tmp_path: Path) -> None:
    assert parse_metrics(table({"listen": "[::1]:9100"}, tmp_path)) == MetricsConfig(
        ("::1", 9100), None
    )
    cfg = parse_metrics(table({"textfile": "prom/ddnsagent.prom"}, tmp_path))
    assert cfg.textfile == tmp_path / "prom" / "ddnsagent.prom"
    both = parse_metrics(
        table({"listen": "0.0.0.0:9787", "textfile": "/var/lib/x/ddnsagent.prom"}, tmp_path)
    )
    assert both.listen == ("0.0.0.0", 9787)  # beyond loopback is the user's call


@pytest.mark.parametrize(
    ("data", "key", "words"),
    [
        ({}, "metrics.listen", "neither listen nor textfile"),
        ({"listen": "9787"}, "metrics.listen", "HOST:PORT"),
        ({"listen": 9787}, "metrics.listen", "expected a string"),
        ({"textfile": "/tmp/ddnsagent.txt"}, "metrics.textfile", "*.prom"),
        ({"listen": "127.0.0.1:9787", "port": 1}, "metrics.port", "not a known key"),
    ],
)
def test_parse_metrics_errors(tmp_path: Path, data: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_metrics(table(data, tmp_path))
    assert caught.value.key == key
    assert words in str(caught.value)
