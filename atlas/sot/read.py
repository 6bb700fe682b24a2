"""Typed reads of a whole site or rack, in a bounded number of API calls.

One list call per object kind for the whole site (paginated by NetBox at 1000 objects), never a call
per device or interface: a 270-device site is read in about as many calls as a 10-device one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from ipaddress import IPv4Interface
from typing import Any

import pynetbox

from atlas.model import (
    Cable,
    Device,
    DeviceStatus,
    Endpoint,
    Interface,
    InterfaceKind,
    Prefix,
    Rack,
    RackStatus,
    Role,
    Site,
)
from atlas.sot.schema import DISK_PATH_FIELD

# Keeps query strings well below gunicorn's 4094-byte request line limit.
_IDS_PER_QUERY = 150
# Only the fields Atlas reads: NetBox serializes a full interface four times slower.
_DEVICE_FIELDS = "id,name,site,rack,role,platform,status,device_type,custom_fields"
_INTERFACE_FIELDS = "id,name,device,mgmt_only,type,description,enabled"
_ADDRESS_FIELDS = "address,role,assigned_object_type,assigned_object_id"
_CABLE_FIELDS = "status,a_terminations,b_terminations"
_DISK_FIELDS = "name,device,role,custom_fields"
DISK_ROLE = "disk"  # the NetBox inventory item role of data disks
ANYCAST_ROLE = "anycast"  # the NetBox IP address role of service addresses several servers announce


class NotInNetBox(LookupError):
    pass


def _chunks[T](ids: list[T], size: int = _IDS_PER_QUERY) -> Iterator[list[T]]:
    for i in range(0, len(ids), size):
        yield ids[i : i + size]


def _name(obj: Any) -> str | None:
    return None if obj is None else str(obj["name"] if isinstance(obj, dict) else obj.name)


def _slug(obj: Any) -> str | None:
    return None if obj is None else str(obj["slug"] if isinstance(obj, dict) else obj.slug)


def _value(choice: Any) -> str:
    return str(choice["value"] if isinstance(choice, dict) else choice.value)


def _endpoint(termination: Any) -> Endpoint | None:
    if termination.get("object_type") != "dcim.interface":
        return None
    obj = termination["object"]
    return Endpoint(device=obj["device"]["name"], interface=obj["name"])


def cables_from(records: Iterable[Any]) -> list[Cable]:
    cables = []
    for c in records:
        raw = dict(c)
        a_terms, b_terms = raw.get("a_terminations") or [], raw.get("b_terminations") or []
        if len(a_terms) != 1 or len(b_terms) != 1:
            continue  # Atlas cables are one interface to one interface; others are not fabric
        a, b = _endpoint(a_terms[0]), _endpoint(b_terms[0])
        if a is not None and b is not None:
            cables.append(Cable(a=a, b=b, status=_value(c.status)))
    return cables


def _interface_kind(record: Any) -> InterfaceKind:
    if record.mgmt_only:
        return InterfaceKind.MGMT
    if _value(record.type) == "virtual":
        return InterfaceKind.LOOPBACK
    return InterfaceKind.PHYSICAL


def _device_models(
    nb: pynetbox.api, devices: list[Any], interfaces: list[Any], disks: list[Any]
) -> list[Device]:
    addresses: list[Any] = []
    for ids in _chunks([d.id for d in devices]):
        addresses += nb.ipam.ip_addresses.filter(device_id=ids, fields=_ADDRESS_FIELDS)
    disks_by_device: dict[int, list[str]] = defaultdict(list)
    disk_paths: dict[int, dict[str, str]] = defaultdict(dict)
    for item in disks:  # filtered here: NetBox refuses a role filter naming a role it does not have yet
        if _slug(item.role) == DISK_ROLE:
            disks_by_device[item.device.id].append(str(item.name))
            if path := (item.custom_fields or {}).get(DISK_PATH_FIELD):
                disk_paths[item.device.id][str(item.name)] = str(path)
    device_of_iface = {i.id: i.device.id for i in interfaces}
    addrs_by_iface: dict[int, list[IPv4Interface]] = defaultdict(list)
    anycast_by_device: dict[int, list[IPv4Interface]] = defaultdict(list)
    for a in addresses:
        if a.assigned_object_type == "dcim.interface" and a.assigned_object_id is not None:
            if (
                a.role is not None
                and _value(a.role) == ANYCAST_ROLE
                and a.assigned_object_id in device_of_iface
            ):
                anycast_by_device[device_of_iface[a.assigned_object_id]].append(IPv4Interface(a.address))
            else:
                addrs_by_iface[a.assigned_object_id].append(IPv4Interface(a.address))
    ifaces_by_device: dict[int, list[Interface]] = defaultdict(list)
    for i in sorted(interfaces, key=lambda i: i.id):
        ifaces_by_device[i.device.id].append(
            Interface(
                name=i.name,
                kind=_interface_kind(i),
                description=i.description or "",
                enabled=bool(i.enabled),
                addresses=tuple(addrs_by_iface.get(i.id, ())),
            )
        )

    def first_address(ifaces: list[Interface], kind: InterfaceKind) -> IPv4Interface | None:
        return next((a for i in ifaces if i.kind == kind for a in i.addresses), None)

    models = []
    for d in devices:
        ifaces = ifaces_by_device.get(d.id, [])
        models.append(
            Device(
                name=d.name,
                site=str(_name(d.site)),
                rack=_name(d.rack),
                role=Role(_slug(d.role) or ""),
                platform=_slug(d.platform),
                status=DeviceStatus(_value(d.status)),
                device_type=str(d.device_type.model),
                mgmt_address=first_address(ifaces, InterfaceKind.MGMT),
                loopback=first_address(ifaces, InterfaceKind.LOOPBACK),
                anycast=tuple(sorted(anycast_by_device.get(d.id, []))),
                interfaces=tuple(ifaces),
                disks=tuple(sorted(disks_by_device.get(d.id, []))),
                disk_paths=disk_paths.get(d.id, {}),
                custom_fields=dict(d.custom_fields or {}),
                netbox_id=d.id,
            )
        )
    return sorted(models, key=lambda d: d.name)


def read_site(nb: pynetbox.api, name: str) -> Site:
    site = nb.dcim.sites.get(name=name)
    if site is None:
        raise NotInNetBox(f"site {name!r} is not in NetBox")
    racks = list(nb.dcim.racks.filter(site_id=site.id))
    devices = list(nb.dcim.devices.filter(site_id=site.id, fields=_DEVICE_FIELDS))
    interfaces = list(nb.dcim.interfaces.filter(site_id=site.id, fields=_INTERFACE_FIELDS))
    cables = list(nb.dcim.cables.filter(site_id=site.id, fields=_CABLE_FIELDS))
    prefixes = list(nb.ipam.prefixes.filter(site_id=site.id))
    disks = list(nb.dcim.inventory_items.filter(site_id=site.id, fields=_DISK_FIELDS))
    return Site(
        name=name,
        description=site.description or "",
        racks=tuple(
            Rack(name=r.name, site=name, status=RackStatus(_value(r.status)), netbox_id=r.id) for r in racks
        ),
        devices=tuple(_device_models(nb, devices, interfaces, disks)),
        cables=tuple(cables_from(cables)),
        prefixes=tuple(
            Prefix(prefix=p.prefix, role=_slug(p.role) or "", site=name, description=p.description or "")
            for p in prefixes
        ),
        netbox_id=site.id,
    )


def read_devices(nb: pynetbox.api, names: list[str]) -> list[Device]:
    """Named devices of any site (the far ends of a rack's cables) without reading their sites."""
    devices: list[Any] = []
    for chunk in _chunks(sorted(names)):
        devices += nb.dcim.devices.filter(name=chunk, fields=_DEVICE_FIELDS)
    interfaces: list[Any] = []
    disks: list[Any] = []
    for ids in _chunks([d.id for d in devices]):
        interfaces += nb.dcim.interfaces.filter(device_id=ids, fields=_INTERFACE_FIELDS)
        disks += nb.dcim.inventory_items.filter(device_id=ids, fields=_DISK_FIELDS)
    return _device_models(nb, devices, interfaces, disks)


def site_names(nb: pynetbox.api) -> list[str]:
    return sorted(str(s.name) for s in nb.dcim.sites.all())


def read_prefixes(nb: pynetbox.api, role: str) -> list[Prefix]:
    return [
        Prefix(prefix=p.prefix, role=role, site=None, description=p.description or "")
        for p in nb.ipam.prefixes.filter(role=role)
    ]


def rack_members(nb: pynetbox.api, rack: str, role: Role) -> list[str]:
    """Names of the devices with `role` in the rack named `rack` (rack names are unique in Atlas's
    NetBox: they carry their site's name)."""
    racks = list(nb.dcim.racks.filter(name=rack))
    if len(racks) != 1:
        raise NotInNetBox(f"rack {rack!r}: {len(racks)} racks of that name in NetBox, expected one")
    return sorted(str(d.name) for d in nb.dcim.devices.filter(rack_id=racks[0].id, role=role.value))
