"""Idempotent writes: each reads the current value first and changes only what differs.

Every function returns a `Change` describing what it did (or would do), so flows can report it and
a re-run that finds everything in place reports zero changes.
"""

from __future__ import annotations

from typing import Any

import pynetbox

from atlas.core.errors import Failed
from atlas.core.model import Change, Device, DeviceStatus
from atlas.sot.schema import DISK_PATH_FIELD


class NetBoxWriteError(Failed):
    pass


def _device(nb: pynetbox.api, name: str) -> Any:
    record = nb.dcim.devices.get(name=name)
    if record is None:
        raise NetBoxWriteError(f"device {name!r} is not in NetBox")
    return record


def set_device_status(nb: pynetbox.api, device: str, status: DeviceStatus, dry_run: bool = False) -> Change:
    record = _device(nb, device)
    before = str(record.status.value)
    if before == status.value:
        return Change(target=device, what="status", before=before, after=before, changed=False)
    if not dry_run:
        record.status = status.value
        record.save()
    return Change(target=device, what="status", before=before, after=status.value, changed=True)


def set_statuses(nb: pynetbox.api, devices: list[Device], status: DeviceStatus) -> list[Change]:
    """Devices as the run read them: those not yet at `status` change in one bulk update, which
    NetBox applies whole or not at all."""
    changing = [d for d in devices if d.status != status]
    if changing:
        nb.dcim.devices.update([{"id": _netbox_id(d), "status": status.value} for d in changing])
    return [
        Change(target=d.name, what="status", before=d.status.value, after=status.value, changed=True)
        for d in changing
    ]


def _netbox_id(device: Device) -> int:
    if device.netbox_id is None:
        raise NetBoxWriteError(f"device {device.name!r} was not read from NetBox")
    return device.netbox_id


def set_custom_fields(nb: pynetbox.api, device: str, values: dict[str, Any], dry_run: bool = False) -> Change:
    record = _device(nb, device)
    current = dict(record.custom_fields or {})
    unknown = sorted(set(values) - set(current))
    if unknown:
        raise NetBoxWriteError(f"NetBox has no custom field(s) {', '.join(unknown)} on devices")
    differing = {k: v for k, v in values.items() if current.get(k) != v}
    if differing and not dry_run:
        record.custom_fields = {**current, **differing}
        record.save()
    return Change(
        target=device,
        what="custom_fields",
        before={k: current.get(k) for k in differing},
        after=differing,
        changed=bool(differing),
    )


def add_journal_entry(
    nb: pynetbox.api, device: str, comments: str, kind: str = "info", dry_run: bool = False
) -> Change:
    """One entry per distinct message: re-running a step does not repeat its journal line."""
    return _journal(nb, "dcim.device", _device(nb, device), device, comments, kind, dry_run)


def add_object_journal_entry(
    nb: pynetbox.api, object_type: str, name: str, comments: str, kind: str = "info"
) -> Change:
    """The same, on a rack (`dcim.rack`) or a site (`dcim.site`)."""
    endpoint = {"dcim.rack": nb.dcim.racks, "dcim.site": nb.dcim.sites}[object_type]
    record = endpoint.get(name=name)
    if record is None:
        raise NetBoxWriteError(f"{object_type} {name!r} is not in NetBox")
    return _journal(nb, object_type, record, name, comments, kind, False)


def _refuse_control_characters(comments: str) -> None:
    # Journal entries are markdown and may span lines; other control characters are refused.
    if any(ord(c) < 32 and c not in "\n\t" for c in comments):
        raise NetBoxWriteError("journal entry contains control characters")


def _journal(
    nb: pynetbox.api, object_type: str, record: Any, name: str, comments: str, kind: str, dry_run: bool
) -> Change:
    _refuse_control_characters(comments)
    existing = nb.extras.journal_entries.filter(
        assigned_object_type=object_type, assigned_object_id=record.id
    )
    if any(e.comments == comments for e in existing):
        return Change(target=name, what="journal", before=None, after=comments, changed=False)
    if not dry_run:
        nb.extras.journal_entries.create(
            assigned_object_type=object_type, assigned_object_id=record.id, kind=kind, comments=comments
        )
    return Change(target=name, what="journal", before=None, after=comments, changed=True)


def add_journal_entries(
    nb: pynetbox.api, entries: list[tuple[Device, str]], kind: str = "info"
) -> list[Change]:
    """Entries on several devices in one read and one write; like `add_journal_entry`, a message a
    device already has is not added again."""
    if not entries:
        return []
    for _, comments in entries:
        _refuse_control_characters(comments)
    ids = sorted({_netbox_id(d) for d, _ in entries})
    existing = {
        (e.assigned_object_id, e.comments)
        for e in nb.extras.journal_entries.filter(
            assigned_object_type="dcim.device", assigned_object_id=ids, fields="assigned_object_id,comments"
        )
    }
    new = [(d, comments) for d, comments in entries if (d.netbox_id, comments) not in existing]
    if new:
        nb.extras.journal_entries.create(
            [
                {
                    "assigned_object_type": "dcim.device",
                    "assigned_object_id": d.netbox_id,
                    "kind": kind,
                    "comments": comments,
                }
                for d, comments in new
            ]
        )
    return [
        Change(target=d.name, what="journal", before=None, after=comments, changed=(d, comments) in new)
        for d, comments in entries
    ]


def set_disk_paths(nb: pynetbox.api, paths: dict[str, dict[str, str]]) -> int:
    """Records where each disk (host -> disk name -> /dev path) is on its host, as whoever racks a
    server records it; the number of disks whose path changed."""
    if not paths:
        return 0
    items = nb.dcim.inventory_items.filter(device=sorted(paths), fields="id,name,device,custom_fields")
    updates = []
    for item in items:
        want = paths.get(str(item.device.name), {}).get(str(item.name))
        if want is not None and (item.custom_fields or {}).get(DISK_PATH_FIELD) != want:
            updates.append({"id": item.id, "custom_fields": {DISK_PATH_FIELD: want}})
    if updates:
        nb.dcim.inventory_items.update(updates)
    return len(updates)
