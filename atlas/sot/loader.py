"""Import a topology into NetBox: create what is missing, change nothing that exists.

`plan_load` is pure: it compares the topology with a snapshot of NetBox (`Inventory`) and returns the
objects to create, or the conflicts that make the import unsafe (a device in another rack, an address
on another interface, a port already cabled elsewhere). Nothing is written while any conflict stands,
and a second import of the same files plans nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pynetbox

from atlas.core.errors import Refused
from atlas.core.model import Endpoint, InterfaceKind
from atlas.sot.client import slugify
from atlas.sot.read import ANYCAST_ROLE, DISK_ROLE, cables_from
from atlas.sot.schema import OOB_INTERFACE
from atlas.sot.topology import LOOPBACK_INTERFACE, MGMT_INTERFACE, Topology

# Bump when what an import writes changes: cached NetBox snapshots of older imports are then unused.
LOADER_VERSION = 4
BATCH = 25


@dataclass(frozen=True)
class DeviceFacts:
    site: str
    rack: str | None
    role: str
    device_type: str


@dataclass
class Inventory:
    """What NetBox already holds, by name, for the objects an import may touch."""

    manufacturers: set[str] = field(default_factory=set)
    device_types: dict[str, set[str]] = field(default_factory=dict)
    device_type_disks: dict[str, set[str]] = field(default_factory=dict)
    roles: set[str] = field(default_factory=set)
    platforms: set[str] = field(default_factory=set)
    ipam_roles: set[str] = field(default_factory=set)
    sites: set[str] = field(default_factory=set)
    racks: dict[str, str] = field(default_factory=dict)
    devices: dict[str, DeviceFacts] = field(default_factory=dict)
    devices_without_primary_ip: set[str] = field(default_factory=set)
    devices_without_oob_ip: set[str] = field(default_factory=set)
    addresses: dict[str, Endpoint | None] = field(default_factory=dict)
    anycast: set[tuple[str, Endpoint]] = field(default_factory=set)  # (ip, interface)
    cables: dict[Endpoint, Endpoint] = field(default_factory=dict)
    prefixes: set[str] = field(default_factory=set)


@dataclass
class LoadPlan:
    manufacturers: list[str] = field(default_factory=list)
    # name, manufacturer, interfaces with their kinds, disks
    device_types: list[tuple[str, str, list[tuple[str, InterfaceKind]], list[str]]] = field(
        default_factory=list
    )
    roles: list[str] = field(default_factory=list)
    platforms: list[str] = field(default_factory=list)
    ipam_roles: list[str] = field(default_factory=list)
    sites: list[tuple[str, str]] = field(default_factory=list)
    racks: list[tuple[str, str, str]] = field(default_factory=list)
    prefixes: list[tuple[str, str, str | None, str]] = field(default_factory=list)
    devices: list[dict[str, Any]] = field(default_factory=list)
    addresses: list[tuple[str, Endpoint]] = field(default_factory=list)
    anycast: list[tuple[str, Endpoint]] = field(default_factory=list)
    primary_ips: list[tuple[str, str]] = field(default_factory=list)
    oob_ips: list[tuple[str, str]] = field(default_factory=list)
    cables: list[tuple[Endpoint, Endpoint]] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            k: len(v)
            for k, v in vars(self).items()
            if k != "conflicts" and isinstance(v, list) and len(v) > 0
        }

    @property
    def empty(self) -> bool:
        return not self.counts()


class ImportConflict(Refused):
    headline = "{n} conflict(s) with NetBox, nothing was written"

    @property
    def conflicts(self) -> list[str]:
        return self.problems


def plan_load(topology: Topology, have: Inventory) -> LoadPlan:
    plan = LoadPlan()
    for dt in topology.device_types:
        if dt.manufacturer not in have.manufacturers and dt.manufacturer not in plan.manufacturers:
            plan.manufacturers.append(dt.manufacturer)
        wanted = dt.interface_names()
        if dt.name not in have.device_types:
            special = {
                MGMT_INTERFACE: InterfaceKind.MGMT,
                LOOPBACK_INTERFACE: InterfaceKind.LOOPBACK,
                OOB_INTERFACE: InterfaceKind.OOB,
            }
            kinds = [(n, special.get(n, InterfaceKind.PHYSICAL)) for n in wanted]
            plan.device_types.append((dt.name, dt.manufacturer, kinds, dt.disk_names()))
            continue
        if missing := sorted(set(wanted) - have.device_types[dt.name]):
            plan.conflicts.append(f"device type {dt.name} in NetBox lacks interfaces {', '.join(missing)}")
        if missing := sorted(set(dt.disk_names()) - have.device_type_disks.get(dt.name, set())):
            plan.conflicts.append(f"device type {dt.name} in NetBox lacks disks {', '.join(missing)}")

    devices = topology.all_devices()
    for role in sorted({d.role.value for d in devices} - have.roles):
        plan.roles.append(role)
    platforms = {d.platform for d in devices if d.platform is not None}
    plan.platforms = sorted(platforms - have.platforms)

    prefixes = [*topology.global_prefixes, *(p for s in topology.sites for p in s.prefixes)]
    plan.ipam_roles = sorted({p.role for p in prefixes} - have.ipam_roles)
    for p in prefixes:
        if str(p.prefix) not in have.prefixes:
            plan.prefixes.append((str(p.prefix), p.role, p.site, p.description))

    for site in topology.sites:
        if site.name not in have.sites:
            plan.sites.append((site.name, site.description))
        for rack in site.racks:
            if rack.name not in have.racks:
                plan.racks.append((rack.name, site.name, rack.status.value))
            elif have.racks[rack.name] != site.name:
                plan.conflicts.append(
                    f"rack {rack.name} is in site {have.racks[rack.name]} in NetBox, not {site.name}"
                )

    for d in devices:
        facts = DeviceFacts(site=d.site, rack=d.rack, role=d.role.value, device_type=d.device_type)
        existing = have.devices.get(d.name)
        if existing is None:
            plan.devices.append(
                {
                    "name": d.name,
                    "site": d.site,
                    "rack": d.rack,
                    "role": d.role.value,
                    "device_type": d.device_type,
                    "platform": d.platform,
                    "status": d.status.value,
                    "serial": d.serial,
                    "custom_fields": d.custom_fields,
                }
            )
        elif existing != facts:
            plan.conflicts.append(f"device {d.name} differs in NetBox: {existing} vs topology {facts}")
        for iface in d.interfaces:
            end = Endpoint(device=d.name, interface=iface.name)
            for addr in iface.addresses:
                ip = str(addr.ip)
                if ip not in have.addresses:
                    plan.addresses.append((str(addr), end))
                elif have.addresses[ip] != end:
                    where = have.addresses[ip] or "nothing"
                    plan.conflicts.append(f"address {ip} is assigned to {where} in NetBox, not {end}")
        lo = Endpoint(device=d.name, interface=LOOPBACK_INTERFACE)
        for addr in d.anycast:
            if str(addr.ip) in have.addresses:
                plan.conflicts.append(
                    f"anycast address {addr.ip} of {d.name} is in NetBox as a unicast address of "
                    f"{have.addresses[str(addr.ip)] or 'nothing'}"
                )
            elif (str(addr.ip), lo) not in have.anycast:
                plan.anycast.append((str(addr), lo))
        if d.mgmt_address is not None and (existing is None or d.name in have.devices_without_primary_ip):
            plan.primary_ips.append((d.name, str(d.mgmt_address)))
        if d.oob_address is not None and (existing is None or d.name in have.devices_without_oob_ip):
            plan.oob_ips.append((d.name, str(d.oob_address)))

    for cable in topology.all_cables():
        a, b = cable.a, cable.b
        have_a, have_b = have.cables.get(a), have.cables.get(b)
        if have_a == b:
            continue
        for end, peer in ((a, have_a), (b, have_b)):
            if peer is not None:
                plan.conflicts.append(
                    f"{end} is cabled to {peer} in NetBox; the topology cables it elsewhere"
                )
        if have_a is None and have_b is None:
            plan.cables.append((a, b))
    return plan


def read_inventory(nb: pynetbox.api) -> Inventory:
    inv = Inventory()
    inv.manufacturers = {m.name for m in nb.dcim.manufacturers.all()}
    templates: dict[str, set[str]] = {}
    for t in nb.dcim.interface_templates.all():
        templates.setdefault(t.device_type.model, set()).add(t.name)
    inv.device_types = {dt.model: templates.get(dt.model, set()) for dt in nb.dcim.device_types.all()}
    for t in nb.dcim.inventory_item_templates.all():
        if t.role is not None and t.role.slug == DISK_ROLE:
            inv.device_type_disks.setdefault(t.device_type.model, set()).add(t.name)
    inv.roles = {r.slug for r in nb.dcim.device_roles.all()}
    inv.platforms = {p.slug for p in nb.dcim.platforms.all()}
    inv.ipam_roles = {r.slug for r in nb.ipam.roles.all()}
    inv.sites = {s.name for s in nb.dcim.sites.all()}
    inv.racks = {r.name: r.site.name for r in nb.dcim.racks.all()}
    for d in nb.dcim.devices.all():
        inv.devices[d.name] = DeviceFacts(
            site=d.site.name,
            rack=d.rack.name if d.rack else None,
            role=d.role.slug,
            device_type=d.device_type.model,
        )
        if d.primary_ip4 is None:
            inv.devices_without_primary_ip.add(d.name)
        if d.oob_ip is None:
            inv.devices_without_oob_ip.add(d.name)
    iface_names = {i.id: Endpoint(device=i.device.name, interface=i.name) for i in nb.dcim.interfaces.all()}
    for a in nb.ipam.ip_addresses.all():
        ip = a.address.split("/")[0]
        end = iface_names.get(a.assigned_object_id) if a.assigned_object_type == "dcim.interface" else None
        if a.role is not None and a.role.value == ANYCAST_ROLE and end is not None:
            inv.anycast.add((ip, end))
        else:
            inv.addresses[ip] = end
    for c in cables_from(nb.dcim.cables.all()):
        inv.cables[c.a], inv.cables[c.b] = c.b, c.a
    inv.prefixes = {p.prefix for p in nb.ipam.prefixes.all()}
    return inv


def _ids(records: Any, key: Callable[[Any], str]) -> dict[str, int]:
    return {key(r): r.id for r in records}


def _in_batches(write: Callable[[list[dict[str, Any]]], Any], rows: list[dict[str, Any]]) -> None:
    """NetBox writes each request in one transaction and creates a device's interfaces with it: small
    requests stay far inside the client's timeout at any size of datacenter, and a re-run plans only
    what an interrupted import left out."""
    for start in range(0, len(rows), BATCH):
        write(rows[start : start + BATCH])


def apply_plan(nb: pynetbox.api, plan: LoadPlan) -> None:
    """Writes in dependency order, each kind in bulk requests."""
    if plan.conflicts:
        raise ImportConflict(plan.conflicts)
    if plan.manufacturers:
        nb.dcim.manufacturers.create([{"name": m, "slug": slugify(m)} for m in plan.manufacturers])
    if plan.device_types:
        makers = _ids(nb.dcim.manufacturers.all(), lambda r: r.name)
        created = nb.dcim.device_types.create(
            [{"model": n, "slug": slugify(n), "manufacturer": makers[m]} for n, m, _, _ in plan.device_types]
        )
        type_ids = {r.model: r.id for r in created}
        nb.dcim.interface_templates.create(
            [
                {
                    "device_type": type_ids[name],
                    "name": iface,
                    "type": "virtual" if kind == InterfaceKind.LOOPBACK else "1000base-t",
                    "mgmt_only": kind in (InterfaceKind.MGMT, InterfaceKind.OOB),
                }
                for name, _, ifaces, _ in plan.device_types
                for iface, kind in ifaces
            ]
        )
        disks = [(type_ids[name], disk) for name, _, _, names in plan.device_types for disk in names]
        if disks:
            # NetBox gives every device created from these types its disks as inventory items
            role = nb.dcim.inventory_item_roles.get(slug=DISK_ROLE) or nb.dcim.inventory_item_roles.create(
                {"name": DISK_ROLE, "slug": DISK_ROLE}
            )
            nb.dcim.inventory_item_templates.create(
                [{"device_type": type_id, "name": disk, "role": role.id} for type_id, disk in disks]
            )
    if plan.roles:
        nb.dcim.device_roles.create([{"name": r, "slug": slugify(r)} for r in plan.roles])
    if plan.platforms:
        nb.dcim.platforms.create([{"name": p, "slug": slugify(p)} for p in plan.platforms])
    if plan.ipam_roles:
        nb.ipam.roles.create([{"name": r, "slug": slugify(r)} for r in plan.ipam_roles])
    if plan.sites:
        nb.dcim.sites.create(
            [{"name": n, "slug": slugify(n), "status": "active", "description": d} for n, d in plan.sites]
        )
    sites = _ids(nb.dcim.sites.all(), lambda r: r.name)
    if plan.racks:
        nb.dcim.racks.create([{"name": n, "site": sites[s], "status": st} for n, s, st in plan.racks])
    if plan.prefixes:
        roles = _ids(nb.ipam.roles.all(), lambda r: r.slug)
        nb.ipam.prefixes.create(
            [
                {
                    "prefix": p,
                    "role": roles[role],
                    "description": desc,
                    **({"scope_type": "dcim.site", "scope_id": sites[site]} if site else {}),
                }
                for p, role, site, desc in plan.prefixes
            ]
        )
    if plan.devices:
        racks = _ids(nb.dcim.racks.all(), lambda r: r.name)
        roles = _ids(nb.dcim.device_roles.all(), lambda r: r.slug)
        types = _ids(nb.dcim.device_types.all(), lambda r: r.model)
        platforms = _ids(nb.dcim.platforms.all(), lambda r: r.slug)
        _in_batches(
            nb.dcim.devices.create,
            [
                {
                    "name": d["name"],
                    "site": sites[d["site"]],
                    "rack": racks[d["rack"]] if d["rack"] else None,
                    "role": roles[d["role"]],
                    "device_type": types[d["device_type"]],
                    "platform": platforms[d["platform"]] if d["platform"] else None,
                    "status": d["status"],
                    "serial": d["serial"],
                    "custom_fields": d["custom_fields"],
                }
                for d in plan.devices
            ],
        )
    if plan.addresses or plan.anycast or plan.cables:
        ifaces = {Endpoint(device=i.device.name, interface=i.name): i.id for i in nb.dcim.interfaces.all()}
        if plan.addresses or plan.anycast:
            _in_batches(
                nb.ipam.ip_addresses.create,
                [
                    {
                        "address": addr,
                        "status": "active",
                        "assigned_object_type": "dcim.interface",
                        "assigned_object_id": ifaces[end],
                    }
                    | ({"role": ANYCAST_ROLE} if anycast else {})
                    for addrs, anycast in ((plan.addresses, False), (plan.anycast, True))
                    for addr, end in addrs
                ],
            )
        if plan.cables:
            _in_batches(
                nb.dcim.cables.create,
                [
                    {
                        "a_terminations": [{"object_type": "dcim.interface", "object_id": ifaces[a]}],
                        "b_terminations": [{"object_type": "dcim.interface", "object_id": ifaces[b]}],
                        "status": "connected",
                    }
                    for a, b in plan.cables
                ],
            )
    if plan.primary_ips or plan.oob_ips:
        devices = _ids(nb.dcim.devices.all(), lambda r: r.name)
        addresses = _ids(nb.ipam.ip_addresses.all(), lambda r: r.address)
        for field_name, ips in (("primary_ip4", plan.primary_ips), ("oob_ip", plan.oob_ips)):
            _in_batches(
                nb.dcim.devices.update,
                [{"id": devices[name], field_name: addresses[addr]} for name, addr in ips],
            )


def import_topology(nb: pynetbox.api, topology: Topology, dry_run: bool = False) -> LoadPlan:
    plan = plan_load(topology, read_inventory(nb))
    if plan.conflicts:
        raise ImportConflict(plan.conflicts)
    if not dry_run:
        apply_plan(nb, plan)
    return plan
