"""Idempotent writes: each reads the current value first and changes only what differs.

Every function returns a `Change` describing what it did (or would do), so flows can report it and
a re-run that finds everything in place reports zero changes.
"""

from __future__ import annotations

from typing import Any

import pynetbox

from atlas.model import Change, DeviceStatus
from atlas.sot.schema import DISK_PATH_FIELD


class NetBoxWriteError(RuntimeError):
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


def _journal(
    nb: pynetbox.api, object_type: str, record: Any, name: str, comments: str, kind: str, dry_run: bool
) -> Change:
    # Journal entries are markdown and may span lines; other control characters are refused.
    if any(ord(c) < 32 and c not in "\n\t" for c in comments):
        raise NetBoxWriteError("journal entry contains control characters")
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
