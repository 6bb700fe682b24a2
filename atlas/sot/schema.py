"""Custom fields Atlas keeps on devices and disks, created by Atlas itself so no one sets NetBox up by hand."""

from __future__ import annotations

from dataclasses import dataclass

import pynetbox

DISK_PATH_FIELD = "device_path"  # of a disk: its block device on the host


@dataclass(frozen=True)
class CustomField:
    name: str
    label: str
    type: str
    description: str
    object_types: tuple[str, ...] = ("dcim.device",)


CUSTOM_FIELDS = (
    CustomField(
        "image_version", "Image version", "text", "Host image the device runs (set by image-rollout)"
    ),
    CustomField(
        "ceph_osd_ids", "Ceph OSD ids", "text", "OSDs on this host, comma separated (ceph-osd-enroll)"
    ),
    CustomField("config_compliance", "Config compliance", "text", "compliant / drift, from config-sweep"),
    CustomField("config_checked_at", "Config checked at", "datetime", "When config-sweep last checked it"),
    CustomField(
        "ospf_cost_out",
        "OSPF cost-out",
        "boolean",
        "Switch in OSPF maintenance: traffic avoids it (fabric-cost-out / fabric-cost-in)",
    ),
    CustomField(
        "evacuation", "Evacuation", "text", "Evacuated by Atlas for this ticket (evacuate / restore)"
    ),
    CustomField(
        DISK_PATH_FIELD,
        "Device path",
        "text",
        "The disk's block device on its host (/dev/...): where ceph-osd-enroll makes its OSD",
        object_types=("dcim.inventoryitem",),
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
                for cf in missing
            ]
        )
    return [cf.name for cf in missing]
