"""Configuration: TOML in, typed objects out.

Everything that reads the user's file lives here (and in each provider's `from_table`, which
uses the same `Table` reader), so every mistake is reported the same way: file, key path, what
was found, what is valid. Unknown keys are errors: a typo must never silently disable a provider.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ddnsagent.detect.settings import DetectConfig
from ddnsagent.detect.settings import from_table as _parse_detect
from ddnsagent.errors import ConfigError
from ddnsagent.relay.settings import ReconnectConfig, RelayConfig, parse_reconnect, parse_relay
from ddnsagent.table import Table

LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class AgentConfig:
    interval: float = 300.0
    jitter: float = 30.0
    state_dir: Path = field(default_factory=lambda: default_state_dir())
    log_level: str = "info"
    retries: int = 3
    retry_delay: float = 2.0
    lock_timeout: float = 120.0
    control_socket: Path | None = None  # default: see ddnsagent.control


@dataclass(frozen=True)
class Config:
    file: Path
    agent: AgentConfig
    detect: DetectConfig
    providers: tuple[Any, ...]  # provider settings objects, see ddnsagent.providers
    relay: RelayConfig | None = None
    reconnect: ReconnectConfig | None = None
    zones: tuple[Any, ...] = ()  # local-zone settings objects, see ddnsagent.zones.registry
    metrics: Any = None  # ddnsagent.metrics.MetricsConfig
    notify: Any = None  # ddnsagent.notify.NotifyConfig

    @property
    def families(self) -> list[int]:
        return [f for f in (4, 6) if self.detect.sources(f)]


def default_state_dir() -> Path:
    """$STATE_DIRECTORY (systemd's StateDirectory=), /var/lib/ddnsagent for root, else the
    user state dir — so root's `ddnsagent status` reads what the service wrote."""
    env = os.environ.get("STATE_DIRECTORY")
    if env:
        return Path(env.split(":")[0])
    if os.geteuid() == 0:
        return Path("/var/lib/ddnsagent")
    import platformdirs

    return Path(platformdirs.user_state_dir("ddnsagent"))


def default_config_path() -> Path:
    """--config, else $DDNSAGENT_CONFIG, else /etc/… for root, else the user config dir."""
    env = os.environ.get("DDNSAGENT_CONFIG")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/etc/ddnsagent/config.toml")
    import platformdirs

    return Path(platformdirs.user_config_dir("ddnsagent")) / "config.toml"


def load(path: Path) -> Config:
    """Read and validate the whole file; raises ConfigError naming the first mistake."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            path, "", "no such file", "create one with `ddnsagent init PATH` or pass --config"
        ) from None
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(path, "", "is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "", f"TOML syntax error: {exc}") from None
    return parse(data, path)


def parse(data: dict[str, Any], path: Path) -> Config:
    from ddnsagent import providers

    top = Table(data, "", path)
    agent = _parse_agent(top.table("agent"))
    detect = _parse_detect(top.table("detect"))
    provider_list = top.raw("provider", [])
    if not isinstance(provider_list, list):
        raise top.error("provider", "must be written as [[provider]] tables")
    parsed = []
    names: set[str] = set()
    for i, item in enumerate(provider_list):
        if not isinstance(item, dict):
            raise top.error(f"provider[{i}]", "must be a table")
        name = item.get("name")
        label = f"provider[{i}]" if not isinstance(name, str) else f"provider.{name}"
        settings = providers.parse_settings(Table(item, label, path))
        if settings.name in names:
            raise ConfigError(path, f"{label}.name", f"{settings.name!r} is used twice")
        names.add(settings.name)
        parsed.append(settings)
    zones = _parse_zones(top, path, names)
    relay = parse_relay(top.table("relay")) if top.has("relay") else None
    reconnect = parse_reconnect(top.table("reconnect")) if top.has("reconnect") else None
    metrics = notify = None
    if top.has("metrics"):
        from ddnsagent.outputs.metrics_settings import parse_metrics

        metrics = parse_metrics(top.table("metrics"))
    if top.has("notify"):
        from ddnsagent.outputs.notify_settings import parse_notify

        notify = parse_notify(top.table("notify"))
    top.finish()
    return Config(path, agent, detect, tuple(parsed), relay, reconnect, zones, metrics, notify)


def _parse_zones(top: Table, path: Path, taken: set[str]) -> tuple[Any, ...]:
    """[[zone]] tables; their names share one namespace with the providers (state, status)."""
    zone_list = top.raw("zone", [])
    if not zone_list:
        return ()
    if not isinstance(zone_list, list):
        raise top.error("zone", "must be written as [[zone]] tables")
    from ddnsagent.zones import registry

    out = []
    for i, item in enumerate(zone_list):
        if not isinstance(item, dict):
            raise top.error(f"zone[{i}]", "must be a table")
        name = item.get("name")
        label = f"zone[{i}]" if not isinstance(name, str) else f"zone.{name}"
        settings = registry.parse_settings(Table(item, label, path))
        if settings.name in taken:
            raise ConfigError(path, f"{label}.name", f"{settings.name!r} is used twice")
        taken.add(settings.name)
        out.append(settings)
    return tuple(out)


def _parse_agent(t: Table) -> AgentConfig:
    state_dir = t.string("state_dir", None)
    cfg = AgentConfig(
        interval=t.duration("interval", 300.0),
        jitter=t.duration("jitter", 30.0),
        state_dir=Path(state_dir) if state_dir else default_state_dir(),
        log_level=t.string("log_level", "info", LOG_LEVELS),
        retries=t.integer("retries", 3, minimum=1),
        retry_delay=t.duration("retry_delay", 2.0),
        lock_timeout=t.duration("lock_timeout", 120.0),
        control_socket=Path(t.string("control_socket")) if t.has("control_socket") else None,
    )
    if cfg.interval < 30:
        raise t.error(
            "interval", "must be at least 30s", "providers throttle clients that poll faster"
        )
    t.finish()
    return cfg
