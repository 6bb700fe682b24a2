"""What the flows know about a datacenter, as read from NetBox.

Every flow reads intent into these models once and works from them afterwards; nothing here talks to
a server. Names and free text that may later reach a switch CLI or a shell are checked by
`atlas.core.safety` before any device is touched, not here: a model must be able to hold bad NetBox data
so that preflight can name every problem at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv4Interface, IPv4Network
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DeviceStatus(StrEnum):
    PLANNED = "planned"
    STAGED = "staged"
    ACTIVE = "active"
    FAILED = "failed"
    OFFLINE = "offline"
    DECOMMISSIONING = "decommissioning"
    INVENTORY = "inventory"


class RackStatus(StrEnum):
    PLANNED = "planned"
    ACTIVE = "active"
    RESERVED = "reserved"
    AVAILABLE = "available"
    DEPRECATED = "deprecated"


class Role(StrEnum):
    """Device roles Atlas acts on; NetBox slugs."""

    CORE = "core"
    SPINE = "spine"
    LEAF = "leaf"
    COMPUTE = "compute"
    STORAGE = "storage"
    CLIENT = "client"

    @property
    def is_switch(self) -> bool:
        return self in (Role.CORE, Role.SPINE, Role.LEAF)

    @property
    def is_server(self) -> bool:
        return self in (Role.COMPUTE, Role.STORAGE)


class InterfaceKind(StrEnum):
    MGMT = "mgmt"
    LOOPBACK = "loopback"
    PHYSICAL = "physical"
    OOB = "oob"  # the server's BMC port, on the out-of-band network: not a NIC of the host


class Endpoint(Frozen):
    device: str
    interface: str

    def __str__(self) -> str:
        return f"{self.device}:{self.interface}"


class Interface(Frozen):
    name: str
    kind: InterfaceKind = InterfaceKind.PHYSICAL
    description: str = ""
    enabled: bool = True
    addresses: tuple[IPv4Interface, ...] = ()
    mac: str | None = None  # the NIC's MAC as NetBox holds it (lower case, colons); None: not known yet


class Cable(Frozen):
    a: Endpoint
    b: Endpoint
    status: str = "connected"

    def ends(self) -> tuple[Endpoint, Endpoint]:
        return (self.a, self.b)

    def ends_from(self, device: str) -> tuple[Endpoint, Endpoint]:
        """(the end on `device`, the far end); a cable of `device` is assumed."""
        return (self.a, self.b) if self.a.device == device else (self.b, self.a)


class Device(Frozen):
    name: str
    site: str
    rack: str | None = None
    role: Role
    platform: str | None = None
    status: DeviceStatus = DeviceStatus.PLANNED
    device_type: str
    serial: str = ""  # as recorded when the hardware arrived; a BMC's report is checked against it
    mgmt_address: IPv4Interface | None = None
    loopback: IPv4Interface | None = None
    # service addresses the server announces over OSPF from its own FRR; in NetBox: role anycast on lo
    anycast: tuple[IPv4Interface, ...] = ()
    interfaces: tuple[Interface, ...] = ()
    disks: tuple[str, ...] = ()  # data disks NetBox lists (inventory items of role "disk")
    # disk -> its block device on the host (/dev/...), the disk's custom field device_path in NetBox
    disk_paths: dict[str, str] = Field(default_factory=dict)
    asn: int | None = None  # its BGP ASN, NetBox's ASN object its custom field bgp_asn names
    custom_fields: dict[str, Any] = Field(default_factory=dict)
    netbox_id: int | None = None

    def interface(self, name: str) -> Interface | None:
        return next((i for i in self.interfaces if i.name == name), None)

    @property
    def oob_address(self) -> IPv4Interface | None:
        """The BMC's address on the out-of-band network (NetBox's OOB IP of the device)."""
        return next((a for i in self.interfaces if i.kind == InterfaceKind.OOB for a in i.addresses), None)

    @property
    def nics(self) -> tuple[Interface, ...]:
        """The host's network ports: management first, then the fabric ports (no loopback, no BMC)."""
        return tuple(i for i in self.interfaces if i.kind in (InterfaceKind.MGMT, InterfaceKind.PHYSICAL))


class Rack(Frozen):
    name: str
    site: str
    status: RackStatus = RackStatus.PLANNED
    netbox_id: int | None = None


class Prefix(Frozen):
    prefix: IPv4Network
    role: str
    site: str | None = None
    description: str = ""


class Site(Frozen):
    """A site as a flow sees it: everything in it, and the cables that leave it."""

    name: str
    description: str = ""
    racks: tuple[Rack, ...] = ()
    devices: tuple[Device, ...] = ()
    cables: tuple[Cable, ...] = ()
    prefixes: tuple[Prefix, ...] = ()
    # the ASN range its devices' ASNs come from (custom field bgp_asn_range): name, first, last
    asn_range: tuple[str, int, int] | None = None
    custom_fields: dict[str, Any] = Field(default_factory=dict)
    netbox_id: int | None = None

    def device(self, name: str) -> Device | None:
        return next((d for d in self.devices if d.name == name), None)

    def devices_in(self, rack: str) -> tuple[Device, ...]:
        return tuple(d for d in self.devices if d.rack == rack)

    def cables_of(self, device: str) -> tuple[Cable, ...]:
        return tuple(c for c in self.cables if device in (c.a.device, c.b.device))


class Change(Frozen):
    """One change a step made, or would make in a dry run; `changed=False` means already in place."""

    target: str
    what: str
    before: Any = None
    after: Any = None
    changed: bool


@dataclass(frozen=True)
class Credential:
    """A login for a device or host, read from Vault at run time; never in a repr, log or artifact."""

    username: str
    password: str | None = field(default=None, repr=False)
    ssh_private_key: str | None = field(default=None, repr=False)

    def secret_values(self) -> list[str]:
        return [v for v in (self.password, self.ssh_private_key) if v]
