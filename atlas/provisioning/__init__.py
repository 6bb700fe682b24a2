"""Provisioning: what a server that has no operating system yet boots from.

`atlas provisioning serve` runs DHCP (Debian's Kea, atlas.provisioning.kea: a reservation per server
NIC MAC that NetBox holds, the image's URL in it) and an HTTP endpoint serving the image catalog
(atlas.provisioning.service) on the provisioning network; flows reach it through
`ProvisioningClient` at the setting ATLAS_PROVISIONING_URL.
"""

from __future__ import annotations

from atlas.provisioning.client import ProvisioningClient, ProvisioningError
from atlas.provisioning.kea import Reservation

__all__ = ["ProvisioningClient", "ProvisioningError", "Reservation"]
