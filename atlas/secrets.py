"""Credentials from Vault / OpenBao (KV v2), by site and role. Nothing here is ever logged.

Paths under the `secret/` mount:
  atlas/netbox                      url, token
  atlas/sites/<site>/<role>         switches: username, password; servers: username, ssh_private_key
  atlas/aws                         bucket, regions, access_key_id, secret_access_key, endpoint_url
  atlas/workloads/<adapter>         the scheduler's API (kubernetes, mesos): url, token, ca_file
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import hvac
import hvac.exceptions
import requests

from atlas.core.errors import Unreachable
from atlas.core.model import Credential
from atlas.core.settings import AtlasSettings, SettingsProblem, load_settings

MOUNT = "secret"


class SecretError(Unreachable):
    pass


@dataclass(frozen=True)
class VaultSettings:
    url: str
    token: str = field(repr=False)

    @classmethod
    def from_settings(cls, settings: AtlasSettings) -> VaultSettings:
        return cls(url=str(settings.vault_addr).rstrip("/"), token=settings.vault_token.get_secret_value())

    @classmethod
    def from_env(cls) -> VaultSettings:
        """From the environment or the settings file (atlas.core.settings)."""
        try:
            return cls.from_settings(load_settings())
        except SettingsProblem as e:
            raise SecretError(str(e)) from None


def site_role_path(site: str, role: str) -> str:
    return f"atlas/sites/{site}/{role}"


def site_bmc_path(site: str) -> str:
    """The login of the site's BMCs (username, password)."""
    return f"atlas/sites/{site}/bmc"


NETBOX_PATH = "atlas/netbox"
AWS_PATH = "atlas/aws"
PROVISIONING_PATH = "atlas/provisioning"  # url: the provisioning service (atlas.provisioning)
WORKLOADS_PATH = "atlas/workloads"  # + /<adapter>


def workloads_path(adapter: str) -> str:
    return f"{WORKLOADS_PATH}/{adapter}"


@dataclass(frozen=True)
class Endpoint:
    """An HTTP API Atlas calls: where, the bearer token it presents, the CA that signs its certificate."""

    url: str
    token: str | None = field(default=None, repr=False)
    ca_file: str | None = None


class Vault:
    def __init__(self, settings: VaultSettings, timeout: float = 10.0) -> None:
        self._url = settings.url
        self._client = hvac.Client(url=settings.url, token=settings.token, timeout=timeout)

    def read(self, path: str) -> dict[str, Any]:
        try:
            response = self._client.secrets.kv.v2.read_secret_version(
                path=path, mount_point=MOUNT, raise_on_deleted_version=True
            )
        except hvac.exceptions.InvalidPath:
            raise SecretError(f"no secret at {MOUNT}/{path}") from None
        except hvac.exceptions.Forbidden:
            raise SecretError(f"not allowed to read {MOUNT}/{path}") from None
        except hvac.exceptions.VaultDown:  # sealed, or standing by
            raise SecretError(
                f"Vault at {self._url} is sealed or down: reading {MOUNT}/{path} failed"
            ) from None
        except hvac.exceptions.VaultError as e:
            raise SecretError(f"reading {MOUNT}/{path} failed: {type(e).__name__}") from None
        except requests.RequestException as e:
            raise SecretError(f"Vault at {self._url} did not answer ({type(e).__name__})") from None
        return dict(response["data"]["data"])

    def write(self, path: str, data: dict[str, str]) -> bool:
        """Writes only when the value differs; True when it wrote."""
        try:
            if self.read(path) == data:
                return False
        except SecretError:
            pass
        self._client.secrets.kv.v2.create_or_update_secret(path=path, secret=data, mount_point=MOUNT)
        return True

    def credential(self, site: str, role: str) -> Credential:
        data = self.read(site_role_path(site, role))
        try:
            return Credential(
                username=data["username"],
                password=data.get("password"),
                ssh_private_key=data.get("ssh_private_key"),
            )
        except KeyError:
            raise SecretError(f"secret {site_role_path(site, role)} has no username") from None

    def netbox(self) -> tuple[str, str]:
        data = self.read(NETBOX_PATH)
        return str(data["url"]), str(data["token"])

    def workloads_endpoint(self, adapter: str) -> Endpoint:
        """The API of the scheduler a workload adapter drains hosts through."""
        data = self.read(workloads_path(adapter))
        if not data.get("url"):
            raise SecretError(f"secret {workloads_path(adapter)} has no url")
        return Endpoint(
            url=str(data["url"]),
            token=str(data["token"]) if data.get("token") else None,
            ca_file=str(data["ca_file"]) if data.get("ca_file") else None,
        )

    def healthy(self) -> bool:
        try:
            return bool(self._client.sys.read_health_status(method="GET").get("initialized"))
        except Exception:
            return False
