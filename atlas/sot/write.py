"""Idempotent writes: each reads the current value first and changes only what differs.

Every function returns a `Change` describing what it did (or would do), so flows can report it and
a re-run that finds everything in place reports zero changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import pynetbox

from atlas.core.errors import Failed
from atlas.core.model import Change, Device, DeviceStatus, Rack, RackStatus
from atlas.sot.schema import CUSTOM_FIELDS, DISK_PATH_FIELD

# The custom fields Atlas keeps on devices: a bulk write names no other (atlas.sot.schema creates them).
DEVICE_FIELDS = frozenset(cf.name for cf in CUSTOM_FIELDS if "dcim.device" in cf.object_types)


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


def set_rack_status(nb: pynetbox.api, rack: Rack, status: RackStatus) -> Change:
    """A rack as the run read it: one update if it is not yet at `status`, no call if it is."""
    if rack.status == status:
        return Change(
            target=rack.name, what="rack status", before=status.value, after=status.value, changed=False
        )
    if rack.netbox_id is None:
        raise NetBoxWriteError(f"rack {rack.name!r} was not read from NetBox")
    nb.dcim.racks.update([{"id": rack.netbox_id, "status": status.value}])
    return Change(
        target=rack.name, what="rack status", before=rack.status.value, after=status.value, changed=True
    )


def custom_field_updates(
    values: Sequence[tuple[Device, Mapping[str, Any]]],
) -> tuple[list[dict[str, Any]], list[Change]]:
    """The bulk update that brings each device's custom fields (as the run read them) to `values`,
    and what it changes; devices already there are left out. A field Atlas does not keep on devices
    is refused before anything is written."""
    unknown = sorted({k for _, fields in values for k in fields} - DEVICE_FIELDS)
    if unknown:
        raise NetBoxWriteError(f"not a custom field Atlas keeps on devices: {', '.join(unknown)}")
    updates, changes = [], []
    for device, fields in values:
        differing = {k: v for k, v in fields.items() if device.custom_fields.get(k) != v}
        if differing:
            updates.append({"id": _netbox_id(device), "custom_fields": differing})
            before = {k: device.custom_fields.get(k) for k in differing}
            changes.append(
                Change(target=device.name, what="custom_fields", before=before, after=differing, changed=True)
            )
    return updates, changes


def set_devices_custom_fields(
    nb: pynetbox.api, values: Sequence[tuple[Device, Mapping[str, Any]]]
) -> list[Change]:
    """Custom fields of several devices, as the run read them, in one bulk update (none when every
    device already has its values); what changed, by device."""
    updates, changes = custom_field_updates(values)
    if updates:
        nb.dcim.devices.update(updates)
    return changes


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


class JournalEntry(NamedTuple):
    """A journal entry to write on a device read from NetBox."""

    device: Device
    comments: str
    kind: str = "info"  # NetBox's journal kinds: info, success, warning, danger


def add_journal_entries(
    nb: pynetbox.api, entries: Sequence[tuple[Device, str]], kind: str = "info"
) -> list[Change]:
    """Entries on several devices in one read and one write; like `add_journal_entry`, a message a
    device already has is not added again."""
    return write_journal(nb, [JournalEntry(d, comments, kind) for d, comments in entries])


def write_journal(nb: pynetbox.api, entries: Sequence[JournalEntry], news_only: bool = False) -> list[Change]:
    """Entries on several devices, each of its own kind, in one bulk create. First one read, so that
    a message a device already has is not added again (a re-run's step); `news_only` skips it for a
    caller whose entries are new by construction (the sweep writes only when a state changes)."""
    if not entries:
        return []
    for entry in entries:
        _refuse_control_characters(entry.comments)
    existing: set[tuple[int | None, str]] = set()
    if not news_only:
        ids = sorted({_netbox_id(e.device) for e in entries})
        existing = {
            (e.assigned_object_id, e.comments)
            for e in nb.extras.journal_entries.filter(
                assigned_object_type="dcim.device",
                assigned_object_id=ids,
                fields="assigned_object_id,comments",
            )
        }
    new = [e for e in entries if (e.device.netbox_id, e.comments) not in existing]
    if new:
        nb.extras.journal_entries.create(
            [
                {
                    "assigned_object_type": "dcim.device",
                    "assigned_object_id": _netbox_id(e.device),
                    "kind": e.kind,
                    "comments": e.comments,
                }
                for e in new
            ]
        )
    return [
        Change(target=e.device.name, what="journal", before=None, after=e.comments, changed=e in new)
        for e in entries
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


def record_macs(
    nb: pynetbox.api, macs: Mapping[str, Mapping[str, str]], dry_run: bool = False
) -> list[Change]:
    """Records NICs' MACs (device -> interface -> MAC) as their interfaces' primary MAC, where NetBox
    has none; a MAC NetBox already holds for an interface is never overwritten (a different one is a
    mismatch for the caller to name, not data to replace)."""
    wanted = {(d, i): mac.lower() for d, ifaces in macs.items() for i, mac in ifaces.items()}
    if not wanted:
        return []
    records = nb.dcim.interfaces.filter(device=sorted(macs), fields="id,name,device,primary_mac_address")
    changes: list[Change] = []
    new: list[tuple[int, str, Change]] = []
    for iface in records:
        key = (str(iface.device.name), str(iface.name))
        if key not in wanted:
            continue
        have = getattr(iface.primary_mac_address, "mac_address", None)
        change = Change(
            target=key[0],
            what=f"{key[1]} MAC",
            before=str(have).lower() if have else None,
            after=str(have).lower() if have else wanted[key],
            changed=not have,
        )
        changes.append(change)
        if not have:
            new.append((int(iface.id), wanted[key], change))
    if new and not dry_run:
        created = nb.dcim.mac_addresses.create(
            [
                {"mac_address": mac, "assigned_object_type": "dcim.interface", "assigned_object_id": iface_id}
                for iface_id, mac, _ in new
            ]
        )
        nb.dcim.interfaces.update(
            [
                {"id": iface_id, "primary_mac_address": record.id}
                for (iface_id, _, _), record in zip(new, created, strict=True)
            ]
        )
    return sorted(changes, key=lambda c: (c.target, c.what))
