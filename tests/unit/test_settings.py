"""Where Atlas's addresses and tokens come from: environment first, then the settings file."""

from __future__ import annotations

from pathlib import Path

import pytest

from atlas.core.settings import SettingsProblem, load_settings
from atlas.secrets import SecretError, VaultSettings

NAMES = (
    "VAULT_ADDR",
    "VAULT_TOKEN",
    "NETBOX_URL",
    "NETBOX_TOKEN",
    "CEPH_CONF",
    "NETBOX_TIMEOUT",
    *(f"{prefix}WORKLOADS{what}" for prefix in ("", "ATLAS_") for what in ("", "_URL", "_TOKEN", "_CA_FILE")),
)


@pytest.fixture
def settings_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in NAMES:
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "atlas.toml"
    monkeypatch.setenv("ATLAS_SETTINGS", str(path))
    return path


def write(path: Path, text: str, mode: int = 0o600) -> None:
    path.write_text(text)
    path.chmod(mode)


def test_from_the_file_with_netbox_from_vault(settings_path: Path) -> None:
    write(settings_path, 'vault_addr = "http://127.0.0.1:8200"\nvault_token = "s.file"\n')
    settings = load_settings()
    assert VaultSettings.from_settings(settings) == VaultSettings("http://127.0.0.1:8200", "s.file")
    assert settings.netbox is None  # read from Vault's secret/atlas/netbox
    assert settings.ceph_conf == Path("/etc/ceph/ceph.conf")
    assert settings.netbox_timeout == 60


def test_the_environment_wins_over_the_file(settings_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(
        settings_path,
        'vault_addr = "http://127.0.0.1:8200"\nvault_token = "s.file"\nceph_conf = "/srv/ceph.conf"\n',
    )
    monkeypatch.setenv("VAULT_TOKEN", "s.env")
    monkeypatch.setenv("NETBOX_URL", "http://127.0.0.1:8000/")
    monkeypatch.setenv("NETBOX_TOKEN", "nbt_x.y")
    settings = load_settings()
    assert settings.vault_token.get_secret_value() == "s.env"
    assert settings.netbox == ("http://127.0.0.1:8000", "nbt_x.y")
    assert settings.ceph_conf == Path("/srv/ceph.conf")


def test_every_problem_is_named_and_no_token_is_shown(
    settings_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VAULT_ADDR", "not a url")
    monkeypatch.setenv("NETBOX_TIMEOUT", "0")
    monkeypatch.setenv("NETBOX_TOKEN", "nbt_secret.value")
    with pytest.raises(SettingsProblem) as e:
        load_settings()
    message = str(e.value)
    assert "VAULT_ADDR" in message and "VAULT_TOKEN: missing" in message
    assert "NETBOX_TIMEOUT: Input should be greater than 0" in message
    assert "(absent)" in message and "nbt_secret" not in message


def test_netbox_address_and_token_go_together(settings_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULT_ADDR", "http://127.0.0.1:8200")
    monkeypatch.setenv("VAULT_TOKEN", "s.env")
    monkeypatch.setenv("NETBOX_URL", "http://127.0.0.1:8000")
    with pytest.raises(SettingsProblem, match="netbox_url and netbox_token go together"):
        load_settings()


def test_unknown_names_in_the_file_are_refused(settings_path: Path) -> None:
    write(settings_path, 'vault_addr = "http://127.0.0.1:8200"\nvault_token = "t"\nnetbox_tokn = "x"\n')
    with pytest.raises(SettingsProblem, match="NETBOX_TOKN"):
        load_settings()


def test_a_file_others_can_read_is_refused(settings_path: Path) -> None:
    write(settings_path, 'vault_addr = "http://127.0.0.1:8200"\nvault_token = "t"\n', mode=0o644)
    with pytest.raises(SettingsProblem, match="chmod 600"):
        load_settings()


def test_vault_settings_say_what_is_missing(settings_path: Path) -> None:
    with pytest.raises(SecretError, match="VAULT_ADDR: missing; VAULT_TOKEN: missing"):
        VaultSettings.from_env()
