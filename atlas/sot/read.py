"""Typed reads of a whole site or of named devices, each in one GraphQL query (more only for lists
longer than a page): never a call per device or interface, so a 270-device site is read in about as
many calls as a 10-device one.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Interface
from typing import Any, NamedTuple

import pynetbox

from atlas.core.errors import AtlasError
from atlas.core.model import (
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
from atlas.sot.address_plan import PLAN_ROLES
from atlas.sot.client import graphql
from atlas.sot.schema import ASN_FIELD, ASN_RANGE_FIELD, DISK_PATH_FIELD, OOB_INTERFACE

DISK_ROLE = "disk"  # the NetBox inventory item role of data disks
ANYCAST_ROLE = "anycast"  # the NetBox IP address role of service addresses several servers announce


class NotInNetBox(AtlasError, LookupError):
    pass


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


# One GraphQL query reads what a dozen list calls did: NetBox spends ~0.1 s of CPU building the
# filters of every REST list call, whatever its size. Lists are read in pages of NetBox's default
# MAX_PAGE_SIZE, in primary key order.
_PAGE = 1000
_DEVICE = """id name site { name } rack { name } role { slug } platform { slug } status
  device_type { model } serial custom_field_data
  interfaces { id name mgmt_only type description enabled ip_addresses { address role }
    primary_mac_address { mac_address } }
  inventoryitems { name role { slug } custom_field_data }"""
_CABLE_END = "__typename ... on InterfaceType { name device { name } }"


class _List(NamedTuple):
    field: str  # the GraphQL list field; the key it is read under is its alias
    filters: str
    selection: str


_SITE_LISTS = {
    "site_list": _List("site_list", "{name: {exact: $name}}", "id description custom_field_data"),
    "rack_list": _List("rack_list", "{site: {name: {exact: $name}}}", "id name status"),
    "device_list": _List("device_list", "{site: {name: {exact: $name}}}", _DEVICE),
    # a cable with both ends in the site matches twice without DISTINCT
    "cable_list": _List(
        "cable_list",
        "{terminations: {site: {name: {exact: $name}}}, DISTINCT: true}",
        f"id status a_terminations {{ {_CABLE_END} }} b_terminations {{ {_CABLE_END} }}",
    ),
    "prefix_list": _List(
        "prefix_list", "{site: {name: {exact: $name}}}", "id prefix role { slug } description"
    ),
    # the address plan's prefixes that no site scopes hold for every site (atlas.sot.address_plan)
    "plan_prefix_list": _List(
        "prefix_list",
        "{role: {slug: {in_list: [" + ", ".join(f'"{r}"' for r in PLAN_ROLES) + "]}}}",
        "id prefix role { slug } description scope { __typename }",
    ),
}
# NetBox's ASNs and ASN ranges, all of them (a datacenter holds some hundred): a device's and a site's
# custom field names one by its id
_ASN_LISTS = {
    "asn_list": _List("asn_list", "{}", "id asn"),
    "asn_range_list": _List("asn_range_list", "{}", "id name start end"),
}
_SITE_LISTS |= _ASN_LISTS
# the devices of other sites at the far end of the site's cables (a core router, another site's spine)
_FAR_ENDS = {
    "far_device_list": _List(
        "device_list",
        "{interfaces: {cable: {terminations: {site: {name: {exact: $name}}}}},"
        " NOT: {site: {name: {exact: $name}}}, DISTINCT: true}",
        _DEVICE,
    )
}


def _query(lists: dict[str, _List], declarations: str, starts: dict[str, int]) -> str:
    fields = "\n".join(
        f"{name}: {lst.field}(filters: {lst.filters}, pagination: {{start: {starts[name]}, limit: {_PAGE}}})"
        f" {{ {lst.selection} }}"
        for name, lst in lists.items()
    )
    return f"query({declarations}) {{\n{fields}\n}}"


def _read_lists(
    nb: pynetbox.api, lists: dict[str, _List], declarations: str, variables: dict[str, Any]
) -> dict[str, list[dict[str, Any]]]:
    """Every list whole: one query for all, then further pages of any list that filled one."""
    found: dict[str, list[dict[str, Any]]] = {name: [] for name in lists}
    starts = dict.fromkeys(lists, 0)
    pending = dict(lists)
    while pending:
        page = graphql(nb, _query(pending, declarations, starts), variables)
        for name in list(pending):
            found[name] += page[name]
            if len(page[name]) < _PAGE:
                del pending[name]
            else:
                starts[name] = int(page[name][-1]["id"]) + 1
    return found


def _cables(records: list[dict[str, Any]]) -> list[Cable]:
    cables = []
    for c in records:
        ends = (c["a_terminations"], c["b_terminations"])
        # Atlas cables join one interface to one interface; others are not fabric
        if all(len(e) == 1 and e[0]["__typename"] == "InterfaceType" for e in ends):
            a, b = (Endpoint(device=e[0]["device"]["name"], interface=e[0]["name"]) for e in ends)
            cables.append(Cable(a=a, b=b, status=c["status"]))
    return cables


def _interface_kind(record: dict[str, Any]) -> InterfaceKind:
    if record["mgmt_only"]:
        return InterfaceKind.OOB if record["name"] == OOB_INTERFACE else InterfaceKind.MGMT
    if record["type"] == "virtual":
        return InterfaceKind.LOOPBACK
    return InterfaceKind.PHYSICAL


def _mac(value: object) -> str | None:
    return str(value).lower() if value else None


def _asns(found: dict[str, list[dict[str, Any]]]) -> dict[int, int]:
    return {int(a["id"]): int(a["asn"]) for a in found["asn_list"]}


def _referred(custom_fields: dict[str, Any] | None, name: str) -> int | None:
    """The id an object custom field holds (NetBox keeps the id; an API write may leave a dict)."""
    value = (custom_fields or {}).get(name)
    if isinstance(value, dict):
        value = value.get("id")
    return int(value) if value is not None else None


def _device(record: dict[str, Any], asns: dict[int, int]) -> Device:
    interfaces: list[Interface] = []
    anycast: list[IPv4Interface] = []
    for i in sorted(record["interfaces"], key=lambda i: int(i["id"])):
        addresses: list[IPv4Interface] = []
        for a in i["ip_addresses"]:
            (anycast if a["role"] == ANYCAST_ROLE else addresses).append(IPv4Interface(a["address"]))
        interfaces.append(
            Interface(
                name=i["name"],
                kind=_interface_kind(i),
                description=i["description"] or "",
                enabled=bool(i["enabled"]),
                addresses=tuple(addresses),
                mac=_mac((i.get("primary_mac_address") or {}).get("mac_address")),
            )
        )
    # filtered here: a role filter naming a role NetBox does not have yet is refused
    disks = [item for item in record["inventoryitems"] if _slug(item["role"]) == DISK_ROLE]

    def first_address(kind: InterfaceKind) -> IPv4Interface | None:
        return next((a for i in interfaces if i.kind == kind for a in i.addresses), None)

    return Device(
        name=record["name"],
        site=record["site"]["name"],
        rack=_name(record["rack"]),
        role=Role(_slug(record["role"]) or ""),
        platform=_slug(record["platform"]),
        status=DeviceStatus(record["status"]),
        device_type=record["device_type"]["model"],
        serial=str(record.get("serial") or ""),
        mgmt_address=first_address(InterfaceKind.MGMT),
        loopback=first_address(InterfaceKind.LOOPBACK),
        anycast=tuple(sorted(anycast)),
        interfaces=tuple(interfaces),
        disks=tuple(sorted(str(item["name"]) for item in disks)),
        disk_paths={
            str(item["name"]): str(path)
            for item in disks
            if (path := (item["custom_field_data"] or {}).get(DISK_PATH_FIELD))
        },
        asn=asns.get(ref) if (ref := _referred(record["custom_field_data"], ASN_FIELD)) is not None else None,
        custom_fields=dict(record["custom_field_data"] or {}),
        netbox_id=int(record["id"]),
    )


def read_site(nb: pynetbox.api, name: str) -> Site:
    return _site(name, _read_lists(nb, _SITE_LISTS, "$name: String!", {"name": name}))


def read_site_and_far_ends(nb: pynetbox.api, name: str) -> tuple[Site, list[Device]]:
    """The site and the devices of other sites its cables reach, in one query."""
    found = _read_lists(nb, _SITE_LISTS | _FAR_ENDS, "$name: String!", {"name": name})
    asns = _asns(found)
    far = sorted((_device(d, asns) for d in found["far_device_list"]), key=lambda d: d.name)
    return _site(name, found), far


def _site(name: str, found: dict[str, list[dict[str, Any]]]) -> Site:
    site = found["site_list"]
    if not site:
        raise NotInNetBox(f"site {name!r} is not in NetBox")
    asns = _asns(found)
    ranges = {int(r["id"]): (str(r["name"]), int(r["start"]), int(r["end"])) for r in found["asn_range_list"]}
    asn_range = _referred(site[0].get("custom_field_data"), ASN_RANGE_FIELD)
    return Site(
        name=name,
        description=site[0]["description"] or "",
        racks=tuple(
            Rack(name=r["name"], site=name, status=RackStatus(r["status"]), netbox_id=int(r["id"]))
            for r in found["rack_list"]
        ),
        devices=tuple(sorted((_device(d, asns) for d in found["device_list"]), key=lambda d: d.name)),
        cables=tuple(_cables(found["cable_list"])),
        prefixes=(
            *(
                Prefix(
                    prefix=p["prefix"],
                    role=_slug(p["role"]) or "",
                    site=name,
                    description=p["description"] or "",
                )
                for p in found["prefix_list"]
            ),
            *(
                Prefix(prefix=p["prefix"], role=_slug(p["role"]) or "", description=p["description"] or "")
                for p in found["plan_prefix_list"]
                if p.get("scope") is None
            ),
        ),
        asn_range=ranges.get(asn_range) if asn_range is not None else None,
        custom_fields=dict(site[0].get("custom_field_data") or {}),
        netbox_id=int(site[0]["id"]),
    )


def read_devices(nb: pynetbox.api, names: list[str]) -> list[Device]:
    """Named devices of any site (the far ends of a rack's cables) without reading their sites."""
    lists = {"device_list": _List("device_list", "{name: {in_list: $names}}", _DEVICE)} | _ASN_LISTS
    found = _read_lists(nb, lists, "$names: [String!]", {"names": sorted(names)})
    return sorted((_device(d, _asns(found)) for d in found["device_list"]), key=lambda d: d.name)


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
