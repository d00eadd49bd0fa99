"""Configuration errors name the file, the key, what was found and the fix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ddnsagent import config
from ddnsagent.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent

MINIMAL = """
[agent]
state_dir = "{state}"
[detect]
ipv4 = ["web:http://127.0.0.1:9/"]
[[provider]]
name = "home"
type = "mydns"
master_id = "mydns1"
password_env = "X_PASSWORD"
"""


def write(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text.replace("{state}", str(tmp_path / "state")))
    os.chmod(path, mode)
    return path


def error_of(tmp_path: Path, text: str, mode: int = 0o600) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        config.load(write(tmp_path, text, mode))
    return info.value


def test_minimal_config_is_typed(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, MINIMAL))
    assert cfg.agent.interval == 300
    assert cfg.detect.ipv4[0].kind == "web"
    (home,) = cfg.providers
    assert (home.name, home.master_id, home.ipv4, home.ipv6) == ("home", "mydns1", True, False)
    assert home.keepalive == 24 * 3600
    assert home.url_ipv4 == "https://ipv4.mydns.jp/login.html"


def test_example_config_is_valid_and_identical_to_the_init_template() -> None:
    cfg = config.load(ROOT / "config.example.toml")
    assert [p.name for p in cfg.providers] == ["home", "noip"]
    packaged = ROOT / "ddnsagent" / "data" / "config.example.toml"
    assert packaged.read_text() == (ROOT / "config.example.toml").read_text()


def test_unknown_key_is_an_error_with_a_suggestion(tmp_path: Path) -> None:
    err = error_of(tmp_path, MINIMAL + 'keepalvie = "1d"\n')
    assert err.key == "provider.home.keepalvie"
    text = str(err)
    assert str(tmp_path / "config.toml") in text
    assert "is not a known key" in text and "did you mean 'keepalive'" in text


def test_missing_required_key(tmp_path: Path) -> None:
    err = error_of(tmp_path, MINIMAL.replace("master_id", "masterid"))
    assert err.key == "provider.home.master_id"
    assert "required" in str(err)


def test_typo_in_a_section_key(tmp_path: Path) -> None:
    err = error_of(tmp_path, MINIMAL.replace("[agent]", '[agent]\nintervall = "5m"'))
    assert err.key == "agent.intervall"
    assert "interval" in str(err)


def test_unknown_provider_type_lists_valid_ones(tmp_path: Path) -> None:
    err = error_of(tmp_path, MINIMAL.replace('type = "mydns"', 'type = "mydsn"'))
    assert err.key == "provider.home.type"
    assert "'mydsn'" in str(err) and "mydns" in str(err) and "dyndns2" in str(err)


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ('interval = "5 minutes"', "agent.interval", "30s"),
        ("interval = 300", "agent.interval", '"300s"'),
        ('interval = "5s"', "agent.interval", "at least 30s"),
        ('log_level = "loud"', "agent.log_level", "debug, info"),
    ],
)
def test_agent_values(tmp_path: Path, text: str, key: str, fragment: str) -> None:
    err = error_of(tmp_path, MINIMAL.replace("[agent]", f"[agent]\n{text}"))
    assert err.key == key
    assert fragment in str(err)


@pytest.mark.parametrize(
    ("sources", "fragment"),
    [
        ('["ppp0"]', "interface:NAME"),
        ('["interface:"]', "names no interface"),
        ('["web:http://198.51.100.1/"]', "plain HTTP"),
        ('["web:ftp://x"]', "http(s) URL"),
        ('["dns:nowhere"]', "dns:opendns"),
        ('["dns:myip@::1"]', "IPv4 address"),
        ('"web"', 'write ["web"]'),
    ],
)
def test_bad_sources(tmp_path: Path, sources: str, fragment: str) -> None:
    text = MINIMAL.replace('ipv4 = ["web:http://127.0.0.1:9/"]', f"ipv4 = {sources}")
    err = error_of(tmp_path, text)
    assert err.key.startswith("detect.ipv4")
    assert fragment in str(err)


def test_insecure_http_opt_in(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        'ipv4 = ["web:http://127.0.0.1:9/"]',
        'ipv4 = ["web:http://198.51.100.1/"]\ninsecure_http = true',
    )
    assert config.load(write(tmp_path, text)).detect.insecure_http


def test_plain_http_provider_url_refused(tmp_path: Path) -> None:
    err = error_of(tmp_path, MINIMAL + 'url_ipv4 = "http://ipv4.mydns.jp/login.html"\n')
    assert err.key == "provider.home.url_ipv4"
    assert "https://" in str(err)


def test_inline_password_in_a_readable_file_is_refused_with_chmod(tmp_path: Path) -> None:
    text = MINIMAL.replace('password_env = "X_PASSWORD"', 'password = "hunter2hunter2"')
    err = error_of(tmp_path, text, mode=0o644)
    assert "chmod 600" in str(err)
    assert "hunter2" not in str(err)
    config.load(write(tmp_path, text, mode=0o600))


def test_two_password_sources_conflict(tmp_path: Path) -> None:
    text = MINIMAL + 'password_file = "/x"\n'
    err = error_of(tmp_path, text)
    assert "conflicts" in str(err)


def test_duplicate_provider_names(tmp_path: Path) -> None:
    text = MINIMAL + MINIMAL[MINIMAL.index("[[provider]]") :]
    err = error_of(tmp_path, text)
    assert "used twice" in str(err)


def test_dyndns2_preset_and_server_conflict(tmp_path: Path) -> None:
    text = (
        MINIMAL
        + """
[[provider]]
name = "n"
type = "dyndns2"
preset = "noip"
server = "https://example.net/nic/update"
hostnames = ["h.example.net"]
username = "u"
password_env = "P"
"""
    )
    err = error_of(tmp_path, text)
    assert err.key == "provider.n.server"


def test_dyndns2_preset_fills_server_and_keepalive(tmp_path: Path) -> None:
    text = (
        MINIMAL
        + """
[[provider]]
name = "n"
type = "dyndns2"
preset = "noip"
hostnames = ["h.example.net"]
username = "u"
password_env = "P"
"""
    )
    cfg = config.load(write(tmp_path, text))
    noip = cfg.providers[1]
    assert noip.server == "https://dynupdate.no-ip.com/nic/update"
    assert noip.keepalive == 25 * 86400


def test_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    err = error_of(tmp_path, "[agent\n")
    assert "TOML syntax error" in str(err) and "config.toml" in str(err)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ddnsagent init"):
        config.load(tmp_path / "nope.toml")


def test_config_path_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DDNSAGENT_CONFIG", str(tmp_path / "c.toml"))
    assert config.default_config_path() == tmp_path / "c.toml"
    monkeypatch.delenv("DDNSAGENT_CONFIG")
    expected = "/etc/ddnsagent/config.toml" if os.geteuid() == 0 else "ddnsagent"
    assert expected in str(config.default_config_path())
