"""The registry of provider types. Adding one: a module with TYPE, KEYS, Settings,
`from_table` and `Client`, plus one line here."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from ddnsagent.config import Table

TYPES = {
    "mydns": "ddnsagent.providers.mydns",
    "dyndns2": "ddnsagent.providers.dyndns2",
    "cloudflare": "ddnsagent.providers.cloudflare",
    "duckdns": "ddnsagent.providers.duckdns",
    "dynv6": "ddnsagent.providers.dynv6",
    "desec": "ddnsagent.providers.desec",
    "url": "ddnsagent.providers.url",
    "lexicon": "ddnsagent.providers.lexicon",
    "rfc2136": "ddnsagent.providers.rfc2136",
}


def module(type_name: str) -> ModuleType:
    return importlib.import_module(TYPES[type_name])


def parse_settings(t: Table) -> Any:
    type_name = t.string("type", choices=TYPES)
    settings = module(type_name).from_table(t)
    t.finish()
    return settings


def client_for(settings: Any) -> Any:
    return module(settings.type).Client(settings)
