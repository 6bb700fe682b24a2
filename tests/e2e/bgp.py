"""What an operator does in NetBox to plan a site for eBGP (docs/fabric.md, moving a site between
routing designs): an ASN range for the site, an ASN per device as RFC 7938 lays them out (the spines
share one, each rack's leaves one, each server that announces service addresses its own), then the
site's routing design. Nothing here touches a device: fabric-apply and rack-bringup do."""

from __future__ import annotations

import pynetbox

from atlas.core.model import Role
from atlas.sot.read import read_site
from atlas.sot.schema import ASN_FIELD, ASN_RANGE_FIELD, ROUTING_DESIGN_FIELD

RIR = "atlas-private"


def asn_id(nb: pynetbox.api, asn: int) -> int:
    """NetBox's ASN object for `asn`, made in the private RIR where it is missing."""
    rir = nb.ipam.rirs.get(slug=RIR) or nb.ipam.rirs.create(name="Private ASNs", slug=RIR, is_private=True)
    found = nb.ipam.asns.get(asn=asn) or nb.ipam.asns.create(asn=asn, rir=rir.id)
    return int(found.id)


def asn_plan(nb: pynetbox.api, site: str, first: int) -> dict[str, int]:
    """Device -> ASN for the site, from `first` (the spines) on."""
    found = read_site(nb, site)
    racks = sorted({d.rack for d in found.devices if d.role == Role.LEAF and d.rack})
    plan = {}
    routing_servers = sorted(d.name for d in found.devices if d.role.is_server and d.anycast)
    for d in found.devices:
        if d.role == Role.SPINE:
            plan[d.name] = first
        elif d.role == Role.LEAF and d.rack:
            plan[d.name] = first + 1 + racks.index(d.rack)
        elif d.name in routing_servers:
            plan[d.name] = first + 100 + routing_servers.index(d.name)
    return plan


def plan_ebgp(
    nb: pynetbox.api, site: str, first: int, size: int = 1000, design: str = "ebgp"
) -> dict[str, int]:
    """The site's ASN range and every device's ASN in NetBox, then its routing design; the plan."""
    rir = nb.ipam.rirs.get(slug=RIR) or nb.ipam.rirs.create(name="Private ASNs", slug=RIR, is_private=True)
    slug = f"{site}-asns"
    rng = nb.ipam.asn_ranges.get(slug=slug) or nb.ipam.asn_ranges.create(
        name=f"{site} ASNs", slug=slug, rir=rir.id, start=first, end=first + size - 1
    )
    plan = asn_plan(nb, site, first)
    set_asns(nb, plan)
    record = nb.dcim.sites.get(name=site)
    record.custom_fields = {**record.custom_fields, ASN_RANGE_FIELD: rng.id, ROUTING_DESIGN_FIELD: design}
    record.save()
    return plan


def set_asns(nb: pynetbox.api, plan: dict[str, int | None]) -> None:
    """Each named device's ASN in NetBox (None: none), in one bulk update."""
    ids = {str(d.name): int(d.id) for d in nb.dcim.devices.filter(name=sorted(plan))}
    nb.dcim.devices.update(
        [
            {"id": ids[name], "custom_fields": {ASN_FIELD: asn_id(nb, asn) if asn is not None else None}}
            for name, asn in plan.items()
        ]
    )
