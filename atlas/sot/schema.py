"""Custom fields Atlas keeps on devices and disks, created by Atlas itself so no one sets NetBox up by hand."""

from __future__ import annotations

from dataclasses import dataclass

import pynetbox

# Every custom field Atlas reads or writes, by name: code names them through these, never as strings.
IMAGE_VERSION_FIELD = "image_version"  # of a server: the image it runs
OSD_IDS_FIELD = "ceph_osd_ids"  # of a storage server: its OSDs
COMPLIANCE_FIELD = "config_compliance"  # of a device: compliant / drift
CHECKED_AT_FIELD = "config_checked_at"  # of a device: when the sweep last checked it
COST_OUT_FIELD = "ospf_cost_out"  # of a switch: in routing maintenance (the routing design renders it)
BGP_COST_OUT_FIELD = "bgp_cost_out"  # of a switch on an eBGP site: in routing maintenance
ASN_FIELD = "bgp_asn"  # of a device: its ASN (an ASN object of NetBox's IPAM), on an eBGP site
ASN_RANGE_FIELD = "bgp_asn_range"  # of a site: the ASN range its devices' ASNs come from
EVACUATION_FIELD = "evacuation"  # of a device: the ticket it was evacuated for
DISK_PATH_FIELD = "device_path"  # of a disk: its block device on the host
ROUTING_DESIGN_FIELD = "routing_design"  # of a site: how its fabric routes (atlas.net.routing)
SERVICE_MANAGER_FIELD = "service_manager"  # of a server: what starts its services (atlas.hosts.services)
OS_IMAGE_FIELD = "os_image"  # of a server: the OS image version it is to run (network boot installs it)
OS_INSTALLED_FIELD = "os_installed"  # of a server: the OS image Atlas installed on it (rack-bringup)
# A server's BMC port: the interface that carries NetBox's OOB IP of the device, named alike everywhere
OOB_INTERFACE = "bmc"
DEFAULT_ROUTING_DESIGN = "ospf"
DEFAULT_SERVICE_MANAGER = "systemd"  # what a production Debian server runs


@dataclass(frozen=True)
class CustomField:
    name: str
    label: str
    type: str
    description: str
    object_types: tuple[str, ...] = ("dcim.device",)
    related_object_type: str | None = None  # of a field of type object: the objects it refers to


CUSTOM_FIELDS = (
    CustomField(
        IMAGE_VERSION_FIELD, "Image version", "text", "Host image the device runs (set by image-rollout)"
    ),
    CustomField(
        OSD_IDS_FIELD, "Ceph OSD ids", "text", "OSDs on this host, comma separated (ceph-osd-enroll)"
    ),
    CustomField(COMPLIANCE_FIELD, "Config compliance", "text", "compliant / drift, from config-sweep"),
    CustomField(CHECKED_AT_FIELD, "Config checked at", "datetime", "When config-sweep last checked it"),
    CustomField(
        COST_OUT_FIELD,
        "OSPF cost-out",
        "boolean",
        "Switch in OSPF maintenance: traffic avoids it (fabric-cost-out / fabric-cost-in)",
    ),
    CustomField(
        BGP_COST_OUT_FIELD,
        "BGP cost-out",
        "boolean",
        "Switch in BGP maintenance: its routes are announced with a longer AS path, traffic avoids it",
    ),
    CustomField(
        ASN_FIELD,
        "BGP ASN",
        "object",
        "The device's ASN on an eBGP site (one per leaf or per rack, the spines of a site share one)",
        related_object_type="ipam.asn",
    ),
    CustomField(
        ASN_RANGE_FIELD,
        "BGP ASN range",
        "object",
        "The ASN range the ASNs of the site's devices come from (an eBGP site)",
        object_types=("dcim.site",),
        related_object_type="ipam.asnrange",
    ),
    CustomField(
        EVACUATION_FIELD, "Evacuation", "text", "Evacuated by Atlas for this ticket (evacuate / restore)"
    ),
    CustomField(
        DISK_PATH_FIELD,
        "Device path",
        "text",
        "The disk's block device on its host (/dev/...): where ceph-osd-enroll makes its OSD",
        object_types=("dcim.inventoryitem",),
    ),
    CustomField(
        ROUTING_DESIGN_FIELD,
        "Routing design",
        "text",
        f"How the site's fabric routes (empty: {DEFAULT_ROUTING_DESIGN}); Atlas refuses one it does not know",
        object_types=("dcim.site",),
    ),
    CustomField(
        OS_IMAGE_FIELD,
        "OS image",
        "text",
        "Image catalog version the server is installed with by a network boot (rack-bringup)",
    ),
    CustomField(
        OS_INSTALLED_FIELD,
        "OS installed",
        "text",
        "Image catalog version rack-bringup installed on the server (set by Atlas)",
    ),
    CustomField(
        SERVICE_MANAGER_FIELD,
        "Service manager",
        "text",
        f"What starts the server's services (empty: {DEFAULT_SERVICE_MANAGER}); Atlas refuses one it does not know",
    ),
)


def ensure_custom_fields(nb: pynetbox.api) -> list[str]:
    """Creates the missing ones; returns their names (empty when all were there)."""
    have = {cf.name for cf in nb.extras.custom_fields.all()}
    missing = [cf for cf in CUSTOM_FIELDS if cf.name not in have]
    if missing:
        nb.extras.custom_fields.create(
            [
                {
                    "name": cf.name,
                    "label": cf.label,
                    "type": cf.type,
                    "description": cf.description,
                    "object_types": list(cf.object_types),
                }
                | ({"related_object_type": cf.related_object_type} if cf.related_object_type else {})
                for cf in missing
            ]
        )
    return [cf.name for cf in missing]
