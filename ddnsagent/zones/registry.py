"""The registry of local-zone backends. Adding one: a module with TYPE, KEYS, Settings
(extending base.ZoneCommon), `from_table` and `Backend`, plus one line here."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from ddnsagent.config import Table

TYPES = {
    "zonefile": "ddnsagent.zones.bindfile",
    "rfc2136": "ddnsagent.zones.rfc2136",
    "unbound": "ddnsagent.zones.unbound",
    "dnsmasq": "ddnsagent.zones.dnsmasq",
}


def module(type_name: str) -> ModuleType:
    return importlib.import_module(TYPES[type_name])


def parse_settings(t: Table) -> Any:
    type_name = t.string("type", choices=TYPES)
    settings = module(type_name).from_table(t)
    t.finish()
    return settings


def backend_for(settings: Any) -> Any:
    return module(settings.type).Backend(settings)
