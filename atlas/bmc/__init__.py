"""Servers' BMCs: what a server is (serial, NICs, disks) and its power, before it runs anything.

The seam is `Bmc`, one session with one server's BMC; `PROTOCOLS` registers how BMCs are driven
(`redfish`, atlas.bmc.redfish, through Ironic's sushy client), chosen by the setting
ATLAS_BMC_PROTOCOL. Every call is bounded (ATLAS_BMC_TIMEOUT) and every failure is a `BmcError` that
names the BMC and what it did not do; passwords come from Vault only (`secret/atlas/sites/<site>/bmc`).
"""

from __future__ import annotations

from collections.abc import Callable

from atlas.bmc import redfish
from atlas.bmc.base import Bmc, BmcError, BmcLogin, BootSource, Inventory, Power
from atlas.core.registry import Registry

__all__ = ["PROTOCOLS", "Bmc", "BmcError", "BmcLogin", "BootSource", "Inventory", "Power", "connect"]

PROTOCOLS: Registry[Callable[[BmcLogin], Bmc]] = Registry("BMC protocol", "the setting ATLAS_BMC_PROTOCOL")
PROTOCOLS.register("redfish", redfish.RedfishBmc)


def connect(protocol: str, login: BmcLogin) -> Bmc:
    """A session with one BMC (nothing is sent before the first call)."""
    return PROTOCOLS.get("Atlas", protocol)(login)
