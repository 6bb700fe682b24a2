"""Draining work off hosts before they are changed, and giving it back after: one port (`Workloads`),
with an adapter per way a shop runs its work, chosen by the setting ATLAS_WORKLOADS (`workloads` in
atlas.toml):

- `systemd-services` (the default, systemd_services.py): the host image's services run straight on
  hosts as systemd units behind anycast addresses; the host withdraws its addresses, stops the image's
  target (kept stopped across reboots) and sets a drain mark.
- `kubernetes` (kubernetes.py): cordon the node, evict its pods.
- `mesos` (mesos.py): the master's maintenance primitives.

A scheduler's API (url, token, CA) comes from the settings (ATLAS_WORKLOADS_URL, ...) or else from
Vault's secret/atlas/workloads/<adapter>. `workloads_from` builds the chosen adapter; a name Atlas does
not know is refused when a flow reads its sources (atlas.prefect.sources), before it touches anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from atlas.core.errors import Failed
from atlas.core.model import Credential, Device
from atlas.core.registry import Registry
from atlas.core.settings import AtlasSettings
from atlas.secrets import Endpoint, Vault, VaultSettings


class DrainFailed(Failed):
    pass


class Workloads(Protocol):
    def drain(self, host: Device) -> None:
        """Returns once the host takes no new work; raises DrainFailed otherwise."""

    def undrain(self, host: Device) -> None:
        """Returns once the host takes work again; raises DrainFailed otherwise."""

    def drained(self, host: Device) -> bool: ...


CredentialOf = Callable[[Device], Credential]


@dataclass(frozen=True)
class Sources:
    """What an adapter may be built from: the settings, the hosts' credentials, and Vault (made only
    when an adapter reads it)."""

    settings: AtlasSettings
    cred_of: CredentialOf
    vault: Vault | None = None

    def endpoint(self, adapter: str) -> Endpoint:
        """The scheduler's API: from the settings when they name it, else from Vault."""
        s = self.settings
        if s.workloads_url is not None:
            return Endpoint(
                url=str(s.workloads_url),
                token=s.workloads_token.get_secret_value() if s.workloads_token else None,
                ca_file=str(s.workloads_ca_file) if s.workloads_ca_file else None,
            )
        vault = self.vault or Vault(VaultSettings.from_settings(s))
        return vault.workloads_endpoint(adapter)


WorkloadsFactory = Callable[[Sources], Workloads]
WORKLOADS = Registry[WorkloadsFactory](
    "workload adapter", "the setting ATLAS_WORKLOADS / workloads in atlas.toml"
)


def workloads_problem(settings: AtlasSettings) -> str | None:
    """Why the settings' adapter cannot be built, or None: checked when a flow reads its sources,
    before it touches anything."""
    return WORKLOADS.problem("settings", settings.workloads)


def workloads_from(settings: AtlasSettings, cred_of: CredentialOf, vault: Vault | None = None) -> Workloads:
    """The adapter the settings choose, or Refused naming the value."""
    return WORKLOADS.get("settings", settings.workloads)(Sources(settings, cred_of, vault))


# --- the adapters Atlas knows: one module each --------------------------------------------------------
from atlas.workloads import kubernetes, mesos, systemd_services  # noqa: E402  (they use the types above)

WORKLOADS.register("systemd-services", systemd_services.from_sources)
WORKLOADS.register("kubernetes", kubernetes.from_sources)
WORKLOADS.register("mesos", mesos.from_sources)
