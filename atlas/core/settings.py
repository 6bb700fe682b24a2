"""Where Atlas finds Vault, NetBox and Ceph: the environment, then a settings file, never prefect.yaml.

Variables: VAULT_ADDR, VAULT_TOKEN (as every Vault tool reads them), NETBOX_URL and NETBOX_TOKEN
(optional: without them NetBox's address and token come from Vault's `secret/atlas/netbox`),
CEPH_CONF, NETBOX_TIMEOUT (seconds one NetBox request may take; a hung NetBox fails the run after three
tries instead of stalling it), CEPH_ALLOW_LOOP_DEVICES (ceph-volume may make OSDs on loop devices: the
lab's disks; never in production), ATLAS_WORKLOADS (what drains a host's work: `systemd-services`, the
default, for services run straight on hosts as systemd units; `kubernetes`; `mesos`: atlas.workloads)
with ATLAS_WORKLOADS_URL, ATLAS_WORKLOADS_TOKEN and ATLAS_WORKLOADS_CA_FILE (the scheduler's API;
without them from Vault's `secret/atlas/workloads/<adapter>`), ATLAS_BMC_PROTOCOL (how servers' BMCs
are driven: `redfish`), ATLAS_BMC_SCHEME (`https`, the default, or `http`), ATLAS_BMC_CA_FILE (the CA
that signed the BMCs' certificates; without it the system's) and ATLAS_BMC_TIMEOUT (seconds a BMC
request may take). The settings file is TOML with the
same names in lower case (the workloads ones without `atlas_`), at ATLAS_SETTINGS or
/etc/atlas/atlas.toml; it holds tokens, so it must not be readable by group or others.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Literal

from pydantic import (
    AliasChoices,
    AnyHttpUrl,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from atlas.core.errors import AtlasError

DEFAULT_FILE = Path("/etc/atlas/atlas.toml")
DEFAULT_WORKLOADS = "systemd-services"


class SettingsProblem(AtlasError, RuntimeError):
    """Every missing or wrong setting, named, with where it may come from."""


def settings_file() -> Path:
    return Path(os.environ.get("ATLAS_SETTINGS", DEFAULT_FILE))


def _named(name: str) -> AliasChoices:
    """ATLAS_<NAME> in the environment (WORKLOADS alone could be anyone's), `name` in the file; each
    source accepts both."""
    return AliasChoices(f"atlas_{name}", name)


class AtlasSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="forbid", frozen=True)

    vault_addr: AnyHttpUrl
    vault_token: SecretStr
    netbox_url: AnyHttpUrl | None = None
    netbox_token: SecretStr | None = None
    ceph_conf: Path = Path("/etc/ceph/ceph.conf")
    ceph_allow_loop_devices: bool = False
    netbox_timeout: float = Field(default=60.0, gt=0, le=600)
    workloads: str = Field(default=DEFAULT_WORKLOADS, validation_alias=_named("workloads"))
    workloads_url: AnyHttpUrl | None = Field(default=None, validation_alias=_named("workloads_url"))
    workloads_token: SecretStr | None = Field(default=None, validation_alias=_named("workloads_token"))
    workloads_ca_file: Path | None = Field(default=None, validation_alias=_named("workloads_ca_file"))
    # servers' BMCs (atlas.bmc): how they are reached; their login comes from Vault by site
    bmc_protocol: str = Field(default="redfish", validation_alias=_named("bmc_protocol"))
    bmc_scheme: Literal["https", "http"] = Field(default="https", validation_alias=_named("bmc_scheme"))
    bmc_ca_file: Path | None = Field(default=None, validation_alias=_named("bmc_ca_file"))
    bmc_timeout: float = Field(default=10.0, gt=0, le=120, validation_alias=_named("bmc_timeout"))

    @model_validator(mode="after")
    def _netbox_both_or_neither(self) -> AtlasSettings:
        if (self.netbox_url is None) != (self.netbox_token is None):
            raise ValueError("netbox_url and netbox_token go together (or neither: NetBox from Vault)")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = settings_file()
        sources = [init_settings, env_settings]
        if path.exists():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @property
    def netbox(self) -> tuple[str, str] | None:
        """NetBox's address and token when set here; None: read them from Vault."""
        if self.netbox_url is None or self.netbox_token is None:
            return None
        return str(self.netbox_url).rstrip("/"), self.netbox_token.get_secret_value()


def load_settings() -> AtlasSettings:
    path = settings_file()
    if path.exists() and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SettingsProblem(f"{path} holds tokens but is readable by others: chmod 600 {path}")
    try:
        return AtlasSettings()
    except ValidationError as e:
        where = f"the environment or {path}" + ("" if path.exists() else " (absent)")
        problems = "; ".join(
            f"{'.'.join(map(str, err['loc'])).upper() or 'settings'}: "
            + ("missing" if err["type"] == "missing" else err["msg"])
            for err in e.errors()
        )
        raise SettingsProblem(
            f"Atlas settings from {where}: {problems} (for the lab: `eval $(atlas lab env)`)"
        ) from None
