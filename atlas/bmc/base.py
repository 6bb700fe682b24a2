"""What every way of driving a BMC shares: the seam, the inventory, the login, the error."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv4Address
from pathlib import Path
from typing import Protocol

from atlas.core.errors import AtlasError


class BmcError(AtlasError, RuntimeError):
    """A BMC that did not answer, refused the login, or did not do what it was asked."""


class Power(StrEnum):
    ON = "on"
    OFF = "off"


class BootSource(StrEnum):
    """Where the next boot starts: the server's disk, or the network (PXE, UEFI HTTP boot)."""

    DISK = "disk"
    PXE = "pxe"
    HTTP = "http"


@dataclass(frozen=True)
class Inventory:
    """What a server's BMC reports about its hardware."""

    serial: str
    power: Power
    nics: dict[str, str] = field(default_factory=dict)  # NIC name -> MAC (lower case, colons)
    disks: tuple[str, ...] = ()
    boot_sources: tuple[BootSource, ...] = ()  # what a one-time boot override may choose
    # where the last boot is or stopped (Redfish BootProgress: OSRunning, or the firmware's words)
    boot_progress: str = ""


@dataclass(frozen=True)
class BmcLogin:
    address: IPv4Address
    username: str
    password: str
    scheme: str = "https"
    ca_file: Path | None = None
    timeout: float = 10.0

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.address}"


class Bmc(Protocol):
    def inventory(self) -> Inventory: ...

    def power_on(self, boot: BootSource | None = None) -> None:
        """Switches the server on; `boot`: for this one boot only, from there."""
        ...

    def power_off(self) -> None: ...
