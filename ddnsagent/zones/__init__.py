"""The local authoritative zone kept in step with the WAN address.

`registry` maps each `[[zone]] type` to its backend module; `zonefile.edit_zone` is the
byte-preserving editor and `atomic.atomic_write` the one place that replaces a zone file.
The editor's names are re-exported lazily: importing the package (as the configuration does
for `registry`) must not load dnspython's zone parser for a sync that has no zones.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "atomic_write": "ddnsagent.zones.atomic",
    "ZoneEditError": "ddnsagent.errors",
    "ZoneSyntaxError": "ddnsagent.errors",
    "SERIAL_POLICIES": "ddnsagent.zones.serial",
    "SerialPolicy": "ddnsagent.zones.serial",
    "next_serial": "ddnsagent.zones.serial",
    "IPAddress": "ddnsagent.zones.zonefile",
    "Validation": "ddnsagent.zones.zonefile",
    "ZoneEdit": "ddnsagent.zones.zonefile",
    "edit_zone": "ddnsagent.zones.zonefile",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ddnsagent.zones' has no attribute {name!r}")
