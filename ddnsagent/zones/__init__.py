"""The local authoritative zone: edit the managed A/AAAA records of a zone file in place.

``edit_zone`` is pure text editing (it reads ``$INCLUDE`` files only when asked to validate
them); ``atomic_write`` is the one place that touches the zone file on disk.
"""

from ddnsagent.zones.atomic import atomic_write
from ddnsagent.zones.errors import ZoneEditError, ZoneSyntaxError
from ddnsagent.zones.serial import SERIAL_POLICIES, SerialPolicy, next_serial
from ddnsagent.zones.zonefile import IPAddress, Validation, ZoneEdit, edit_zone

__all__ = [
    "SERIAL_POLICIES",
    "IPAddress",
    "SerialPolicy",
    "Validation",
    "ZoneEdit",
    "ZoneEditError",
    "ZoneSyntaxError",
    "atomic_write",
    "edit_zone",
    "next_serial",
]
