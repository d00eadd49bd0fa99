"""Configuration: TOML in, typed objects out.

This module reads [agent] and assembles the rest: each section is read by the module that owns
it, through the same `Table` reader, so every mistake is reported the same way: file, key path,
what was found, what is valid. Unknown keys are errors: a typo must never silently disable a
provider. The owners of optional sections are imported only when the file has the section, so
`status` and `check-config` of a small configuration load little.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ddnsagent import USER_AGENT, providers
from ddnsagent.detect.settings import DetectConfig
from ddnsagent.detect.settings import from_table as parse_detect
from ddnsagent.errors import ConfigError
from ddnsagent.providers.base import Common, read_user_agent
from ddnsagent.table import Table

if TYPE_CHECKING:  # the optional sections' types; their modules load when a section is there
    from ddnsagent.dnsbl.lists import DnsblConfig
    from ddnsagent.outputs.heartbeat_settings import HeartbeatConfig
    from ddnsagent.outputs.metrics_settings import MetricsConfig
    from ddnsagent.outputs.notify_settings import NotifyConfig
    from ddnsagent.relay.settings import ReconnectConfig, RelayConfig
    from ddnsagent.zones.base import ZoneCommon

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
    user_agent: str = USER_AGENT  # each [[provider]]'s own `user_agent` overrides it
    debug_libraries: bool = False  # httpx/httpcore/apscheduler/tzlocal debug records too


@dataclass(frozen=True)
class Config:
    file: Path
    agent: AgentConfig
    detect: DetectConfig
    providers: tuple[Common, ...]  # each provider module's Settings, see ddnsagent.providers
    relay: RelayConfig | None = None
    reconnect: ReconnectConfig | None = None
    zones: tuple[ZoneCommon, ...] = ()  # each backend's Settings, see ddnsagent.zones.registry
    metrics: MetricsConfig | None = None
    notify: NotifyConfig | None = None
    heartbeat: HeartbeatConfig | None = None
    dnsbl: DnsblConfig | None = None  # [dnsbl]: the check runs only when the section is there

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
    return parse(_read(path), path)


def load_front(path: Path) -> tuple[AgentConfig, DetectConfig]:
    """[agent] and [detect] alone, read as `load` reads them, without the plugin sections (whose
    modules load httpx): enough to find the running daemon and check an address for it."""
    top = Table(_read(path), "", path)
    return _parse_agent(top.table("agent")), parse_detect(top.table("detect"))


def _read(path: Path) -> dict[str, Any]:
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
    return data


def parse(data: dict[str, Any], path: Path) -> Config:
    """Each section is read by its owner; this only puts them together."""
    top = Table(data, "", path)
    agent = _parse_agent(top.table("agent"))
    detect = parse_detect(top.table("detect"))
    names: set[str] = set()  # providers and zones share one namespace (state, status)
    targets = _parse_plugins(top, "provider", providers.parse_settings, names)
    zones: list[Any] = []
    if top.has("zone"):
        from ddnsagent.zones import registry  # lazy: only when [[zone]] is there

        zones = _parse_plugins(top, "zone", registry.parse_settings, names)
    relay = reconnect = metrics = notify = None
    if top.has("relay") or top.has("reconnect"):
        # lazy: only when [relay] or [reconnect] is there
        from ddnsagent.relay.settings import parse_reconnect, parse_relay

        relay = parse_relay(top.table("relay")) if top.has("relay") else None
        reconnect = parse_reconnect(top.table("reconnect")) if top.has("reconnect") else None
    if top.has("metrics"):
        from ddnsagent.outputs.metrics_settings import parse_metrics  # lazy: only with [metrics]

        metrics = parse_metrics(top.table("metrics"))
    if top.has("notify"):
        from ddnsagent.outputs.notify_settings import parse_notify  # lazy: only with [notify]

        notify = parse_notify(top.table("notify"))
    heartbeat = None
    if top.has("heartbeat"):
        # lazy: only with [heartbeat]
        from ddnsagent.outputs.heartbeat_settings import parse_heartbeat

        heartbeat = parse_heartbeat(top.table("heartbeat"))
    dnsbl = None
    if top.has("dnsbl"):
        from ddnsagent.dnsbl.lists import parse_dnsbl  # lazy: only with [dnsbl]

        dnsbl = parse_dnsbl(top.table("dnsbl"))
    top.finish()
    return Config(
        path,
        agent,
        detect,
        tuple(targets),
        relay,
        reconnect,
        tuple(zones),
        metrics,
        notify,
        heartbeat=heartbeat,
        dnsbl=dnsbl,
    )


def _parse_plugins(
    top: Table, key: str, parse_settings: Callable[[Table], Any], taken: set[str]
) -> list[Any]:
    """[[provider]] or [[zone]] tables, each read by the module its `type` names."""
    items = top.raw(key, [])
    if not isinstance(items, list):
        raise top.error(key, f"must be written as [[{key}]] tables")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise top.error(f"{key}[{i}]", "must be a table")
        name = item.get("name")
        label = f"{key}[{i}]" if not isinstance(name, str) else f"{key}.{name}"
        settings = parse_settings(Table(item, label, top.file))
        if settings.name in taken:
            raise ConfigError(top.file, f"{label}.name", f"{settings.name!r} is used twice")
        taken.add(settings.name)
        out.append(settings)
    return out


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
        user_agent=read_user_agent(t, USER_AGENT) or USER_AGENT,
        debug_libraries=t.boolean("debug_libraries", False),
    )
    if cfg.interval < 30:
        raise t.error(
            "interval", "must be at least 30s", "providers throttle clients that poll faster"
        )
    t.finish()
    return cfg
