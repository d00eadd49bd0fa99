"""A zone through the command line: applied in the same sync as providers, its result shown by
`status`, and a failing zone never blocking a provider."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ddnsagent, write_config
from tests.fakes import Dyndns2Server

ZONE = """$TTL 300
@   IN SOA ns.example.net. host.example.net. ( 2026010101 3600 600 86400 300 )
    IN NS ns.example.net.
    IN MX 10 mail.example.net.
ns  IN A 192.0.2.53
mail IN A 192.0.2.1 ; the mail host follows the WAN address
"""


def test_zone_and_provider_in_one_sync(tmp_path: Path) -> None:
    zone = tmp_path / "db.example.net"
    zone.write_text(ZONE)
    with Dyndns2Server({"me": "pw-zone-1"}, {"home.example.net": None}) as dyn:
        config = write_config(
            tmp_path,
            f'[agent]\nstate_dir = "{tmp_path}/state"\n[detect]\nipv4 = []\naccept = "any"\n'
            f'[[provider]]\nname = "dd"\ntype = "dyndns2"\nserver = "{dyn.update_url}"\n'
            'hostnames = ["home.example.net"]\nusername = "me"\npassword = "pw-zone-1"\n'
            f'[[zone]]\nname = "local"\ntype = "zonefile"\npath = "{zone}"\n'
            'origin = "example.net"\nnames = ["mail"]\ncheck = []\nreload = []\n'
            f'[[zone]]\nname = "broken"\ntype = "zonefile"\npath = "{tmp_path}/missing.db"\n'
            'origin = "example.org"\nnames = ["mail"]\ncheck = []\nreload = []\n',
        )
        run = ddnsagent("notify-now", "--config", config, "--address", "203.0.113.9", "--json")
        report = json.loads(run.stdout)
        actions = {t["name"]: t["action"] for t in report["targets"]}
        assert actions == {"dd": "sent", "local": "sent", "broken": "failed"}, run.stdout
        assert run.returncode == 1  # the broken zone will be retried
        assert dyn.record("home.example.net").ipv4 == "203.0.113.9"
    text = zone.read_text()
    assert "mail IN A 203.0.113.9 ; the mail host follows the WAN address" in text
    assert "2026010101" not in text  # the serial moved
    status = ddnsagent("status", "--json", "--config", config)
    zones = {z["name"]: z for z in json.loads(status.stdout)["zones"]}
    assert zones["local"]["result"] == "ok"
    assert zones["broken"]["result"] == "failed" and "missing.db" in zones["broken"]["error"]
    human = ddnsagent("status", "--config", config).stdout
    assert "zone local [zonefile]: ok" in human and "zone broken [zonefile]: failed" in human


def test_registry_and_base_load_no_dnspython() -> None:
    """Reading the configuration imports the registry, and the agent the protocol and
    `desired`: neither may pay for dnspython until a zone's backend is loaded."""
    code = (
        "import sys, ddnsagent.zones.registry, ddnsagent.zones.base; "
        "print(sorted(m for m in sys.modules if m == 'dns' or m.startswith('dns.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
