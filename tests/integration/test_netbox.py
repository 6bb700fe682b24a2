"""NetBox round trip against the real server the lab runs."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pynetbox
import pytest
import yaml

from atlas.core.model import Device, DeviceStatus, Site
from atlas.runbooks.bringup import read_scope
from atlas.sot.loader import ImportConflict, import_topology
from atlas.sot.read import read_site
from atlas.sot.schema import CUSTOM_FIELDS, ensure_custom_fields
from atlas.sot.topology import Topology, load_topology
from atlas.sot.write import (
    NetBoxWriteError,
    add_journal_entries,
    add_journal_entry,
    set_custom_fields,
    set_device_status,
    set_statuses,
)


def comparable(d: Device) -> dict[str, Any]:
    # disk paths are not in the topology: the lab records them when it attaches the disks
    data = d.model_dump(exclude={"netbox_id", "custom_fields", "interfaces", "disk_paths"})
    data["interfaces"] = sorted((i.name, i.kind.value, tuple(map(str, i.addresses))) for i in d.interfaces)
    return data


def test_every_site_reads_back_as_the_topology_describes_it(topology: Topology, sites: list[Site]) -> None:
    read = {s.name: s for s in sites}
    assert sorted(read) == sorted(s.name for s in topology.sites)
    for want in topology.sites:
        got = read[want.name]
        assert {r.name: r.status for r in got.racks} == {r.name: r.status for r in want.racks}
        assert [comparable(d) for d in got.devices] == [
            comparable(d) for d in sorted(want.devices, key=lambda d: d.name)
        ]
        assert {frozenset(c.ends()) for c in got.cables} == {frozenset(c.ends()) for c in want.cables}
        for d in got.devices:
            assert set(d.disk_paths) == set(d.disks)
            assert all(path.startswith("/dev/loop") for path in d.disk_paths.values())


@contextmanager
def api_calls(nb: pynetbox.api) -> Iterator[list[str]]:
    calls: list[str] = []
    nb.http_session.hooks["response"].append(lambda r, *a, **k: calls.append(r.url))
    try:
        yield calls
    finally:
        nb.http_session.hooks["response"].pop()


def test_reading_a_site_takes_a_fixed_number_of_api_calls(nb: pynetbox.api, sites: list[Site]) -> None:
    with api_calls(nb) as calls:
        site = read_site(nb, "fra1")
    interfaces = sum(len(d.interfaces) for d in site.devices)
    assert interfaces > 150  # one call per interface would show here
    assert len(calls) == 1, calls  # one GraphQL query: site, racks, devices with interfaces, addresses, disks
    assert {d.name: d.disks for d in site.devices if d.role.value == "storage"} == {
        "fra1-r01-sto1": ("disk1",),
        "fra1-r02-sto1": ("disk1",),
    }


def test_a_rack_is_read_with_its_site_and_only_the_far_ends_of_its_cables(nb: pynetbox.api) -> None:
    with api_calls(nb) as calls:
        scope = read_scope(nb, "fra1", "fra1-r02")
    assert {d.name for d in scope.spines} == {"fra1-spine1", "fra1-spine2"}
    assert {d.name for d in scope.members} == {
        "fra1-r02-leaf1",
        "fra1-r02-leaf2",
        "fra1-r02-cmp1",
        "fra1-r02-cmp2",
        "fra1-r02-sto1",
    }
    assert set(scope.devices) - {d.name for d in scope.site.devices} == {"core1"}
    assert scope.devices["core1"].site == "core" and scope.devices["core1"].loopback is not None
    assert len(calls) == 1, calls  # one GraphQL query: the site and the far ends of its cables


def test_a_second_import_of_the_topology_changes_nothing(nb: pynetbox.api, topology: Topology) -> None:
    plan = import_topology(nb, topology)
    assert plan.empty, plan.counts()


def test_atlas_creates_its_custom_fields_itself(nb: pynetbox.api) -> None:
    assert ensure_custom_fields(nb) == []
    names = {cf.name for cf in nb.extras.custom_fields.all()}
    assert {cf.name for cf in CUSTOM_FIELDS} <= names


def test_an_import_that_conflicts_with_netbox_is_refused_before_any_write(
    nb: pynetbox.api, topology: Topology, lab: Any, tmp_path: Path
) -> None:
    for f in lab.cfg.topology.glob("*.yaml"):
        shutil.copy(f, tmp_path / f.name)
    fra1 = tmp_path / "10-fra1.yaml"
    data = yaml.safe_load(fra1.read_text())
    moved = next(d for d in data["devices"] if d["name"] == "fra1-r01-cmp1")
    moved["rack"] = "fra1-r02"  # NetBox has it in fra1-r01
    # a new server takes the address of one the file no longer lists but NetBox still holds
    dropped = next(d for d in data["devices"] if d["name"] == "fra1-r02-cmp2")
    data["devices"].remove(dropped)
    data["cables"] = [c for c in data["cables"] if "fra1-r02-cmp2:" not in c["b"]]
    data["devices"].append(
        {
            "name": "fra1-r02-new1",
            "site": "fra1",
            "rack": "fra1-r02",
            "role": "compute",
            "type": "atlas-server-2",
            "mgmt": dropped["mgmt"],
        }
    )
    fra1.write_text(yaml.safe_dump(data))
    changed = load_topology(tmp_path)
    before = nb.dcim.devices.count()
    with pytest.raises(ImportConflict) as info:
        import_topology(nb, changed)
    text = str(info.value)
    assert "device fra1-r01-cmp1 differs in NetBox" in text
    assert "is assigned to fra1-r02-cmp2:eth0 in NetBox, not fra1-r02-new1:eth0" in text
    assert nb.dcim.devices.count() == before
    assert nb.dcim.devices.get(name="fra1-r02-new1") is None


def test_device_writes_are_idempotent(nb: pynetbox.api) -> None:
    device = "fra1-r02-sto1"
    assert set_device_status(nb, device, DeviceStatus.PLANNED).changed is False
    dry = set_device_status(nb, device, DeviceStatus.STAGED, dry_run=True)
    assert dry.changed and nb.dcim.devices.get(name=device).status.value == "planned"
    try:
        assert set_device_status(nb, device, DeviceStatus.STAGED).changed is True
        assert set_device_status(nb, device, DeviceStatus.STAGED).changed is False
        first = set_custom_fields(nb, device, {"image_version": "2026.11.1"})
        assert first.changed and first.after == {"image_version": "2026.11.1"}
        assert set_custom_fields(nb, device, {"image_version": "2026.11.1"}).changed is False
        assert nb.dcim.devices.get(name=device).custom_fields["image_version"] == "2026.11.1"
        note = f"bring-up test {uuid.uuid4()}: status staged"
        assert add_journal_entry(nb, device, note).changed is True
        assert add_journal_entry(nb, device, note).changed is False
        record = nb.dcim.devices.get(name=device)
        entries = nb.extras.journal_entries.filter(
            assigned_object_type="dcim.device", assigned_object_id=record.id
        )
        assert [e.comments for e in entries].count(note) == 1
        with pytest.raises(NetBoxWriteError, match="no custom field"):
            set_custom_fields(nb, device, {"colour": "blue"})
    finally:
        set_device_status(nb, device, DeviceStatus.PLANNED)
        set_custom_fields(nb, device, {"image_version": None})


def test_a_racks_statuses_and_journal_entries_are_written_in_bulk_once(nb: pynetbox.api) -> None:
    devices = [d for d in read_site(nb, "fra1").devices if d.rack == "fra1-r02" and d.role.is_server]
    assert devices and {d.status for d in devices} == {DeviceStatus.PLANNED}
    notes = [(d, f"bulk test {uuid.uuid4()}: {d.name}") for d in devices]
    try:
        changed = set_statuses(nb, devices, DeviceStatus.STAGED)
        assert [(c.target, c.before, c.after) for c in changed] == [
            (d.name, "planned", "staged") for d in devices
        ]
        assert {nb.dcim.devices.get(name=d.name).status.value for d in devices} == {"staged"}
        assert set_statuses(nb, devices[:0], DeviceStatus.STAGED) == []
        assert [c.changed for c in add_journal_entries(nb, notes)] == [True] * len(devices)
        assert [c.changed for c in add_journal_entries(nb, notes)] == [False] * len(devices)
        for d, note in notes:
            entries = nb.extras.journal_entries.filter(
                assigned_object_type="dcim.device", assigned_object_id=d.netbox_id
            )
            assert [e.comments for e in entries].count(note) == 1
        with pytest.raises(NetBoxWriteError, match="control characters"):
            add_journal_entries(nb, [(devices[0], "line\x1b[2J")])
    finally:
        for d in devices:
            set_device_status(nb, d.name, DeviceStatus.PLANNED)
